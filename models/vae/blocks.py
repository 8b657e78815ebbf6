"""Building blocks of the causal video VAEs: causal conv3d, pixel norm, resnet, resampling.

Follows the block math of LTX-Video 0.9.1 as implemented by diffusers'
`models/autoencoders/autoencoder_kl_ltx.py` (`LTXVideoCausalConv3d`,
`LTXVideoResnetBlock3d`, `LTXVideoUpsampler3d`, the encoder's patchify and the
decoder's unpatchify), so that its weights map onto ours key by key
(`models/vae/convert.py`). The code is ours; the numerics are meant to be identical.
"""

from __future__ import annotations

import math
import weakref

import torch
import torch.nn.functional as F
from torch import nn

from models import rng
from models.layers import packed_weight, workspace
from models.rng import Generator

Triple = tuple[int, int, int]

ONEDNN_MAX_IN_CHANNELS = 128  # CPU convs with at most this many inputs call oneDNN directly
PIXEL_NORM_EPS = 1e-8  # LTX-Video's pixel norm (diffusers' RMSNorm(eps=1e-8) over channels)


def as_triple(value: int | Triple) -> Triple:
    return (value, value, value) if isinstance(value, int) else tuple(value)  # type: ignore[return-value]


def pixel_norm(x: torch.Tensor, eps: float = PIXEL_NORM_EPS) -> torch.Tensor:
    """RMS-normalise (B, C, ...) over channels, without affine weights; statistics in >= fp32."""
    xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    # in-place on the small (B, 1, ...) statistics only; autograd handles add_/rsqrt_ here
    inv_rms = (xf * xf).mean(dim=1, keepdim=True).add_(eps).rsqrt_()  # (B, 1, ...)
    return (x * inv_rms).to(x.dtype)


def _modulate(h: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """AdaLN-style `h * (1 + scale) + shift`; without grad it overwrites `h` (a temporary)."""
    if torch.is_grad_enabled():
        return h * (1 + scale) + shift
    return h.mul_(1 + scale).add_(shift)


def norm_silu(
    x: torch.Tensor, shift: torch.Tensor | None = None, scale: torch.Tensor | None = None
) -> torch.Tensor:
    """SiLU(modulate(pixel_norm(x))), the pre-activation of every conv; works in place without grad.

    For inference on CPU the result lands in a reused buffer (the conv that follows every call
    reads it at once): in the profile, page faults on fresh activation-sized buffers made the
    elementwise ops several times slower than the arithmetic."""
    if _inference_on_cpu(x):
        fmt = CHANNELS_LAST if x.is_contiguous(memory_format=CHANNELS_LAST) else torch.contiguous_format
        out = workspace("vae_preactivation", tuple(x.shape), x, fmt)
        inv_rms = torch.mul(x, x, out=out).mean(dim=1, keepdim=True).add_(PIXEL_NORM_EPS).rsqrt_()  # (B, 1, ...)
        torch.mul(x, inv_rms, out=out)  # pixel_norm, as above
        if scale is not None:
            _modulate(out, shift, scale)  # type: ignore[arg-type]
        return F.silu(out, inplace=True)
    h = pixel_norm(x)
    if scale is not None:
        h = _modulate(h, shift, scale)  # type: ignore[arg-type]
    return F.silu(h, inplace=not torch.is_grad_enabled())


def patchify(video: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, C*p*p, T, H/p, W/p), channel order (c, p_w, p_h) as LTX-Video.

    LTX packs the width offset before the height offset; keeping that order is what
    lets the official `conv_in` weights load unchanged.
    """
    if patch == 1:
        return video
    b, c, t, h, w = video.shape
    x = video.reshape(b, c, t, h // patch, patch, w // patch, patch)  # (B, C, T, H', ph, W', pw)
    x = x.permute(0, 1, 6, 4, 2, 3, 5)  # (B, C, pw, ph, T, H', W')
    return x.reshape(b, c * patch * patch, t, h // patch, w // patch)


def unpatchify(x: torch.Tensor, patch: int) -> torch.Tensor:
    """Inverse of `patchify`: (B, C*p*p, T, H', W') -> (B, C, T, H'*p, W'*p)."""
    if patch == 1:
        return x
    b, cpp, t, h, w = x.shape
    x = x.reshape(b, cpp // (patch * patch), patch, patch, t, h, w)  # (B, C, pw, ph, T, H', W')
    x = x.permute(0, 1, 4, 5, 3, 6, 2)  # (B, C, T, H', ph, W', pw)
    return x.reshape(b, cpp // (patch * patch), t, h * patch, w * patch)


def depth_to_space(x: torch.Tensor, stride: Triple) -> torch.Tensor:
    """(B, C*st*sh*sw, T, H, W) -> (B, C, T*st, H*sh, W*sw), channel order (c, st, sh, sw)."""
    b, c, t, h, w = x.shape
    st, sh, sw = stride
    x = x.reshape(b, c // (st * sh * sw), st, sh, sw, t, h, w)  # (B, C', st, sh, sw, T, H, W)
    x = x.permute(0, 1, 5, 2, 6, 3, 7, 4)  # (B, C', T, st, H, sh, W, sw)
    return x.reshape(b, c // (st * sh * sw), t * st, h * sh, w * sw)


def space_to_depth(x: torch.Tensor, stride: Triple) -> torch.Tensor:
    """(B, C, T*st, H*sh, W*sw) -> (B, C*st*sh*sw, T, H, W), channel order (c, st, sh, sw); inverse of depth_to_space."""
    b, c, t, h, w = x.shape
    st, sh, sw = stride
    x = x.reshape(b, c, t // st, st, h // sh, sh, w // sw, sw)  # (B, C, T', st, H', sh, W', sw)
    x = x.permute(0, 1, 3, 5, 7, 2, 4, 6)  # (B, C, st, sh, sw, T', H', W')
    return x.reshape(b, c * st * sh * sw, t // st, h // sh, w // sw)


def _onednn_enabled() -> bool:
    return torch.backends.mkldnn.is_available() and bool(torch.backends.mkldnn.enabled)


def _inference_on_cpu(x: torch.Tensor) -> bool:
    """fp32 on CPU without autograd, outside torch.compile: where the prepacked oneDNN path runs."""
    return (not torch.is_grad_enabled() and x.device.type == "cpu" and x.dtype == torch.float32
            and not torch.compiler.is_compiling() and _onednn_enabled())


# conv -> {(weight storage, weight version, (role, input shape), threads): weight in oneDNN's blocked layout}.
# Kept outside the modules: an opaque oneDNN tensor cannot be deep-copied or pickled with them.
_PACKED: "weakref.WeakKeyDictionary[nn.Conv3d, dict[tuple, torch.Tensor]]" = weakref.WeakKeyDictionary()
PACKED_PER_CONV = 16  # packed weights kept per conv (a tap and input shape each); tiled decodes see a few shapes
CHANNELS_LAST = torch.channels_last_3d


class CausalConv3d(nn.Conv3d):
    """Conv3d with zero padding in space and first/last-frame replication in time.

    `causal=True` pads only from the past (kt-1 copies of the first frame), so output
    frame i depends on input frames <= i; `causal=False` pads (kt-1)/2 copies of the
    first and last frames on each side (LTX-Video's decoder).

    Inference on CPU (fp32, no autograd) takes a faster path with the same math (see
    `_forward_taps`; strided and 1x1x1 convs: one conv on a packed weight). Its outputs are
    channels-last (same values and shape, other strides); packed weights are kept per conv
    and input shape (up to PACKED_PER_CONV), about 1.7x the conv weights at one shape.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Triple = 3,
        stride: int | Triple = 1,
        causal: bool = True,
    ) -> None:
        kernel = as_triple(kernel_size)
        super().__init__(
            in_channels, out_channels, kernel, stride=as_triple(stride), padding=(0, kernel[1] // 2, kernel[2] // 2)
        )
        self.causal = causal
        self.use_onednn = in_channels <= ONEDNN_MAX_IN_CHANNELS

    @property
    def time_padding(self) -> tuple[int, int]:
        """(frames replicated before, after)."""
        kt = self.kernel_size[0]
        return (kt - 1, 0) if self.causal else ((kt - 1) // 2, (kt - 1) // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, Cin, T, H, W) -> (B, Cout, T', H', W')."""
        if _inference_on_cpu(x):
            x = x.contiguous(memory_format=CHANNELS_LAST)  # a no-op between VAE convs
            if self.kernel_size[0] > 1 and self.stride[0] == 1:
                return self._forward_taps(x)
            if self.kernel_size[0] > 1:  # strided in time (a downsample): pad, one conv
                x = self._pad_time(x, *self.time_padding, channels_last=True)
            return self._conv(x, self._packed(x, "whole", lambda: self.weight), self.bias)
        x = self._pad_time(x, *self.time_padding) if self.kernel_size[0] > 1 else x  # (B, Cin, T + kt - 1, H, W)
        if self.use_onednn and x.device.type == "cpu" and x.dtype == torch.float32 and _onednn_enabled():
            # PyTorch routes small batch-1 convs to its im2col kernel; with <= 128 input channels
            # oneDNN is 1.2-30x faster there (measured), with more it is slower (same math, other
            # summation order); bigger inputs go to oneDNN through F.conv3d anyway
            return torch.mkldnn_convolution(x, self.weight, self.bias, self.padding, self.stride, self.dilation, 1)
        return F.conv3d(x, self.weight, self.bias, self.stride, self.padding)

    def _forward_taps(
        self, x: torch.Tensor, frames: tuple[int, int] | None = None, channels: tuple[int, ...] | None = None
    ) -> torch.Tensor:
        """The conv as one (1, kh, kw) conv per temporal tap on the unpadded frames, each summed
        into the output inside oneDNN's kernel (a post-op), batch element by batch element.

        Output frame t reads input frame clamp(t - shift) through tap d (shift = frames padded
        before - d); the taps that read a replicated first or last frame go through that one
        frame with their weights summed. Against one padded kt x kh x kw conv (what diffusers
        runs) this skips the padded copy of the input and the per-call re-layout of weight and
        activations (weights are packed once, activations stay channels-last), and each output
        accumulates 9C products per run instead of 27C: half of oneDNN's rounding error against
        fp64, which keeps the VAE within 1e-5 of diffusers' (more exact) im2col kernels.

        `frames` (first, last): only those output frames; `channels`: only those output channels
        (a depth-to-space upsample drops part of its first frame). Every output element sums the
        same products in the same order either way, so it equals the full conv's, bit for bit.
        """
        before, _ = self.time_padding
        t = x.shape[2]
        first, last = frames if frames is not None else (0, t)
        bias = self.bias if self.bias is None or channels is None else self.bias[list(channels)]
        outputs = []
        for xi in x.split(1):  # batch-1 slices of channels-last tensors are dense
            # the unshifted tap reads every output frame's own input frame: its conv (with the bias) is the output
            center = xi[:, :, first:last]
            weight = self._packed(center, ((before,), channels), lambda: self._tap_weight((before,), channels))
            yi = self._conv(center, weight, bias)
            for d in range(self.kernel_size[0]):
                shift = before - d
                lo, hi = max(first, shift), min(last, t + shift)  # output frames the tap reaches unclamped
                if d != before and hi > lo:
                    self._add_tap(xi[:, :, lo - shift : hi - shift], (d,), yi[:, :, lo - first : hi - first], channels)
            self._clamped_taps(xi, yi, before, first, channels)
            outputs.append(yi)
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs)

    def _tap_weight(self, taps: tuple[int, ...], channels: tuple[int, ...] | None) -> torch.Tensor:
        """The (1, kh, kw) weights of `taps` summed, (Cout, Cin, 1, kh, kw), or only the rows of `channels`."""
        weight = self.weight if channels is None else self.weight[list(channels)]
        return weight[:, :, list(taps)].sum(dim=2, keepdim=True)

    def _clamped_taps(
        self, x: torch.Tensor, y: torch.Tensor, before: int, first: int, channels: tuple[int, ...] | None
    ) -> None:
        """Add the taps that read a replicated first/last frame: for output t (y's frame t - first), the
        taps with t - shift outside [0, T) read frame 0 (or T-1), all at once with their weights summed."""
        t = x.shape[2]
        for out in range(first, first + y.shape[2]):
            low = tuple(d for d in range(self.kernel_size[0]) if out - (before - d) < 0)
            high = tuple(d for d in range(self.kernel_size[0]) if out - (before - d) >= t)
            if low:
                self._add_tap(x[:, :, :1], low, y[:, :, out - first : out - first + 1], channels)
            if high:
                self._add_tap(x[:, :, -1:], high, y[:, :, out - first : out - first + 1], channels)

    def _add_tap(
        self, x: torch.Tensor, taps: tuple[int, ...], out: torch.Tensor, channels: tuple[int, ...] | None
    ) -> None:
        """out += conv(x, sum of the (1, kh, kw) weights of `taps`), the sum inside oneDNN's kernel."""
        weight = self._packed(x, (taps, channels), lambda: self._tap_weight(taps, channels))
        torch.ops.mkldnn._convolution_pointwise_.binary(
            out, x, weight, None, self.padding, (1, *self.stride[1:]), self.dilation, 1, "add", None, None, [], None)

    def _conv(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return torch.ops.mkldnn._convolution_pointwise(
            x, weight, bias, self.padding, self.stride, self.dilation, 1, "none", [], "")

    def _packed(self, x: torch.Tensor, role: object, weight_fn) -> torch.Tensor:  # type: ignore[no-untyped-def]
        """The weight from `weight_fn()` in oneDNN's blocked layout for input shape x, kept per
        `models.layers.packed_weight` (re-laying out the weight costs up to a 4x4 latent conv's time
        on every unpacked call)."""
        stride = self.stride if role == "whole" else (1, *self.stride[1:])

        def pack() -> torch.Tensor:
            weight = weight_fn().detach().contiguous(memory_format=CHANNELS_LAST)
            return torch.ops.mkldnn._reorder_convolution_weight(
                weight, list(self.padding), list(stride), list(self.dilation), 1, list(x.shape))

        return packed_weight(_PACKED, self, self.weight, (role, tuple(x.shape)), PACKED_PER_CONV, pack)

    @staticmethod
    def _pad_time(x: torch.Tensor, before: int, after: int, channels_last: bool = False) -> torch.Tensor:
        """Replicate the first frame `before` times and the last `after` times. On CPU without
        autograd the padded copy goes into a reused channels-last workspace buffer (the conv reads
        it at once): a fresh buffer per conv costs page faults, the largest cost outside the
        convolutions."""
        if torch.is_grad_enabled() or x.device.type != "cpu" or torch.compiler.is_compiling():
            parts = [x[:, :, :1].expand(-1, -1, before, -1, -1), x]
            if after:
                parts.append(x[:, :, -1:].expand(-1, -1, after, -1, -1))
            return torch.cat(parts, dim=2)
        b, c, t, h, w = x.shape
        padded = workspace("causal_conv_pad", (b, c, before + t + after, h, w), x,
                           CHANNELS_LAST if channels_last else torch.contiguous_format)
        padded[:, :, before : before + t].copy_(x)
        padded[:, :, :before].copy_(x[:, :, :1].expand(-1, -1, before, -1, -1))
        if after:
            padded[:, :, before + t :].copy_(x[:, :, -1:].expand(-1, -1, after, -1, -1))
        return padded


class ResnetBlock3d(nn.Module):
    """Pixel norm -> [AdaLN] -> SiLU -> conv -> [noise], twice, plus a (projected) shortcut.

    `timestep_conditioning` adds a learned (4, C) table to a per-sample (B, 4C) embedding
    to get shift/scale for both norms (LTX-Video 0.9.1's denoising decoder).
    `noise_injection` adds `scale_c * n(h, w)` after each conv: one (H, W) Gaussian field
    shared by batch, frames and channels, with a zero-initialised per-channel scale.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        causal: bool = True,
        timestep_conditioning: bool = False,
        noise_injection: bool = False,
        shortcut_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if (timestep_conditioning or noise_injection) and in_channels != out_channels:
            raise ValueError("timestep conditioning and noise injection need a resnet with in_channels == out_channels")
        self.conv1 = CausalConv3d(in_channels, out_channels, 3, causal=causal)
        self.conv2 = CausalConv3d(out_channels, out_channels, 3, causal=causal)
        self.shortcut_norm: nn.LayerNorm | None = None
        self.shortcut: CausalConv3d | None = None
        if in_channels != out_channels:
            self.shortcut_norm = nn.LayerNorm(in_channels, eps=shortcut_eps)
            self.shortcut = CausalConv3d(in_channels, out_channels, 1, causal=causal)
        self.noise_scale1: nn.Parameter | None = None
        self.noise_scale2: nn.Parameter | None = None
        if noise_injection:
            # zero-init: an untrained (or converted 0.9.0) model is unaffected by the noise
            self.noise_scale1 = nn.Parameter(torch.zeros(out_channels))
            self.noise_scale2 = nn.Parameter(torch.zeros(out_channels))
        self.scale_shift_table: nn.Parameter | None = None
        if timestep_conditioning:
            self.scale_shift_table = nn.Parameter(torch.randn(4, in_channels) / in_channels**0.5)

    @staticmethod
    def _add_noise(h: torch.Tensor, scale: torch.Tensor, generator: Generator) -> torch.Tensor:
        noise = rng.shared_randn(h.shape[-2:], generator, h)  # (H, W), one map for the whole batch (as LTX-Video)
        if torch.is_grad_enabled():
            return h + noise * scale[:, None, None, None]  # (C, 1, H, W) broadcast over (B, C, T, H, W)
        # h is this block's own conv output; channels innermost, as in h's channels-last layout on CPU
        # (broadcasting a (C, 1, H, W) map over channels-last h runs 8x slower)
        return h.add_((noise[:, :, None] * scale).permute(2, 0, 1)[None, :, None])  # (1, C, 1, H, W)

    def forward(
        self, x: torch.Tensor, emb: torch.Tensor | None = None, generator: Generator = None
    ) -> torch.Tensor:
        """x (B, Cin, T, H, W), emb (B, 4*Cin) when timestep-conditioned -> (B, Cout, T, H, W)."""
        shift1 = scale1 = shift2 = scale2 = None
        if self.scale_shift_table is not None:
            if emb is None:
                raise ValueError("this resnet is timestep-conditioned; pass the timestep embedding")
            table = emb.unflatten(1, (4, -1)) + self.scale_shift_table[None]  # (B, 4, C)
            shift1, scale1, shift2, scale2 = table[..., None, None, None].unbind(1)  # (B, C, 1, 1, 1) each
        h = self.conv1(norm_silu(x, shift1, scale1))
        if self.noise_scale1 is not None:
            h = self._add_noise(h, self.noise_scale1, generator)
        h = self.conv2(norm_silu(h, shift2, scale2))
        if self.noise_scale2 is not None:
            h = self._add_noise(h, self.noise_scale2, generator)
        if self.shortcut is not None:
            x = self.shortcut_norm(x.movedim(1, -1)).movedim(-1, 1)  # LayerNorm over channels
            x = self.shortcut(x)
        return h + x if torch.is_grad_enabled() else h.add_(x)  # h is this block's own conv output


class DepthToSpaceUpsample(nn.Module):
    """Conv to C*prod(stride)/factor channels, depth-to-space, drop the first st-1 frames.

    With `residual`, the input itself is rearranged depth-to-space and tiled along channels
    as a skip path (LTX-Video 0.9.1's "compress_all, residual, multiplier 2"). Dropping
    st-1 frames maps 1+k latent frames to 1+st*k, keeping the first frame alone.
    """

    def __init__(self, channels: int, stride: Triple, *, residual: bool, factor: int, causal: bool) -> None:
        super().__init__()
        self.stride = stride
        self.residual = residual
        self.repeats = math.prod(stride) // factor  # how often the d2s input is tiled on the skip path
        self.conv = CausalConv3d(channels, channels * math.prod(stride) // factor, 3, causal=causal)
        # the conv's output channels, ordered (c, st, sh, sw), of time phase st-1: all the first frame keeps
        volume, area = math.prod(stride), stride[1] * stride[2]
        self.kept_channels = tuple(c * volume + (stride[0] - 1) * area + j
                                   for c in range(self.conv.out_channels // volume) for j in range(area))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, C/factor, st*T - st + 1, sh*H, sw*W)."""
        drop = self.stride[0] - 1
        if drop and _inference_on_cpu(x) and self.conv.kernel_size[0] > 1:
            return self._forward_inference(x.contiguous(memory_format=CHANNELS_LAST))
        h = depth_to_space(self.conv(x), self.stride)[:, :, drop:]  # (B, C/f, T', H', W')
        if not self.residual:
            return h
        skip = depth_to_space(x, self.stride)[:, :, drop:]  # (B, C/prod, T', H', W')
        # tile by broadcasting instead of materialising `skip.repeat(...)`
        out = h.unflatten(1, (self.repeats, -1)) + skip[:, None]  # (B, repeats, C/prod, T', H', W')
        return out.flatten(1, 2)

    def _forward_inference(self, x: torch.Tensor) -> torch.Tensor:
        """`forward` on the CPU inference path, equal to it bit for bit: the first frame's conv computes
        only the time phase that is kept (the dropped st-1 phases are 1/st of its work, 2.3% of a
        `small` decode's multiplies), and each part is rearranged and added to its skip in one pass
        (`forward` copies both depth-to-space and adds them in a third). The output stays in (B, C, ...)
        layout: the next pixel norm then sums each position's squares channel after channel, as
        diffusers' does (channels-last moved the `small` VAE from 9.9e-6 to 1.001e-5 of diffusers')."""
        st, sh, sw = self.stride
        b, _, t, h, w = x.shape
        width = self.conv.out_channels // math.prod(self.stride)  # C/factor
        out = torch.empty((b, width, st * t - st + 1, sh * h, sw * w), dtype=x.dtype)
        skip = x.unflatten(1, (-1, st, sh, sw)) if self.residual else None  # (B, C/prod, st, sh, sw, T, H, W)
        first = self.conv._forward_taps(x, (0, 1), self.kept_channels)  # (B, C/f * sh*sw, 1, H, W)
        first = first.unflatten(1, (width, 1, sh, sw))  # (B, C/f, 1, sh, sw, 1, H, W)
        self._rearrange_into(out[:, :, :1], first, None if skip is None else skip[:, :, -1:, :, :, :1])
        if t > 1:
            rest = self.conv._forward_taps(x, (1, t))  # (B, C/f * st*sh*sw, T-1, H, W)
            rest = rest.unflatten(1, (width, st, sh, sw))  # (B, C/f, st, sh, sw, T-1, H, W)
            self._rearrange_into(out[:, :, 1:], rest, None if skip is None else skip[:, :, :, :, :, 1:])
        return out

    def _rearrange_into(self, out: torch.Tensor, phases: torch.Tensor, skip: torch.Tensor | None) -> None:
        """out (B, C', T*s, H*sh, W*sw) = depth-to-space of phases (B, C', s, sh, sw, T, H, W), plus skip
        (B, C'/repeats, s, sh, sw, T, H, W) tiled `repeats` times along channels, in one pass."""
        _, _, s, sh, sw, t, h, w = phases.shape
        target = out.unflatten(4, (w, sw)).unflatten(3, (h, sh)).unflatten(2, (t, s))  # (B, C', T, s, H, sh, W, sw)
        order = (0, 1, 5, 2, 6, 3, 7, 4)  # (B, C', s, sh, sw, T, H, W) -> (B, C', T, s, H, sh, W, sw)
        if skip is None:
            target.copy_(phases.permute(order))
            return
        torch.add(phases.permute(order).unflatten(1, (self.repeats, -1)), skip.permute(order)[:, None],
                  out=target.unflatten(1, (self.repeats, -1)))


class SpaceToDepthDownsample(nn.Module):
    """LTX-Video 0.9.5's encoder downsampler: conv, space-to-depth, plus an averaged skip path.

    diffusers' `LTXVideoDownsampler3d`: the input is front-padded with its first st-1 frames
    (so 1 + st*k frames become 1 + k), a causal conv maps C -> Cout/prod(stride)
    channels and is rearranged space-to-depth to Cout; the skip path rearranges the input
    itself and averages groups of C*prod(stride)/Cout consecutive channels. It widens the
    stage as well, so stages built with it need no widening resnet.
    """

    def __init__(self, channels: int, out_channels: int, stride: Triple) -> None:
        super().__init__()
        self.stride = stride
        volume = math.prod(stride)
        if out_channels % volume or (channels * volume) % out_channels:
            raise ValueError(f"a space-to-depth downsample from {channels} to {out_channels} channels needs "
                             f"{out_channels} divisible by {volume} and {channels * volume} by {out_channels}")
        self.group_size = channels * volume // out_channels  # input channels averaged into each skip channel
        self.conv = CausalConv3d(channels, out_channels // volume, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, Cout, (T + st - 1) / st, H / sh, W / sw)."""
        x = torch.cat([x[:, :, : self.stride[0] - 1], x], dim=2)  # (B, C, T + st - 1, H, W)
        skip = space_to_depth(x, self.stride).unflatten(1, (-1, self.group_size)).mean(dim=2)  # (B, Cout, ...)
        return space_to_depth(self.conv(x), self.stride) + skip
