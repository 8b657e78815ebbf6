"""LTX-Video's denoising transformer (PixArt-alpha style), with the ablation switches.

Mirrors diffusers' `LTXVideoTransformer3DModel` (models/transformers/transformer_ltx.py):
linear patch embedding -> AdaLN-single timestep conditioning (one sinusoid + MLP, a
Linear to 6 x hidden, a learned per-block `scale_shift_table`) -> blocks -> LayerNorm
(no affine) modulated by a final 2-row table -> linear projection back to patches.
Captions pass through PixArt's two-layer GELU-tanh projection first.

Timestep convention: `forward` takes flow time t in [0, 1] (t = 1 pure noise) and
multiplies by `timestep_scale` = 1000 before the sinusoid, exactly what diffusers'
pipelines feed the transformer (FlowMatchEulerDiscreteScheduler's timesteps are
sigma x 1000). Timesteps may be (B,) or per token (B, N); per-token timesteps are how
image conditioning works (first-frame tokens at t = 0).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from models.dit.blocks import CrossAttentionBlock, TextKV, mask_bias
from models.dit.config import DiTConfig
from models.dit.mmdit import JointBlock
from models.dit.patch import patchify, token_coordinates, token_grid, unpatchify
from models.dit.rope import rope_frequencies, rope_max_positions_for, rope_rotation
from models.layers import TimestepMLP, timestep_embedding

TIMESTEP_FREQ_DIM = 256  # sinusoid width of PixArt's timestep embedder
MATCH_TOLERANCE = 0.02  # match_params: the MM-DiT's parameters within 2% of the cross-attention model's
FFN_WIDTH_MULTIPLE = 8  # matched FFN widths are rounded to this (tensor-core friendly)


def param_count(cfg: DiTConfig) -> int:
    """Parameters of the model `cfg` builds, counted on the meta device (no memory, no init)."""
    with torch.device("meta"):
        return sum(p.numel() for p in LTXDiT(cfg).parameters())


def ffn_width(cfg: DiTConfig) -> int:
    """Hidden width of every FFN: ffn_mult x hidden, or for an MM-DiT with `match_params` the
    width that brings its parameter count within 2% of the cross-attention model of the same
    config (the reference; `match_params` leaves cross-attention itself unchanged)."""
    if cfg.match_params and cfg.text_conditioning == "mmdit":
        return _matched_ffn_width(cfg)
    return cfg.ffn_mult * cfg.hidden


@functools.lru_cache(maxsize=64)
def _matched_ffn_width(cfg: DiTConfig) -> int:
    plain = dataclasses.replace(cfg, match_params=False)
    target = param_count(dataclasses.replace(plain, text_conditioning="cross_attention"))
    # The count is affine in the FFN width (every FFN is D*F + F + F*D + D): two meta builds give the line.
    lo, hi = cfg.ffn_mult, cfg.ffn_mult + 1
    count_lo, count_hi = (param_count(dataclasses.replace(plain, ffn_mult=m)) for m in (lo, hi))
    per_unit = (count_hi - count_lo) / cfg.hidden
    exact = lo * cfg.hidden + (target - count_lo) / per_unit
    width = FFN_WIDTH_MULTIPLE * round(exact / FFN_WIDTH_MULTIPLE)
    got = count_lo + (width - lo * cfg.hidden) * per_unit
    if width < FFN_WIDTH_MULTIPLE or abs(got - target) > MATCH_TOLERANCE * target:
        raise ValueError(f"match_params cannot bring this MM-DiT within 2% of the cross-attention model's {target} "
                         f"parameters by FFN width (it would need {exact:.0f}); set match_params=false.")
    return width


class CaptionProjection(nn.Module):
    """PixArt-alpha's caption projection: Linear -> GELU(tanh) -> Linear."""

    def __init__(self, in_features: int, hidden: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(in_features, hidden)
        self.linear_2 = nn.Linear(hidden, hidden)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        """(B, L, caption_channels) -> (B, L, hidden)."""
        return self.linear_2(F.gelu(self.linear_1(text), approximate="tanh"))


@dataclasses.dataclass
class SamplingCache:
    """What `LTXDiT.reuse_conditioning` keeps between forwards: the caption-side work of the last forward,
    keyed by the captions' values, and the RoPE rotations per token grid."""

    text: torch.Tensor | None = None  # (B, L, caption_channels) the raw captions it was computed from
    mask: torch.Tensor | None = None  # (B, L) their mask
    projected: torch.Tensor | None = None  # (B, L, D) the caption projection's output
    kv: list[TextKV] = dataclasses.field(default_factory=list)  # per block: cross-attention keys, values
    rope: dict[tuple, torch.Tensor | None] = dataclasses.field(default_factory=dict)  # (latent shape, fps, device) -> rotations
    times: torch.Tensor | None = None  # (S,) the sampler's flow times whose embeddings are precomputed
    time_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None  # their (S, 6D) modulations and (S, D) embeddings

    def matches(self, text: torch.Tensor, mask: torch.Tensor) -> bool:
        return (self.text is not None and self.text.shape == text.shape and self.mask.shape == mask.shape
                and self.text.dtype == text.dtype and torch.equal(self.text, text) and torch.equal(self.mask, mask))


class LTXDiT(nn.Module):
    """Velocity-predicting video transformer; see the module docstring."""

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        self.config = cfg
        dim = cfg.hidden
        self.patch_embed = nn.Linear(cfg.patch_channels, dim)
        self.time_mlp = TimestepMLP(TIMESTEP_FREQ_DIM, dim)
        self.time_modulation = nn.Linear(dim, 6 * dim)  # AdaLN-single: shared by every block
        self.caption_projection = CaptionProjection(cfg.caption_channels, dim)
        self.ffn_hidden = ffn_width(cfg)
        args = (dim, cfg.num_heads, cfg.head_dim, cfg.qk_norm, self.ffn_hidden, cfg.norm_eps)
        if cfg.text_conditioning == "cross_attention":
            blocks = [CrossAttentionBlock(*args) for _ in range(cfg.num_layers)]
        else:
            blocks = [JointBlock(*args, text_pre_only=i == cfg.num_layers - 1) for i in range(cfg.num_layers)]
        self.blocks = nn.ModuleList(blocks)
        self.final_scale_shift = nn.Parameter(torch.randn(2, dim) / dim**0.5)
        self.proj_out = nn.Linear(dim, cfg.patch_channels)
        self.gradient_checkpointing = False  # recompute block activations in backward (memory for time)
        self._cache: SamplingCache | None = None  # set inside `reuse_conditioning`

    @contextlib.contextmanager
    def reuse_conditioning(self, timesteps: torch.Tensor | None = None) -> Iterator[None]:
        """Within: what a sampler's steps share is computed once. A no-grad forward whose captions and mask
        equal (by value) the previous one's reuses its caption projection and every block's cross-attention
        keys and values (1/8 of a `small` CFG forward's multiplies at 48 tokens), and the RoPE rotations of
        a token grid are computed once. Exact: the same tensors the forward would compute. The weights
        must not change inside.

        `timesteps` (S,): the flow times the sampler will use. Their AdaLN modulations are computed in one
        call up front, and a forward whose (B,) timesteps all equal one of them uses its row: one (S, D) x
        (D, 6D) product instead of S weight-bound (B, D) ones. The rows equal a forward's own to float
        rounding (another matrix height may sum in another order), not bit for bit."""
        self._cache = SamplingCache()
        if timesteps is not None and not torch.is_grad_enabled():
            self._cache.times = timesteps.detach().flatten()
            self._cache.time_embeddings = self._embed_times(self._cache.times)
        try:
            yield
        finally:
            self._cache = None

    def text_states(self, text: torch.Tensor, text_mask: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, list[TextKV] | None]:
        """Projected captions (B, L, D) and, inside `reuse_conditioning` (cross-attention, no grad), every block's
        cross-attention keys/values, from the cache when the captions are the cached ones."""
        cache = self._cache
        if cache is None or torch.is_grad_enabled() or self.config.text_conditioning != "cross_attention":
            return self.caption_projection(text.to(dtype)), None
        if not cache.matches(text, text_mask):
            projected = self.caption_projection(text.to(dtype))
            kv = [block.cross_attn.text_kv(projected, keep=True) for block in self.blocks]
            cache.text, cache.mask, cache.projected, cache.kv = text.clone(), text_mask.clone(), projected, kv
        return cache.projected, cache.kv

    def embed_timesteps(self, timestep: torch.Tensor, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,) or (B, N) flow time -> block modulation (B, 1|N, 6D) and embedding (B, 1|N, D)."""
        row = self._precomputed_time(timestep)
        if row is not None:
            temb, emb = self._cache.time_embeddings  # type: ignore[union-attr, misc]
            return temb[row].expand(batch, 1, -1), emb[row].expand(batch, 1, -1)
        temb, emb = self._embed_times(timestep.flatten())
        return temb.view(batch, -1, temb.shape[-1]), emb.view(batch, -1, emb.shape[-1])

    def _embed_times(self, times: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(M,) flow times -> (M, 6D) block modulations and (M, D) embeddings."""
        freq = timestep_embedding(times * self.config.timestep_scale, TIMESTEP_FREQ_DIM)
        emb = self.time_mlp(freq.to(self.patch_embed.weight.dtype))
        return self.time_modulation(F.silu(emb)), emb

    def _precomputed_time(self, timestep: torch.Tensor) -> slice | None:
        """The row (as a 1-row slice) of `reuse_conditioning`'s precomputed times that every entry of a
        (B,) `timestep` equals, or None (no cache, autograd, per-token times, or a time not among them)."""
        cache = self._cache
        if cache is None or cache.times is None or timestep.dim() != 1 or torch.is_grad_enabled():
            return None
        hits = (cache.times == timestep[0]).nonzero()
        if len(hits) == 0 or not bool((timestep == timestep[0]).all()):
            return None
        row = int(hits[0])
        return slice(row, row + 1)

    def rope(self, latent_shape: tuple[int, int, int], fps: float, device: torch.device) -> torch.Tensor | None:
        """Complex rotations (1, N, hidden/2) for the token grid, or None with RoPE off (inside
        `reuse_conditioning`, computed once per grid)."""
        if self._cache is None:
            return self._rope(latent_shape, fps, device)
        key = (tuple(latent_shape), float(fps), torch.device(device))
        if key not in self._cache.rope:
            self._cache.rope[key] = self._rope(latent_shape, fps, device)
        return self._cache.rope[key]

    def _rope(self, latent_shape: tuple[int, int, int], fps: float, device: torch.device) -> torch.Tensor | None:
        cfg = self.config
        if cfg.rope == "off":
            return None
        coords = token_coordinates(
            latent_shape,
            cfg.patch,
            vae_temporal_compression=cfg.vae_temporal_compression,
            vae_spatial_compression=cfg.vae_spatial_compression,
            fps=fps,
            device=device,
        )
        max_positions = rope_max_positions_for(cfg, latent_shape, fps)  # the config's unless rope_scaling
        cos, sin = rope_frequencies(coords, cfg.hidden, spacing=cfg.rope_spacing, theta=cfg.rope_theta, max_positions=max_positions)
        return rope_rotation(cos, sin)

    def forward(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        fps: float,
    ) -> torch.Tensor:
        """Predict the flow velocity eps - x0.

        latents (B, C, T, H, W); timestep (B,) or (B, N) in [0, 1]; text (B, L, caption_channels);
        text_mask (B, L) bool (True = real token); fps: frames per second of the pixel video.
        Returns (B, C, T, H, W).
        """
        b, _, frames, height, width = latents.shape
        latent_shape = (frames, height, width)
        shared = self._guidance_pair(latents, timestep)  # the halves are one input (a CFG batch): embed it once
        tokens = latents[: b // 2] if shared else latents
        x = self.patch_embed(patchify(tokens.to(self.patch_embed.weight.dtype), self.config.patch))  # (B or B/2, N, D)
        n = x.shape[1]
        if timestep.dim() == 2 and timestep.shape[1] != n:
            raise ValueError(f"per-token timesteps have {timestep.shape[1]} tokens; the latents give {n}.")
        temb, emb = self.embed_timesteps(timestep, b)
        text_h, text_kv = self.text_states(text, text_mask, x.dtype)  # (B, L, D), per-block K/V or None
        rope = self.rope(latent_shape, fps, x.device)
        bias = mask_bias(text_mask, x.dtype)  # (B, 1, 1, L)
        text_temb = temb
        if self.config.text_conditioning == "mmdit":
            video_keys = torch.zeros(b, 1, 1, n, dtype=bias.dtype, device=bias.device)
            bias = torch.cat([video_keys, bias], dim=-1)  # (B, 1, 1, N+L): text padding masked
            if timestep.dim() == 2:
                text_temb, _ = self.embed_timesteps(timestep.amax(dim=1), b)  # (B, 1, 6D)
        for i, block in enumerate(self.blocks):
            if self.gradient_checkpointing and torch.is_grad_enabled():
                x, text_h = checkpoint(block, x, text_h, temb, rope, bias, text_temb=text_temb, use_reentrant=False)
            elif shared and i == 0:  # self-attention of one half, copied: the halves differ from the captions on
                x = block.attend_text(block.attend_self(x, temb[: b // 2], rope).repeat(2, 1, 1), text_h, temb, bias, text_kv[0])
            elif text_kv is not None:
                x, text_h = block(x, text_h, temb, rope, bias, text_kv=text_kv[i])
            else:
                x, text_h = block(x, text_h, temb, rope, bias, text_temb=text_temb)
        shift, scale = (self.final_scale_shift[None, None] + emb[:, :, None]).unbind(dim=2)  # (B, 1|N, D) each
        x = torch.addcmul(shift, F.layer_norm(x, (x.shape[-1],), eps=1e-6), 1 + scale)
        return unpatchify(self.proj_out(x), latent_shape, self.config.patch)

    def _guidance_pair(self, latents: torch.Tensor, timestep: torch.Tensor) -> bool:
        """Whether a forward inside `reuse_conditioning` (cross-attention, no autograd) gets a batch whose two
        halves hold the same latents at the same times, as a CFG batch does (`models.flow.guided_velocity`):
        then the first block's self-attention runs on one half (about 2% of a `small` CFG forward's multiplies; the
        other half equals it up to the summation order of a shorter matrix product)."""
        b = latents.shape[0]
        if self._cache is None or torch.is_grad_enabled() or self.config.text_conditioning != "cross_attention" or b % 2:
            return False
        return bool(torch.equal(latents[: b // 2], latents[b // 2 :]) and torch.equal(timestep[: b // 2], timestep[b // 2 :]))

    def token_count(self, latent_shape: tuple[int, int, int]) -> int:
        t, h, w = token_grid(latent_shape, self.config.patch)
        return t * h * w
