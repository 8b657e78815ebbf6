"""LTX-Video transformer pieces: attention with QK RMSNorm + RoPE, GELU-tanh FFN, the block.

Follows diffusers' `LTXAttention`, `LTXVideoAttnProcessor` and `LTXVideoTransformerBlock`
(models/transformers/transformer_ltx.py), with two speed changes that keep the math:
self-attention's q, k, v are one fused Linear (`to_qkv`) and cross-attention's k, v
another (`to_kv`); `models.dit.convert` concatenates diffusers' weights accordingly.
Attention is `F.scaled_dot_product_attention` with an additive mask bias of -10000 on
padded text tokens, as diffusers builds it (a fully padded caption then attends
uniformly instead of producing NaN).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from models.dit.rope import rotate
from models.layers import WorkspaceLinear, workspace

Rope = torch.Tensor  # (B|1, N, inner/2, 2) rotations as (cos, sin), `models.dit.rope.rope_rotation`
TextKV = tuple[torch.Tensor, torch.Tensor]  # cross-attention keys (normed) and values of the text, (B, L, inner) each

QK_NORM_EPS = 1e-5  # diffusers' LTXAttention hard-codes this for norm_q / norm_k
GELU_TANH_K = 2 * math.sqrt(2 / math.pi)  # GELU(tanh): 0.5 (1 + tanh(u)) = sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3)
GELU_TANH_CUBIC = 0.044715


def _fast_path(x: torch.Tensor) -> bool:
    """fp32 on CPU without autograd, outside torch.compile: where the fewer-pass norms and GELU run."""
    return (x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_grad_enabled()
            and not torch.compiler.is_compiling())


def rms_norm(x: torch.Tensor, eps: float, weight: torch.Tensor | None = None, *, out: torch.Tensor | None = None) -> torch.Tensor:
    """RMSNorm over the last dim, computed in fp32 (diffusers' `RMSNorm`, nn.RMSNorm with `weight`).

    On the fast path (`_fast_path`) the sum of squares is one `vector_norm` pass with no (.., D)
    temporary (F.rms_norm squares into a fresh buffer, then reads it again), and the result goes
    into `out` when given (x itself, or a workspace buffer). Within 2 ulp of F.rms_norm's: the
    norm is squared back, so the mean square carries one more rounding.
    """
    if not _fast_path(x):
        return F.rms_norm(x.float(), (x.shape[-1],), weight, eps).to(x.dtype)
    r = torch.linalg.vector_norm(x, dim=-1, keepdim=True)  # (.., 1)
    r = r.square_().div_(x.shape[-1]).add_(eps).rsqrt_()
    out = torch.mul(x, r, out=out) if out is not None else x * r
    return out if weight is None else out.mul_(weight)


def norm_modulate(x: torch.Tensor, eps: float, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """AdaLN: rms_norm(x) * (1 + scale) + shift. With autograd one `addcmul` after the norm; without,
    the modulation is one `addcmul` pass over the norm's own output (a workspace buffer on the fast
    path, read at once by the next projection: no fresh (B, N, D) buffer, whose page faults were
    the largest non-matmul cost in the CPU profile)."""
    if not _fast_path(x):
        h = rms_norm(x, eps)
        return torch.addcmul(shift, h, 1 + scale) if torch.is_grad_enabled() else h.mul_(1 + scale).add_(shift)
    h = rms_norm(x, eps, out=workspace("norm_modulate", tuple(x.shape), x))
    return torch.addcmul(shift, h, 1 + scale, out=h)


def gated_residual(x: torch.Tensor, update: torch.Tensor, gate: torch.Tensor, *, owned: bool = False) -> torch.Tensor:
    """x + update * gate in one `addcmul` pass (diffusers makes a product temporary first).

    `owned`: x is a temporary of the caller's own, so without autograd it is updated in place
    (no new (B, N, D) buffer; the block's input itself is never overwritten).
    """
    if owned and not torch.is_grad_enabled():
        return x.addcmul_(update, gate)
    return torch.addcmul(x, update, gate)


@functools.cache
def _gelu_k(dtype: torch.dtype) -> torch.Tensor:
    return torch.tensor(GELU_TANH_K, dtype=dtype)


GELU_CHUNK = 65536  # elements per pass group: h's chunk and u's stay in L2 across GELU's four passes


def gelu_tanh_(h: torch.Tensor) -> torch.Tensor:
    """GELU(tanh) of a contiguous h in place, as h * sigmoid(2u) (no autograd).

    2u = h (k + k c h^2) is one `addcmul` and one product; then the sigmoid and the product into
    h: four passes, each over a chunk of GELU_CHUNK elements that stays in cache from one pass to
    the next (at (640, 2048) the whole tensor streamed from L3 four times costs a quarter more).
    On CPU torch's tanh kernel is the slow part of its fused GELU(tanh): at the `small` generate
    shape, (96, 2048), gelu_ takes 0.73 ms and this 0.39 ms, within 5.2e-7 of the float64 GELU
    (torch's own: 4e-7)."""
    rows = h.view(-1, h.shape[-1])
    step = max(1, GELU_CHUNK // h.shape[-1])
    buffer = workspace("gelu_tanh", (min(step, rows.shape[0]), h.shape[-1]), h)
    k = _gelu_k(h.dtype)
    for chunk in rows.split(step):
        u = buffer[: chunk.shape[0]]
        torch.addcmul(k, chunk, chunk, value=GELU_TANH_CUBIC * GELU_TANH_K, out=u).mul_(chunk)  # 2u
        chunk.mul_(torch.sigmoid(u, out=u))
    return h


def mask_bias(text_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, L) bool mask -> (B, 1, 1, L) additive bias: 0 for kept tokens, -10000 for padding."""
    return ((1 - text_mask.to(dtype)) * -10000.0)[:, None, None, :]


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, bias: torch.Tensor | None) -> torch.Tensor:
    """Multi-head attention on flat tokens: q (B, N, inner), k/v (B, M, inner) -> (B, N, inner)."""
    b, n, inner = q.shape
    q = q.view(b, n, heads, -1).transpose(1, 2)  # (B, H, N, Dh)
    k = k.view(b, k.shape[1], heads, -1).transpose(1, 2)  # (B, H, M, Dh)
    v = v.view(b, v.shape[1], heads, -1).transpose(1, 2)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B, H, N, Dh)
    return out.transpose(1, 2).reshape(b, n, inner)


def make_qk_norm(kind: str, inner: int) -> nn.Module:
    if kind == "rms_across_heads":
        return nn.RMSNorm(inner, eps=QK_NORM_EPS, elementwise_affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"qk_norm must be 'none' or 'rms_across_heads', not {kind!r}.")


class SelfAttention(nn.Module):
    """Self-attention over video tokens with QK norm across heads and RoPE on q, k."""

    def __init__(self, dim: int, heads: int, head_dim: int, qk_norm: str) -> None:
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.to_qkv = WorkspaceLinear(dim, 3 * inner, role="self_qkv")
        self.norm_q = make_qk_norm(qk_norm, inner)
        self.norm_k = make_qk_norm(qk_norm, inner)
        self.to_out = WorkspaceLinear(inner, dim, role="self_out")

    def forward(self, x: torch.Tensor, rope: Rope | None) -> torch.Tensor:
        """(B, N, D) -> (B, N, D)."""
        qkv = self.to_qkv(x)  # (B, N, 3 inner)
        if isinstance(self.norm_q, nn.RMSNorm) and _fast_path(qkv):
            q, k = self._normed_qk(qkv, rope)
            v = qkv[..., 2 * q.shape[-1] :]
        else:
            q, k, v = qkv.chunk(3, dim=-1)  # 3 x (B, N, inner)
            q, k = self.norm_q(q), self.norm_k(k)
            if rope is not None:  # q, k are fresh buffers (the norms' outputs, or slices of the qkv temporary)
                q, k = rotate(q, rope, inplace=True), rotate(k, rope, inplace=True)
        return self.to_out(attend(q, k, v, self.heads, None))

    def _normed_qk(self, qkv: torch.Tensor, rope: Rope | None) -> tuple[torch.Tensor, torch.Tensor]:
        """q and k normed (each with its own weight) and rotated together, as (B, N, 2, inner): one pass
        per step over both instead of one each (half the small ops), in a workspace buffer read by the
        attention right after. Returns the (B, N, inner) views of q and k."""
        b, n, three = qkv.shape
        inner = three // 3
        qk = workspace("self_qk", (b, n, 2, inner), qkv)
        weight = torch.stack([self.norm_q.weight, self.norm_k.weight])  # (2, inner)
        rms_norm(qkv[..., : 2 * inner].unflatten(-1, (2, inner)), self.norm_q.eps, weight, out=qk)
        if rope is not None:
            rotate(qk, rope.unsqueeze(-3), inplace=True)  # (B|1, N, 1, inner/2, 2): the same turn for q and k
        return qk[:, :, 0], qk[:, :, 1]


class CrossAttention(nn.Module):
    """Video queries attending to projected text tokens (no RoPE, as LTX-Video)."""

    def __init__(self, dim: int, heads: int, head_dim: int, qk_norm: str) -> None:
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.to_q = WorkspaceLinear(dim, inner, role="cross_q")
        self.to_kv = WorkspaceLinear(dim, 2 * inner, role="cross_kv")
        self.norm_q = make_qk_norm(qk_norm, inner)
        self.norm_k = make_qk_norm(qk_norm, inner)
        self.to_out = WorkspaceLinear(inner, dim, role="cross_out")

    def text_kv(self, text: torch.Tensor, *, keep: bool = False) -> TextKV:
        """text (B, L, D) -> normed keys and values, 2 x (B, L, inner). `keep`: in fresh memory, not in
        the workspace buffer the next block's projection overwrites (for reuse across forwards)."""
        kv = self.to_kv(text)
        k, v = (kv.clone() if keep else kv).chunk(2, dim=-1)
        return self.norm_k(k), v

    def forward(self, x: torch.Tensor, text: torch.Tensor, bias: torch.Tensor, kv: TextKV | None = None) -> torch.Tensor:
        """x (B, N, D), text (B, L, D), bias (B, 1, 1, L) -> (B, N, D). `kv`: `text_kv(text)` computed earlier."""
        q = self.to_q(x)  # a fresh buffer or this role's workspace: normed in place on the fast path
        q = rms_norm(q, self.norm_q.eps, self.norm_q.weight, out=q) if isinstance(self.norm_q, nn.RMSNorm) and _fast_path(q) \
            else self.norm_q(q)
        k, v = kv if kv is not None else self.text_kv(text)
        return self.to_out(attend(q, k, v, self.heads, bias))


class FeedForward(nn.Module):
    """Linear -> GELU(tanh) -> Linear (diffusers' `FeedForward(activation_fn='gelu-approximate')`)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc_in = WorkspaceLinear(dim, hidden, role="ffn_in")
        self.fc_out = WorkspaceLinear(hidden, dim, role="ffn_out")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc_in(x)  # (B, N, hidden): a fresh buffer, so without autograd GELU overwrites it
        if torch.is_grad_enabled():
            h = F.gelu(h, approximate="tanh")
        else:  # h is a fresh buffer: overwritten in place (on the CPU fast path without the slow tanh kernel)
            h = gelu_tanh_(h) if _fast_path(h) else torch._C._nn.gelu_(h, approximate="tanh")
        return self.fc_out(h)


class CrossAttentionBlock(nn.Module):
    """LTX-Video block: AdaLN-single(self-attn) -> cross-attn (ungated) -> AdaLN-single(FFN)."""

    def __init__(self, dim: int, heads: int, head_dim: int, qk_norm: str, ffn_hidden: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.self_attn = SelfAttention(dim, heads, head_dim, qk_norm)
        self.cross_attn = CrossAttention(dim, heads, head_dim, qk_norm)
        self.ff = FeedForward(dim, ffn_hidden)
        # Rows: shift/scale/gate of the attention, shift/scale/gate of the FFN (PixArt-alpha §2.3).
        self.scale_shift_table = nn.Parameter(torch.randn(6, dim) / dim**0.5)

    def forward(
        self, x: torch.Tensor, text: torch.Tensor, temb: torch.Tensor, rope: Rope | None, bias: torch.Tensor,
        text_kv: TextKV | None = None, **_: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, N, D), text (B, L, D), temb (B, 1|N, 6D), bias (B, 1, 1, L) -> (x, text unchanged).
        `text_kv`: this block's `cross_attn.text_kv(text)` from an earlier forward with the same text."""
        return self.attend_text(self.attend_self(x, temb, rope), text, temb, bias, text_kv), text

    def _modulation(self, temb: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """temb (B, 1|N, 6D) -> shift/scale/gate of the attention, then of the FFN, (B, 1|N, D) each."""
        ada = self.scale_shift_table[None, None] + temb.view(temb.shape[0], temb.shape[1], 6, -1)  # (B, 1|N, 6, D)
        return ada.unbind(dim=2)

    def attend_self(self, x: torch.Tensor, temb: torch.Tensor, rope: Rope | None) -> torch.Tensor:
        """The block's first half, AdaLN self-attention with its gated residual: (B, N, D) -> a new (B, N, D)."""
        shift_msa, scale_msa, gate_msa = self._modulation(temb)[:3]
        return gated_residual(x, self.self_attn(norm_modulate(x, self.eps, shift_msa, scale_msa), rope), gate_msa)

    def attend_text(
        self, x: torch.Tensor, text: torch.Tensor, temb: torch.Tensor, bias: torch.Tensor, text_kv: TextKV | None = None
    ) -> torch.Tensor:
        """The rest: cross-attention, then the AdaLN FFN. x is `attend_self`'s output (updated in place without autograd)."""
        shift_mlp, scale_mlp, gate_mlp = self._modulation(temb)[3:]
        cross = self.cross_attn(x, text, bias, text_kv)
        x = x.add_(cross) if not torch.is_grad_enabled() else x + cross  # x is this block's own buffer now
        return gated_residual(x, self.ff(norm_modulate(x, self.eps, shift_mlp, scale_mlp)), gate_mlp, owned=True)
