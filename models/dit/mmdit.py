"""MM-DiT joint-attention block (SD3, Esser et al. 2024, §5.1), in LTX-Video's AdaLN-single form.

Follows diffusers' `JointTransformerBlock` (models/attention.py, SD3): video and text
tokens keep separate weights (norm modulation, QKV, QK norms, output projection, FFN)
and attend jointly in one softmax over [video; text] keys. Differences from SD3, kept to
stay inside LTX-Video's design so the switch isolates "cross-attention vs joint attention":

- Modulation is AdaLN-single: the one timestep MLP's 6D output plus a learned per-block,
  per-stream `scale_shift_table` (no per-block conditioning Linear, no pooled text vector).
- The text stream's timestep is the per-sample maximum of the per-token timesteps (with
  image conditioning, the noise level of the generated frames; frame-0 tokens are at 0).
- RoPE rotates video q, k only; text tokens carry no position.
- As SD3's last block (`context_pre_only`), the last block only reads the text stream
  (keys and values), so no text parameters sit outside the loss's graph.

Capacity. With the same widths an MM-DiT block holds ~24 D^2 weights against the
cross-attention block's ~16 D^2 (its text stream has its own QKV, output and a whole
FFN), 47% more at LTX's 2B size. `DiTConfig.match_params` narrows both streams' FFNs
(one shared width, as SD3's symmetric streams) until the parameter count is within 2% of
the cross-attention model's (`transformer.ffn_width`). Width rather than depth: a block is about
3.5% of the full model and 30% of the tiny one, too coarse to land within 2%, and equal
depth keeps the two arms' sequential structure the same.
"""

from __future__ import annotations

import torch
from torch import nn

from models.dit.blocks import FeedForward, Rope, attend, gated_residual, make_qk_norm, norm_modulate
from models.dit.rope import rotate
from models.layers import WorkspaceLinear


class JointBlock(nn.Module):
    """One MM-DiT block: joint self-attention over video and text tokens, per-stream FFNs.

    Its projections are `WorkspaceLinear`s, as the cross-attention block's are, so a CPU speed comparison of the
    two designs runs their products on the same library kernel (each role's output is consumed within the block).
    """

    def __init__(
        self, dim: int, heads: int, head_dim: int, qk_norm: str, ffn_hidden: int, eps: float, text_pre_only: bool
    ) -> None:
        super().__init__()
        inner = heads * head_dim
        self.heads, self.eps, self.text_pre_only = heads, eps, text_pre_only
        self.video_qkv = WorkspaceLinear(dim, 3 * inner, role="mm_video_qkv")
        self.video_norm_q = make_qk_norm(qk_norm, inner)
        self.video_norm_k = make_qk_norm(qk_norm, inner)
        self.video_out = WorkspaceLinear(inner, dim, role="mm_video_out")
        self.video_ff = FeedForward(dim, ffn_hidden)
        self.video_scale_shift_table = nn.Parameter(torch.randn(6, dim) / dim**0.5)
        # The last block only needs the text keys/values: no queries, output or FFN there.
        self.text_kv_only = text_pre_only
        self.text_qkv = WorkspaceLinear(dim, (2 if text_pre_only else 3) * inner, role="mm_text_qkv")
        self.text_norm_k = make_qk_norm(qk_norm, inner)
        rows = 2 if text_pre_only else 6
        self.text_scale_shift_table = nn.Parameter(torch.randn(rows, dim) / dim**0.5)
        if not text_pre_only:
            self.text_norm_q = make_qk_norm(qk_norm, inner)
            self.text_out = WorkspaceLinear(inner, dim, role="mm_text_out")
            self.text_ff = FeedForward(dim, ffn_hidden)

    def forward(
        self,
        x: torch.Tensor,
        text: torch.Tensor,
        temb: torch.Tensor,
        rope: Rope | None,
        bias: torch.Tensor,
        text_temb: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, N, D), text (B, L, D), temb (B, 1|N, 6D), bias (B, 1, 1, N+L), text_temb (B, 1, 6D).

        Returns the updated (x, text); text is returned unchanged by the last block.
        """
        b, n, _ = x.shape
        ada = self.video_scale_shift_table[None, None] + temb.view(b, temb.shape[1], 6, -1)  # (B, 1|N, 6, D)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = ada.unbind(dim=2)
        rows = self.text_scale_shift_table.shape[0]
        text_ada = self.text_scale_shift_table[None, None] + text_temb.view(b, 1, 6, -1)[:, :, :rows]  # (B,1,rows,D)

        h = norm_modulate(x, self.eps, shift_msa, scale_msa)
        q, k, v = self.video_qkv(h).chunk(3, dim=-1)  # 3 x (B, N, inner)
        q, k = self.video_norm_q(q), self.video_norm_k(k)
        if rope is not None:
            q, k = rotate(q, rope), rotate(k, rope)

        text_h = norm_modulate(text, self.eps, text_ada[:, :, 0], text_ada[:, :, 1])
        text_proj = self.text_qkv(text_h)
        if self.text_kv_only:
            text_k, text_v = text_proj.chunk(2, dim=-1)  # 2 x (B, L, inner)
        else:
            text_q, text_k, text_v = text_proj.chunk(3, dim=-1)
            q = torch.cat([q, self.text_norm_q(text_q)], dim=1)  # (B, N+L, inner)
        k = torch.cat([k, self.text_norm_k(text_k)], dim=1)  # (B, N+L, inner)
        v = torch.cat([v, text_v], dim=1)
        out = attend(q, k, v, self.heads, bias)  # (B, N or N+L, inner)

        x = gated_residual(x, self.video_out(out[:, :n]), gate_msa)
        x = gated_residual(x, self.video_ff(norm_modulate(x, self.eps, shift_mlp, scale_mlp)), gate_mlp)
        if self.text_kv_only:
            return x, text
        t_shift_msa, t_scale_msa, t_gate_msa, t_shift_mlp, t_scale_mlp, t_gate_mlp = text_ada.unbind(dim=2)
        text = gated_residual(text, self.text_out(out[:, n:]), t_gate_msa)
        text = gated_residual(text, self.text_ff(norm_modulate(text, self.eps, t_shift_mlp, t_scale_mlp)), t_gate_mlp)
        return x, text
