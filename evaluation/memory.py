"""Per-GPU training memory and step time of the DiT and the VAE: formulas, nothing allocated.

`training_estimate(cfg, component, frames, height, width, layout)` answers "how much memory
does each GPU need, and how long is a step" for a `TrainingLayout` (workers, ddp or fsdp,
global batch, activation checkpointing, the MFU and GPU to assume). Every formula is
written out in docs/memory.md, with a worked example; in short:

- Precision (the trainer's FSDP2 mixed precision): fp32 master parameters, bf16 compute,
  fp32 gradients and reduction, AdamW's two fp32 moments. `ddp` keeps all of them whole on
  every GPU plus a bf16 working copy of the weights; `fsdp` shards parameters, gradients,
  moments and the DiT's EMA over the workers (FSDP2 pads dim 0 of each tensor to a
  multiple of the worker count) and adds the unsharded bf16 parameters of the root module
  and of two blocks (the one computing and the one prefetched).
- Activations: the tensors autograd saves for backward, enumerated op by op from the
  model code (`dit_block_saved`, `vae_units`) as element counts times the bytes of their
  dtype (bf16, or fp32 where the code upcasts); calibrated against
  `torch.autograd.graph.saved_tensors_hooks` measurements on CPU (tests/test_memory_estimate.py).
  With activation checkpointing: every block's input, the tensors outside the blocks, and
  one block's activations while it is recomputed.
- Step time: forward FLOPs from `evaluation.cost`'s FlopCounterMode counts (the DiT through
  `describe_dit`, the VAE through `_vae_flops`) x 3 for forward + backward, + 1 forward
  when checkpointing recomputes, over (peak bf16 dense FLOP/s x MFU).

Parameters are counted on the meta device (torch only for that); the rest is arithmetic.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

# peak dense bf16 FLOP/s (NVIDIA datasheets, without sparsity)
GPU_PEAK_BF16: dict[str, float] = {"h100": 989e12, "h200": 989e12, "a100": 312e12}
GPU_NAMES: dict[str, str] = {"h100": "H100 SXM", "h200": "H200", "a100": "A100"}
PARALLEL_MODES = ("ddp", "fsdp")
FP32, BF16 = 4, 2
ADAM_MOMENTS = 2  # AdamW's exp_avg and exp_avg_sq, fp32 each
TIMESTEP_FREQ_DIM = 256  # the DiT's timestep sinusoid width (models.dit.transformer)


class LayoutError(ValueError):
    """A training layout that cannot run; the message is one sentence naming the field."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainingLayout:
    """How one training run is spread over GPUs, and what to assume about them."""

    workers: int = 1  # GPUs (data-parallel ranks)
    parallel: str = "fsdp"  # "ddp": everything replicated; "fsdp": FSDP2, parameters/grads/optimizer sharded
    batch: int = 1  # global batch: samples per optimizer step over all workers
    grad_accum: int = 1  # micro-batches per worker per step (train.grad_accum): activations are per micro-batch
    activation_checkpointing: bool = False  # recompute each block in backward, keep only its input
    mfu: float = 0.35  # model FLOPs utilisation assumed for the step time (stated, not measured)
    gpu: str = "h100"  # key of GPU_PEAK_BF16
    act_bytes: int = BF16  # bytes per activation element: 2 = bf16 compute (GPU), 4 = fp32 (the CPU calibration)
    backend: str = "cuda"  # cuda: fused RMSNorm keeps input + rstd; cpu (fp32 only): the composite also keeps x*rstd
    per_token_timesteps: bool = True  # DiT: a per-GPU batch holding an image-conditioned sample (the peak)

    def __post_init__(self) -> None:
        if not isinstance(self.workers, int) or self.workers < 1:
            raise LayoutError(f"workers must be a whole number >= 1, not {self.workers!r}.")
        if self.parallel not in PARALLEL_MODES:
            raise LayoutError(f"parallel must be one of {', '.join(PARALLEL_MODES)}, not {self.parallel!r}.")
        if not isinstance(self.batch, int) or self.batch < 1:
            raise LayoutError(f"batch must be a whole number >= 1, not {self.batch!r}.")
        if not isinstance(self.grad_accum, int) or self.grad_accum < 1:
            raise LayoutError(f"grad_accum must be a whole number >= 1, not {self.grad_accum!r}.")
        parts = self.workers * self.grad_accum
        if self.batch % parts:
            raise LayoutError(f"batch {self.batch} does not split over {self.workers} workers x {self.grad_accum} "
                              f"micro-batches; use a multiple of {parts}.")
        if not 0 < self.mfu <= 1:
            raise LayoutError(f"mfu must be in (0, 1], not {self.mfu!r}.")
        if self.gpu not in GPU_PEAK_BF16:
            raise LayoutError(f"gpu must be one of {', '.join(GPU_PEAK_BF16)}, not {self.gpu!r}.")
        if self.act_bytes not in (BF16, FP32):
            raise LayoutError(f"act_bytes must be 2 (bf16) or 4 (fp32), not {self.act_bytes!r}.")
        if self.backend not in ("cuda", "cpu"):
            raise LayoutError(f"backend must be cuda or cpu, not {self.backend!r}.")
        if self.backend == "cpu" and self.act_bytes != FP32:
            # CPU's unfused RMSNorm keeps fp32 copies of bf16 inputs as well; only its fp32 path is modelled
            raise LayoutError("backend cpu models fp32 only (act_bytes=4); bf16 training is on cuda.")

    @property
    def batch_per_gpu(self) -> int:
        return self.batch // self.workers

    @property
    def micro_batch(self) -> int:
        """Samples in one forward/backward on one GPU."""
        return self.batch // (self.workers * self.grad_accum)


@dataclasses.dataclass(frozen=True)
class Saved:
    """One tensor (or a group of equal ones) autograd keeps for backward.

    kind: "act" is in the compute dtype (layout.act_bytes); "fp32" is fp32 whatever the
    compute dtype (norm statistics, RoPE tables, the fp32 copy a norm makes of a bf16 input
    that is not kept otherwise); "upcast" is an fp32 copy of a tensor that is kept as well,
    so it costs 4 bytes per element in bf16 and nothing in fp32 (where `.float()` is a no-op).
    """

    name: str
    elements: int
    kind: str = "act"

    def nbytes(self, act_bytes: int) -> int:
        if self.kind == "act":
            return self.elements * act_bytes
        if self.kind == "fp32":
            return self.elements * FP32
        return self.elements * FP32 if act_bytes != FP32 else 0


def total_bytes(terms: list[Saved], act_bytes: int) -> int:
    return sum(t.nbytes(act_bytes) for t in terms)


def _as_upcast(terms: list[Saved], names: tuple[str, ...]) -> list[Saved]:
    """The terms as a recompute sees them: the named inputs are already held (by the checkpoint),
    so only their fp32 copies, if the dtype makes one, are new."""
    return [dataclasses.replace(t, kind="upcast") if t.name in names else t for t in terms]


# ---------------------------------------------------------------------------------- DiT


def dit_tokens(cfg: Any, frames: int, height: int, width: int) -> int:
    """Video tokens per sample (N) of a pixel clip, after the VAE and the transformer patch."""
    from models.dit.describe import latent_shape_for
    from models.dit.patch import token_grid

    t, h, w = token_grid(latent_shape_for(cfg, frames, height, width), cfg.patch)
    return t * h * w


def _dit_widths(cfg: Any) -> tuple[int, int, int, int]:
    """(D hidden, I attention inner width, F FFN width, H heads)."""
    from models.dit.transformer import ffn_width

    return cfg.hidden, cfg.num_heads * cfg.head_dim, ffn_width(cfg), cfg.num_heads


def _modulated_norm(prefix: str, rows: int, d: int, mod_rows: int) -> list[Saved]:
    """rms_norm(x) * (1 + scale) + shift: the fp32 norm input and its rstd, (1 + scale), the norm
    output (kept by the multiply) and the modulated result (kept by the Linear after it)."""
    return [Saved(f"{prefix}.norm_in", rows * d, "fp32"), Saved(f"{prefix}.rstd", rows, "fp32"),
            Saved(f"{prefix}.one_plus_scale", mod_rows * d), Saved(f"{prefix}.norm_out", rows * d),
            Saved(f"{prefix}.modulated", rows * d)]


def _ffn(prefix: str, rows: int, d: int, f: int) -> list[Saved]:
    """Linear -> GELU -> Linear, gated: the GELU input and output, and the gated output (fc_out's)."""
    return [Saved(f"{prefix}.hidden", rows * f), Saved(f"{prefix}.gelu", rows * f), Saved(f"{prefix}.proj", rows * d)]


def dit_block_saved(cfg: Any, batch: int, tokens: int, layout: TrainingLayout, *, last: bool = False) -> list[Saved]:
    """What one transformer block saves for backward, for `batch` samples of `tokens` video tokens.

    Cross-attention block (models/dit/blocks.py) and MM-DiT block (models/dit/mmdit.py; `last`
    is its text-keys-only final block). Tensors shared by all blocks (the projected caption of
    cross-attention, the RoPE tables, the mask bias) are in `dit_outside_saved`.
    """
    d, inner, f, heads = _dit_widths(cfg)
    b, n, text = batch, tokens, cfg.max_text_tokens
    rows, text_rows = b * n, b * text
    mod_rows = rows if layout.per_token_timesteps else b  # AdaLN tables are (B, N|1, 6, D)
    qk_norm, rope = cfg.qk_norm != "none", cfg.rope == "on"
    composite = layout.backend == "cpu" and qk_norm  # unfused affine RMSNorm also keeps x * rstd

    def qk_norms(prefix: str, count: int, r: int) -> list[Saved]:
        out = []
        if qk_norm:
            out.append(Saved(f"{prefix}.rstd", count * r, "fp32"))
        if composite:
            out.append(Saved(f"{prefix}.normed", count * r * inner))
        return out

    terms = _modulated_norm("attn", rows, d, mod_rows)
    if cfg.text_conditioning == "cross_attention":
        terms += [Saved("attn.qkv", 3 * rows * inner), *qk_norms("attn.qk", 2, rows)]
        if qk_norm or rope:
            terms.append(Saved("attn.qk", 2 * rows * inner))  # the rotated / normed q, k SDPA keeps
        terms += [Saved("attn.out", rows * inner), Saved("attn.lse", b * heads * n, "fp32"),
                  Saved("attn.proj", rows * d), Saved("ada", 6 * mod_rows * d)]
        terms += [Saved("cross.in", rows * d), Saved("cross.q_proj", rows * inner), *qk_norms("cross.q", 1, rows)]
        if qk_norm:
            terms.append(Saved("cross.q", rows * inner))
        terms += [Saved("cross.kv", 2 * text_rows * inner), *qk_norms("cross.k", 1, text_rows)]
        if qk_norm:
            terms.append(Saved("cross.k", text_rows * inner))
        terms += [Saved("cross.out", rows * inner), Saved("cross.lse", b * heads * n, "fp32")]
        terms += _modulated_norm("ff", rows, d, mod_rows) + _ffn("ff", rows, d, f)
        return terms
    # MM-DiT: joint attention over [video; text]; the last block has text keys/values only
    joint, queries = b * (n + text), b * n if last else b * (n + text)
    # q, k, v go into torch.cat (which keeps nothing): the projections are kept only as the q/k
    # norms' inputs, or (last block, no norm, no RoPE) as the video queries SDPA keeps
    if qk_norm or (last and not rope):
        terms.append(Saved("video.qkv", 3 * rows * inner))
    terms += qk_norms("video.qk", 2, rows)
    terms += _modulated_norm("text", text_rows, d, b)
    if qk_norm:
        terms.append(Saved("text.qkv", (2 if last else 3) * text_rows * inner))
    terms += qk_norms("text.qk", 1 if last else 2, text_rows)
    if last and (qk_norm or rope):
        terms.append(Saved("joint.q", rows * inner))  # video queries only, straight into SDPA
    if not last:
        terms.append(Saved("joint.q", joint * inner))  # torch.cat([video q, text q])
    terms += [Saved("joint.kv", 2 * joint * inner), Saved("joint.out", queries * inner),
              Saved("joint.lse", heads * queries, "fp32")]
    if not last and b > 1:
        terms.append(Saved("video.out_in", rows * inner))  # out[:, :n] is not contiguous for B > 1: copied
    terms += [Saved("video.proj", rows * d), Saved("ada", 6 * mod_rows * d)]
    terms += _modulated_norm("video_ff", rows, d, mod_rows) + _ffn("video_ff", rows, d, f)
    if not last:
        if b > 1:
            terms.append(Saved("text.out_in", text_rows * inner))
        terms += [Saved("text.proj", text_rows * d), Saved("text.ada", 6 * b * d)]
        terms += _modulated_norm("text_ff", text_rows, d, b) + _ffn("text_ff", text_rows, d, f)
    return terms


def dit_outside_saved(cfg: Any, batch: int, tokens: int, layout: TrainingLayout) -> list[Saved]:
    """What the DiT saves outside its blocks: patch embedding, timestep MLP, caption projection,
    tensors every block shares (projected caption, RoPE tables, mask bias), final norm."""
    d, _, _, _ = _dit_widths(cfg)
    b, n, text = batch, tokens, cfg.max_text_tokens
    rows, text_rows = b * n, b * text
    mod_rows = rows if layout.per_token_timesteps else b
    mmdit = cfg.text_conditioning == "mmdit"
    time_rows = mod_rows + (b if mmdit and layout.per_token_timesteps else 0)  # + the text stream's own
    terms = [Saved("patch_embed.in", rows * cfg.patch_channels),
             # Linear(256, D) -> SiLU -> Linear(D, D), then SiLU -> Linear(D, 6D): input of each
             Saved("time.mlp", time_rows * (TIMESTEP_FREQ_DIM + 4 * d)),
             Saved("caption.in", text_rows * cfg.caption_channels), Saved("caption.mlp", 2 * text_rows * d)]
    if not mmdit:
        terms.append(Saved("caption.out", text_rows * d))  # every block's to_kv input (one tensor)
    if cfg.rope == "on":
        terms.append(Saved("rope.cos_sin", 2 * n * d, "fp32"))  # (1, N, D) each, shared by the batch
    terms.append(Saved("mask_bias", b * (n + text) if mmdit else text_rows))
    terms += [Saved("final.norm_in", rows * d), Saved("final.mean_rstd", 2 * rows, "fp32"),
              Saved("final.one_plus_scale", mod_rows * d), Saved("final.norm_out", rows * d),
              Saved("final.modulated", rows * d)]
    return terms


def dit_checkpoint_inputs(cfg: Any, batch: int, tokens: int, layout: TrainingLayout) -> list[Saved]:
    """What activation checkpointing keeps per block: its input x (and, MM-DiT, its text stream),
    plus the AdaLN embedding every checkpoint holds (shared; not saved at all without checkpointing)."""
    d = cfg.hidden
    b = batch
    mod_rows = b * tokens if layout.per_token_timesteps else b
    terms = [Saved("ckpt.temb", 6 * mod_rows * d), Saved("ckpt.x", cfg.num_layers * b * tokens * d)]
    if cfg.text_conditioning == "mmdit":
        terms.append(Saved("ckpt.text", cfg.num_layers * b * cfg.max_text_tokens * d))
        if layout.per_token_timesteps:
            terms.append(Saved("ckpt.text_temb", 6 * b * d))
    return terms


def dit_activations(cfg: Any, frames: int, height: int, width: int, layout: TrainingLayout,
                    batch: int | None = None) -> dict[str, Any]:
    """Activation bytes of one DiT forward on `batch` samples (default: the layout's micro-batch).

    Returns forward_saved (what is held when backward starts), recompute (one block's
    activations while checkpointing recomputes it; 0 without), total (their sum: the peak
    of activation memory) and the per-term breakdown.
    """
    b = layout.micro_batch if batch is None else batch
    n = dit_tokens(cfg, frames, height, width)
    ab = layout.act_bytes
    outside = dit_outside_saved(cfg, b, n, layout)
    mmdit = cfg.text_conditioning == "mmdit"
    blocks = [dit_block_saved(cfg, b, n, layout, last=mmdit and i == cfg.num_layers - 1) for i in range(cfg.num_layers)]
    if layout.activation_checkpointing:
        inputs = ("attn.norm_in", "text.norm_in")  # the block's x and text, held by the checkpoint
        held = outside + dit_checkpoint_inputs(cfg, b, n, layout)
        recompute = max(total_bytes(_as_upcast(blk, inputs), ab) for blk in blocks)
    else:
        held = outside + [t for blk in blocks for t in blk]
        recompute = 0
    forward_saved = total_bytes(held, ab)
    breakdown: dict[str, int] = {}
    for t in held:
        breakdown[t.name] = breakdown.get(t.name, 0) + t.nbytes(ab)
    return {"tokens_per_sample": n, "batch": b, "forward_saved": forward_saved, "recompute": recompute,
            "total": forward_saved + recompute, "breakdown": breakdown}


# ---------------------------------------------------------------------------------- VAE


@dataclasses.dataclass
class Unit:
    """One piece of the VAE's forward: a stage (an FSDP / checkpoint unit) or the glue between."""

    name: str
    terms: list[Saved]
    input_elements: int = 0  # what a checkpoint of this unit keeps
    checkpointable: bool = False
    input_term: str | None = None  # the term that is the unit's input itself (held during recompute)


class _VAEWalk:
    """Walks a VAE config's stages, tracking (C, T, H, W), and lists what each op saves."""

    def __init__(self, batch: int) -> None:
        self.b = batch
        self.terms: list[Saved] = []

    def add(self, name: str, elements: int, kind: str = "act", per_sample: bool = True) -> None:
        self.terms.append(Saved(name, self.b * elements if per_sample else elements, kind))

    def norm_silu(self, name: str, c: int, s: int, conditioned: bool, x_storage: int | None = None) -> None:
        """pixel_norm(x) [* (1 + scale) + shift] -> SiLU: x (and its fp32 copy in bf16), 1/rms,
        the normed x (kept by the multiply or by SiLU), the modulated x (kept by SiLU).
        `x_storage`: elements of the storage x is a view of, when that is larger than x."""
        self.add(f"{name}.x", c * s if x_storage is None else x_storage)
        self.add(f"{name}.x_fp32", c * s, "upcast")
        self.add(f"{name}.inv_rms", s, "fp32")
        self.add(f"{name}.normed", c * s)
        if conditioned:
            self.add(f"{name}.one_plus_scale", c)
            self.add(f"{name}.modulated", c * s)

    def conv(self, name: str, c: int, t: int, h: int, w: int, kt: int = 3) -> None:
        """CausalConv3d keeps its time-padded input: C x (T + kt - 1) x H x W."""
        self.add(f"{name}.in", c * (t + kt - 1) * h * w)

    def resnet(self, name: str, cin: int, cout: int, t: int, h: int, w: int, conditioned: bool = False,
               noise: bool = False, x_storage: int | None = None) -> None:
        s = t * h * w
        self.norm_silu(f"{name}.norm1", cin, s, conditioned, x_storage)
        self.conv(f"{name}.conv1", cin, t, h, w)
        if noise:
            self.add(f"{name}.noise1", h * w, per_sample=False)  # the (H, W) field, kept for the scale's grad
        self.norm_silu(f"{name}.norm2", cout, s, conditioned)
        self.conv(f"{name}.conv2", cout, t, h, w)
        if noise:
            self.add(f"{name}.noise2", h * w, per_sample=False)
        if cin != cout:  # LayerNorm over channels (input shared with norm1), then a 1x1x1 conv
            self.add(f"{name}.shortcut_mean_rstd", 2 * s, "fp32")
            self.add(f"{name}.shortcut_normed", cin * s)

    def take(self) -> list[Saved]:
        terms, self.terms = self.terms, []
        return terms


def vae_units(cfg: Any, batch: int, frames: int, height: int, width: int) -> list[Unit]:
    """The VAE's training forward (encode, sample the posterior, decode) as units, in order."""
    from models.vae.autoencoder import encoder_stage_widths

    walk = _VAEWalk(batch)
    units: list[Unit] = []
    p = cfg.patch_size
    c, t, h, w = cfg.in_channels * p * p, frames, height // p, width // p

    def unit(name: str, checkpointable: bool = False, input_elements: int = 0, input_term: str | None = None) -> None:
        units.append(Unit(name, walk.take(), batch * input_elements, checkpointable, input_term))

    walk.conv("encoder.conv_in", c, t, h, w)
    unit("encoder.conv_in")
    c = cfg.encoder_channels[0]
    outs = encoder_stage_widths(cfg)
    stages = [(cfg.encoder_channels[i], outs[i], cfg.encoder_layers[i], cfg.encoder_strides[i]) for i in range(len(outs))]
    stages.append((outs[-1], outs[-1], cfg.encoder_layers[-1], (1, 1, 1)))  # the mid-block
    for i, (width_, out, layers, stride) in enumerate(stages):
        name = f"encoder.stage{i}" if i < len(outs) else "encoder.mid"
        start = c * t * h * w
        for j in range(layers):
            walk.resnet(f"{name}.resnet{j}", width_, width_, t, h, w)
        first = f"{name}.resnet0.norm1.x" if layers else None
        if math.prod(stride) > 1:
            st, sh, sw = stride
            if cfg.encoder_downsample == "space_to_depth":  # front pad st-1 frames, conv, space-to-depth
                t = t + st - 1
                walk.conv(f"{name}.downsample", width_, t, h, w)
                t, h, w = t // st, h // sh, w // sw
            else:  # strided causal conv, kernel 3, spatial padding 1
                walk.conv(f"{name}.downsample", width_, t, h, w)
                t, h, w = (t - 1) // st + 1, (h - 1) // sh + 1, (w - 1) // sw + 1
        if out != width_ and cfg.encoder_downsample != "space_to_depth":
            walk.resnet(f"{name}.widen", width_, out, t, h, w)
        c = out
        unit(name, True, start, first)
    s = t * h * w
    walk.norm_silu("encoder.head", c, s, False)
    walk.conv("encoder.conv_out", c, t, h, w)
    unit("encoder.head")
    cz = cfg.latent_channels
    walk.add("posterior.params", (cz + 1 if cfg.logvar == "uniform" else 2 * cz) * s)  # kept by the logvar clamp
    walk.add("posterior.std", cz * s)  # exp(0.5 logvar)
    walk.add("posterior.eps", cz * s)
    unit("posterior")

    conditioned = cfg.decoder_timestep_conditioning
    noisy = cfg.noise_pattern[::-1]  # mid-block first, then the stages from the latent side
    widths, layers_, strides = cfg.decoder_channels[::-1], cfg.decoder_layers[::-1], cfg.decoder_strides[::-1]
    walk.conv("decoder.conv_in", cz, t, h, w)
    if conditioned:  # t x timestep_scale (kept for its grad), the sinusoid's frequencies and angles, the sinusoid
        walk.add("decoder.timestep", 1, "fp32")
        walk.add("decoder.sinusoid_freqs", TIMESTEP_FREQ_DIM // 2, "fp32", per_sample=False)
        walk.add("decoder.sinusoid_angles", TIMESTEP_FREQ_DIM // 2, "fp32")
        walk.add("decoder.sinusoid", TIMESTEP_FREQ_DIM)
    unit("decoder.conv_in")
    c = widths[0]
    plan = [(widths[0], layers_[0], (1, 1, 1), noisy[0])] + [
        (widths[i], layers_[i + 1], strides[i], noisy[i + 1]) for i in range(len(widths))]
    for i, (channels, layers, stride, noise) in enumerate(plan):
        name = "decoder.mid" if i == 0 else f"decoder.stage{i - 1}"
        start = c * t * h * w
        first = None
        if c != channels:
            walk.resnet(f"{name}.widen", c, channels, t, h, w)
            first = f"{name}.widen.norm1.x"
        width_, x_storage = channels, None
        if math.prod(stride) > 1:
            walk.conv(f"{name}.upsample", channels, t, h, w)  # conv to C*prod/f, depth-to-space (+ skip)
            st, sh, sw = stride
            width_ = channels // cfg.decoder_upsample_factor
            if not cfg.decoder_upsample_residual:  # the output is a view dropping st-1 frames of the d2s result
                x_storage = width_ * st * t * sh * h * sw * w
            t, h, w = st * t - (st - 1), sh * h, sw * w
        elif first is None and layers:
            first = f"{name}.resnet0.norm1.x"
        if conditioned:  # the stage's TimestepMLP(256, 4C): SiLU input and output
            walk.add(f"{name}.time_mlp", 2 * 4 * width_)
        for j in range(layers):
            walk.resnet(f"{name}.resnet{j}", width_, width_, t, h, w, conditioned, noise, x_storage if j == 0 else None)
        c = width_
        unit(name, True, start, first)
    if conditioned:  # the final TimestepMLP(256, 2C)
        walk.add("decoder.head.time_mlp", 2 * 2 * c)
    walk.norm_silu("decoder.head", c, t * h * w, conditioned)
    walk.conv("decoder.conv_out", c, t, h, w)
    unit("decoder.head")
    return units


def vae_activations(cfg: Any, frames: int, height: int, width: int, layout: TrainingLayout,
                    batch: int | None = None) -> dict[str, Any]:
    """Activation bytes of one VAE training forward (encode, posterior sample, decode): as
    `dit_activations`, with the stages as the checkpoint units; per-stage figures included.

    Not counted: the loss networks (LPIPS, discriminators, DWT) and the loss itself."""
    b = layout.micro_batch if batch is None else batch
    ab = layout.act_bytes
    units = vae_units(cfg, b, frames, height, width)
    per_unit = {u.name: total_bytes(u.terms, ab) for u in units}
    if layout.activation_checkpointing:
        held = sum(per_unit[u.name] if not u.checkpointable else u.input_elements * ab for u in units)
        recompute = max(total_bytes(_as_upcast(u.terms, (u.input_term,)), ab) for u in units if u.checkpointable)
    else:
        held, recompute = sum(per_unit.values()), 0
    return {"batch": b, "forward_saved": held, "recompute": recompute, "total": held + recompute,
            "breakdown": per_unit}


# ------------------------------------------------------------------ parameters and state


def _meta_model(cfg: Any) -> Any:
    import torch

    with torch.device("meta"):
        return cfg.build()


def param_units(cfg: Any, component: str) -> dict[str, list[tuple[int, ...]]]:
    """Parameter shapes per FSDP unit, from the model built on the meta device: each DiT block,
    each VAE encoder/decoder stage (mid-blocks included), and "root" for everything else."""
    model = _meta_model(cfg)
    if component == "dit":
        units = {f"blocks.{i}": blk for i, blk in enumerate(model.blocks)}
    else:
        units = {f"encoder.stages.{i}": s for i, s in enumerate(model.encoder.stages)}
        units["encoder.mid"] = model.encoder.mid
        units["decoder.mid"] = model.decoder.mid
        units.update({f"decoder.stages.{i}": s for i, s in enumerate(model.decoder.stages)})
    inside = {id(p) for m in units.values() for p in m.parameters()}
    shapes = {name: [tuple(p.shape) for p in m.parameters()] for name, m in units.items()}
    shapes["root"] = [tuple(p.shape) for p in model.parameters() if id(p) not in inside]
    return shapes


def _numel(shape: tuple[int, ...]) -> int:
    return math.prod(shape) if shape else 1


def sharded_numel(shapes: list[tuple[int, ...]], workers: int) -> int:
    """Elements one rank holds when FSDP2 shards each tensor on dim 0, padded to a multiple of
    `workers` rows: sum of ceil(dim0 / N) x (the other dims)."""
    total = 0
    for shape in shapes:
        shape = shape or (1,)
        total += -(-shape[0] // workers) * _numel(shape[1:])
    return total


def state_memory(cfg: Any, component: str, layout: TrainingLayout) -> dict[str, int]:
    """Bytes per GPU of parameters, gradients, AdamW moments, the EMA (DiT) and the bf16 working
    copy of the weights: ddp whole, fsdp sharded plus root + two unsharded blocks."""
    units = param_units(cfg, component)
    shapes = [s for group in units.values() for s in group]
    total = sum(_numel(s) for s in shapes)
    held = total if layout.parallel == "ddp" else sharded_numel(shapes, layout.workers)
    blocks = [sum(_numel(s) for s in group) for name, group in units.items() if name != "root"]
    root = sum(_numel(s) for s in units["root"])
    if layout.parallel == "ddp":
        working = BF16 * total  # bf16 copies of every weight, kept by autograd until backward
    else:
        working = BF16 * (root + 2 * max(blocks, default=0))  # root + computing block + prefetched block
    return {"param_count": total, "param_count_per_gpu": held, "largest_unit_params": max(blocks, default=0),
            "root_params": root, "params": FP32 * held, "grads": FP32 * held,
            "optimizer": ADAM_MOMENTS * FP32 * held, "ema": FP32 * held if component == "dit" else 0,
            "bf16_weights": working}


# ------------------------------------------------------------------------- the estimate


def forward_flops(cfg: Any, component: str, frames: int, height: int, width: int) -> int:
    """FLOPs of one batch-1 forward: evaluation.cost's FlopCounterMode counts (matmul, attention, conv)."""
    if component == "dit":
        from models.dit import describe_dit

        return int(describe_dit(cfg, frames, height, width)["flops_per_forward"])
    from evaluation.cost import _vae_flops

    encode, decode, _ = _vae_flops(cfg, frames, height, width)
    return encode + decode


def vae_latent_tokens(cfg: Any, frames: int, height: int, width: int) -> int:
    """Latent positions t x h x w of one clip (what one DiT token covers with a 1x1x1 patch)."""
    tc, sc = cfg.temporal_compression, cfg.spatial_compression
    return (1 + (frames - 1) // tc) * (height // sc) * (width // sc)


def training_estimate(cfg: Any, component: str, frames: int, height: int, width: int, layout: TrainingLayout,
                      flops_per_forward: int | None = None) -> dict[str, Any]:
    """Per-GPU memory (bytes and GiB) and step time of training `cfg` ("dit" or "vae") at one shape."""
    if component not in ("dit", "vae"):
        raise ValueError(f"component must be dit or vae, not {component!r}.")
    state = state_memory(cfg, component, layout)
    if component == "dit":
        acts = dit_activations(cfg, frames, height, width, layout)
        tokens = acts["tokens_per_sample"]
    else:
        acts = vae_activations(cfg, frames, height, width, layout)
        tokens = vae_latent_tokens(cfg, frames, height, width)
    memory = {k: state[k] for k in ("params", "grads", "optimizer", "ema", "bf16_weights")}
    memory["activations"] = acts["total"]
    memory["total"] = sum(memory.values())
    fwd = forward_flops(cfg, component, frames, height, width) if flops_per_forward is None else flops_per_forward
    passes = 3 + (1 if layout.activation_checkpointing else 0)  # fwd + bwd (2x fwd) [+ recompute]
    step_flops = passes * fwd * layout.batch_per_gpu
    peak = GPU_PEAK_BF16[layout.gpu]
    step_s = step_flops / (peak * layout.mfu)
    return {
        "workers": layout.workers, "parallel": layout.parallel, "batch": layout.batch,
        "batch_per_gpu": layout.batch_per_gpu, "grad_accum": layout.grad_accum,
        "micro_batch": layout.micro_batch, "activation_checkpointing": layout.activation_checkpointing,
        "precision": "bf16 compute, fp32 master weights, fp32 grads and reduction, AdamW fp32 moments",
        "timesteps": ("per token (a batch with an image-conditioned sample)" if layout.per_token_timesteps
                      else "per sample") if component == "dit" else None,
        "param_count": state["param_count"], "param_count_per_gpu": state["param_count_per_gpu"],
        "memory_bytes": memory,
        "memory_gib": {k: round(v / 2**30, 2) for k, v in memory.items()},
        "activations_forward_saved_bytes": acts["forward_saved"], "activations_recompute_bytes": acts["recompute"],
        "tokens_per_sample": tokens, "flops_per_forward_sample": fwd, "flops_per_step_per_gpu": step_flops,
        "gpu": GPU_NAMES[layout.gpu], "peak_bf16_flops": peak, "mfu": layout.mfu,
        "step_time_s": step_s, "samples_per_s": layout.batch / step_s,
        "tokens_per_s": layout.batch * tokens / step_s, "tokens_per_s_per_gpu": layout.batch_per_gpu * tokens / step_s,
    }
