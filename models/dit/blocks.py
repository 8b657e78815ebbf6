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

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.dit.rope import rotate
from models.layers import WorkspaceLinear, workspace

Rope = torch.Tensor  # (B|1, N, inner/2) complex rotations, `models.dit.rope.rope_rotation`
TextKV = tuple[torch.Tensor, torch.Tensor]  # cross-attention keys (normed) and values of the text, (B, L, inner) each

QK_NORM_EPS = 1e-5  # diffusers' LTXAttention hard-codes this for norm_q / norm_k
GELU_TANH_K = 2 * math.sqrt(2 / math.pi)  # GELU(tanh): 0.5 (1 + tanh(u)) = sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3)
GELU_TANH_CUBIC = 0.044715


def rms_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm without affine over the last dim, computed in fp32 (diffusers' `RMSNorm`)."""
    return F.rms_norm(x.float(), (x.shape[-1],), eps=eps).to(x.dtype)


def norm_modulate(x: torch.Tensor, eps: float, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """AdaLN: rms_norm(x) * (1 + scale) + shift. The multiply and add are one `addcmul` pass, or
    without autograd two in-place passes over the norm's fresh output (no new (B, N, D) buffer:
    on CPU a fresh large buffer costs page faults, the largest non-matmul cost in the profile)."""
    h = rms_norm(x, eps)
    if torch.is_grad_enabled():
        return torch.addcmul(shift, h, 1 + scale)
    return h.mul_(1 + scale).add_(shift)


def gated_residual(x: torch.Tensor, update: torch.Tensor, gate: torch.Tensor, *, owned: bool = False) -> torch.Tensor:
    """x + update * gate in one `addcmul` pass (diffusers makes a product temporary first).

    `owned`: x is a temporary of the caller's own, so without autograd it is updated in place
    (no new (B, N, D) buffer; the block's input itself is never overwritten).
    """
    if owned and not torch.is_grad_enabled():
        return x.addcmul_(update, gate)
    return torch.addcmul(x, update, gate)


def gelu_tanh_(h: torch.Tensor) -> torch.Tensor:
    """GELU(tanh) of h in place, as h * sigmoid(2u) through a reused buffer (no autograd).

    On CPU torch's tanh kernel is the slow part of its fused GELU(tanh): at the `small`
    generate shape, (96, 2048), gelu_ takes 0.73 ms and these five passes 0.33 ms (sigmoid
    0.23 ms), within 4e-7 of the float64 GELU as torch's own is."""
    u = workspace("gelu_tanh", tuple(h.shape), h)
    torch.mul(h, h, out=u)
    u.mul_(GELU_TANH_CUBIC * GELU_TANH_K).add_(GELU_TANH_K).mul_(h)  # 2u
    return h.mul_(torch.sigmoid(u, out=u))


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
        q, k, v = self.to_qkv(x).chunk(3, dim=-1)  # 3 x (B, N, inner)
        q, k = self.norm_q(q), self.norm_k(k)
        if rope is not None:  # q, k are fresh buffers (the norms' outputs, or slices of the qkv temporary)
            q, k = rotate(q, rope, inplace=True), rotate(k, rope, inplace=True)
        return self.to_out(attend(q, k, v, self.heads, None))


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
        q = self.norm_q(self.to_q(x))
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
        else:  # h is a fresh buffer: overwritten in place (on CPU without the slow tanh kernel)
            h = gelu_tanh_(h) if h.device.type == "cpu" else torch._C._nn.gelu_(h, approximate="tanh")
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
