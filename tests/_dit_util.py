"""Shared helpers for the DiT / flow tests: a tiny diffusers LTX transformer and its twin."""

from __future__ import annotations

import torch

from models.dit.config import DiTConfig


def tiny_diffusers_ltx(seed: int = 0):
    """2 layers, 2 heads x 16, in_channels 8, caption 24, every parameter randomised."""
    from diffusers import LTXVideoTransformer3DModel

    torch.manual_seed(seed)
    model = LTXVideoTransformer3DModel(
        in_channels=8,
        out_channels=8,
        num_attention_heads=2,
        attention_head_dim=16,
        cross_attention_dim=32,
        num_layers=2,
        caption_channels=24,
    )
    with torch.no_grad():
        for p in model.parameters():  # default init leaves norms at 1 and tables small: randomise all
            p.copy_(torch.randn_like(p) * 0.2)
    return model.eval()


def ours_from_diffusers(model, **overrides) -> torch.nn.Module:
    from models.dit.convert import config_from_diffusers, convert_diffusers_ltx

    cfg = config_from_diffusers(model.config)
    if overrides:
        import dataclasses

        cfg = dataclasses.replace(cfg, **overrides)
    ours = cfg.build().eval()
    ours.load_state_dict(convert_diffusers_ltx(model.state_dict()), strict=True)
    return ours


def tiny_cfg(**kw) -> DiTConfig:
    base = dict(in_channels=4, num_layers=2, num_heads=2, head_dim=16, caption_channels=12, max_text_tokens=5)
    base.update(kw)
    return DiTConfig(**base)
