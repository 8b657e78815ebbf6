"""DiT behaviour: every switch trains, RoPE is relative, patchifiers agree on token counts."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from models.config import ConfigError, from_dict, switch_values, to_dict
from models.dit import DITS, describe_dit, dit_config, patchify, token_timesteps, unpatchify
from models.dit.patch import token_grid
from models.dit.rope import SPACINGS, apply_rope, rope_frequencies
from models.flow import flow_config, flow_matching_loss
from models.registry import UnknownNameError


def _switch_cases() -> list[tuple[str, str, object]]:
    cases = []
    for kind, cls in DITS.items():
        for field, values in switch_values(cls).items():
            cases += [(kind, field, v) for v in values]
    return cases


def _latents_for(cfg, batch: int = 2, generator: torch.Generator | None = None) -> torch.Tensor:
    # A 17x64x64 pixel video in the paired VAE's latent space.
    frames = 1 + 16 // cfg.vae_temporal_compression
    side = 64 // cfg.vae_spatial_compression
    return torch.randn(batch, cfg.in_channels, frames, side, side, generator=generator)


def _tiny_inputs(batch: int, text_batch: int | None = None, train: bool = False) -> tuple:
    """(cfg, the tiny ltx DiT built at seed 0, latents, random captions, a full mask) for forward tests."""
    cfg = dit_config("ltx", "tiny")
    torch.manual_seed(0)
    model = cfg.build().train(train)
    x = _latents_for(cfg, batch=batch)
    n = text_batch or batch
    return cfg, model, x, torch.randn(n, cfg.max_text_tokens, cfg.caption_channels), \
        torch.ones(n, cfg.max_text_tokens, dtype=torch.bool)


@pytest.mark.parametrize("kind,field,value", _switch_cases())
def test_every_switch_trains_one_step(kind: str, field: str, value: object) -> None:
    vae_kind = "conventional" if (field == "patch" and value == "4x4x2") else "ltx"
    cfg = dit_config(vae_kind, "tiny", **{field: value})
    assert isinstance(cfg, DITS.get(kind)) and getattr(cfg, field) == value
    torch.manual_seed(0)
    model = cfg.build()
    g = torch.Generator().manual_seed(0)
    x0 = _latents_for(cfg, generator=g)
    text = torch.randn(2, cfg.max_text_tokens, cfg.caption_channels, generator=g)
    mask = torch.ones(2, cfg.max_text_tokens, dtype=torch.bool)
    mask[0, 5:] = False
    flow = flow_config("tiny", i2v_probability=0.5, caption_dropout=0.5)
    loss, info = flow_matching_loss(model, x0, text, mask, 24.0, flow, g)
    loss.backward()
    assert torch.isfinite(loss)
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), name
    assert sum(p.grad.abs().sum() for p in model.parameters()) > 0


def test_config_round_trip_and_errors() -> None:
    cfg = dit_config("conventional", "tiny", text_conditioning="mmdit")
    assert from_dict(type(cfg), to_dict(cfg)) == cfg
    with pytest.raises(ConfigError, match="mmdit"):
        dit_config("ltx", "tiny", text_conditioning="mmdt")
    with pytest.raises(ConfigError, match="Unknown VAE kind"):
        dit_config("ltxx", "tiny")
    with pytest.raises(UnknownNameError, match="ltx_dit"):
        DITS.get("ltx-dit")


def test_full_preset_matches_ltx_video_2b() -> None:
    info = describe_dit(dit_config("ltx", "full"), 121, 512, 768)
    assert info["tokens"] == 16 * 16 * 24
    assert info["latent_shape"] == [128, 16, 16, 24]
    pytest.importorskip("diffusers")
    from diffusers import LTXVideoTransformer3DModel

    with torch.device("meta"):
        reference = LTXVideoTransformer3DModel()
    assert info["params"] == sum(p.numel() for p in reference.parameters())
    assert info["flops_per_forward"] > 2 * info["params"] * info["tokens"] * 0.5  # matmuls dominate


def test_patchifiers_give_equal_token_counts_and_round_trip() -> None:
    ltx, conv = dit_config("ltx", "tiny"), dit_config("conventional", "tiny")
    for frames, side in [(17, 64), (121, 512)]:
        a = describe_dit(ltx, frames, side, side)
        b = describe_dit(conv, frames, side, side)
        assert a["tokens"] == b["tokens"]
    x = torch.randn(2, 16, 5, 8, 8)  # conventional latents of 17x64x64
    tokens = patchify(x, "4x4x2")
    assert tokens.shape == (2, 3 * 2 * 2, 16 * 32)
    torch.testing.assert_close(unpatchify(tokens, (5, 8, 8), "4x4x2"), x)
    # the first token row holds latent frame 0 only (front replica padding)
    first_row = tokens.view(2, 3, 4, 16, 2, 4, 4)[:, 0]  # (B, h*w, C, pt, ph, pw)
    torch.testing.assert_close(first_row[:, :, :, 0], first_row[:, :, :, 1])


def test_rope_scores_depend_only_on_relative_offsets() -> None:
    g = torch.Generator().manual_seed(0)
    # fp64: LTX's highest frequency is theta*pi/2, so fp32 angles carry ~1e-3 absolute error.
    coords = torch.rand(1, 10, 3, generator=g, dtype=torch.float64) * torch.tensor([2.0, 300.0, 300.0], dtype=torch.float64)
    q, k = torch.randn(2, 1, 10, 96, generator=g, dtype=torch.float64).unbind(0)
    for spacing in SPACINGS:
        scores = []
        for offset in [torch.zeros(3, dtype=torch.float64), torch.tensor([0.7, 123.0, -45.0], dtype=torch.float64)]:
            cos, sin = rope_frequencies(coords + offset, 96, spacing=spacing)
            scores.append(apply_rope(q, cos, sin) @ apply_rope(k, cos, sin).transpose(1, 2))
        torch.testing.assert_close(scores[0], scores[1], rtol=1e-9, atol=1e-9)
        # positions matter at all: the scores differ from the unrotated ones
        assert (scores[0] - q @ k.transpose(1, 2)).abs().max() > 1e-2


def test_rope_spacings_differ_and_exp_matches_ltx() -> None:
    coords = torch.tensor([[[1.0, 64.0, 96.0]]])
    cos_exp, _ = rope_frequencies(coords, 12, spacing="exp")
    cos_exp2, _ = rope_frequencies(coords, 12, spacing="exp_2")
    # dim 12 -> 2 frequencies per axis: exp uses pi/2 * (1, theta) on 2f - 1, exp_2 pi/2 * (1, theta^-1/2) on f
    grid = torch.tensor([1.0 / 20, 64.0 / 2048, 96.0 / 2048])
    expected_exp = torch.cos(torch.cat([(grid * 2 - 1) * torch.pi / 2, (grid * 2 - 1) * 10000 * torch.pi / 2]))
    expected_exp2 = torch.cos(torch.cat([grid * torch.pi / 2, grid / 100 * torch.pi / 2]))
    torch.testing.assert_close(cos_exp[0, 0], expected_exp.repeat_interleave(2), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(cos_exp2[0, 0], expected_exp2.repeat_interleave(2), rtol=1e-4, atol=1e-4)
    tables = [rope_frequencies(coords, 24, spacing=s)[0] for s in SPACINGS]  # 4 frequencies: the inner ones differ
    for i in range(len(tables)):
        for j in range(i + 1, len(tables)):
            assert (tables[i] - tables[j]).abs().max() > 1e-3, (SPACINGS[i], SPACINGS[j])


def test_old_inverse_exp_name_fails_with_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="exp_2"):
        dit_config("ltx", "tiny", rope_spacing="inverse_exp")


@pytest.mark.parametrize("match", [False, True])
def test_mmdit_trains_one_step_matched_or_not(match: bool) -> None:
    cfg = dit_config("ltx", "tiny", text_conditioning="mmdit", match_params=match)
    model = cfg.build()
    assert model.ffn_hidden == (192 if match else 4 * cfg.hidden)
    g = torch.Generator().manual_seed(0)
    x0 = _latents_for(cfg, generator=g)
    text = torch.randn(2, cfg.max_text_tokens, cfg.caption_channels, generator=g)
    mask = torch.ones(2, cfg.max_text_tokens, dtype=torch.bool)
    loss, _ = flow_matching_loss(model, x0, text, mask, 24.0, flow_config("tiny"), g)
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("conditioning", ["cross_attention", "mmdit"])
def test_equal_per_token_timesteps_match_per_sample(conditioning: str) -> None:
    cfg = dit_config("conventional", "tiny", text_conditioning=conditioning)
    torch.manual_seed(0)
    model = cfg.build().eval()
    x = _latents_for(cfg)
    text = torch.randn(2, cfg.max_text_tokens, cfg.caption_channels)
    mask = torch.ones(2, cfg.max_text_tokens, dtype=torch.bool)
    t = torch.tensor([0.2, 0.8])
    n = model.token_count(tuple(x.shape[2:]))
    with torch.no_grad():
        a = model(x, t, text, mask, 24.0)
        b = model(x, t[:, None].expand(2, n), text, mask, 24.0)
        c = model(x, token_timesteps(torch.zeros(2), t, tuple(x.shape[2:]), cfg.patch), text, mask, 24.0)
    torch.testing.assert_close(a, b)
    assert (a - c).abs().max() > 1e-4  # a clean first row changes the prediction


def test_token_timesteps_layout() -> None:
    tt = token_timesteps(torch.tensor([0.0]), torch.tensor([0.5]), (5, 8, 8), "4x4x2")
    t, h, w = token_grid((5, 8, 8), "4x4x2")
    assert tt.shape == (1, t * h * w)
    assert (tt[0, : h * w] == 0).all() and (tt[0, h * w :] == 0.5).all()


def test_text_padding_is_ignored() -> None:
    """Padded caption tokens do not change the output, whatever their values."""
    for conditioning in ["cross_attention", "mmdit"]:
        cfg = dit_config("ltx", "tiny", text_conditioning=conditioning)
        model = cfg.build().eval()
        x = _latents_for(cfg, batch=1)
        text = torch.randn(1, cfg.max_text_tokens, cfg.caption_channels)
        mask = torch.zeros(1, cfg.max_text_tokens, dtype=torch.bool)
        mask[:, :4] = True
        other = text.clone()
        other[:, 4:] = torch.randn_like(other[:, 4:]) * 10
        with torch.no_grad():
            torch.testing.assert_close(model(x, torch.tensor([0.5]), text, mask, 24.0), model(x, torch.tensor([0.5]), other, mask, 24.0))


def test_gradient_checkpointing_matches() -> None:
    cfg, model, x, text, mask = _tiny_inputs(1, train=True)
    plain = model(x, torch.tensor([0.3]), text, mask, 24.0).square().mean()
    grads = torch.autograd.grad(plain, list(model.parameters()))
    model.gradient_checkpointing = True
    ckpt = model(x, torch.tensor([0.3]), text, mask, 24.0).square().mean()
    grads2 = torch.autograd.grad(ckpt, list(model.parameters()))
    for a, b in zip(grads, grads2):
        torch.testing.assert_close(a, b)
    assert dataclasses.is_dataclass(cfg)


def test_reuse_conditioning_is_exact_and_follows_the_captions() -> None:
    """Inside reuse_conditioning, equal captions reuse the caption projection and cross-attention K/V (same outputs
    as plain forwards, bit for bit); captions that differ by value, even in the same tensor, are recomputed."""
    cfg = dit_config("ltx", "tiny")
    torch.manual_seed(0)
    model = cfg.build().eval()
    x = _latents_for(cfg, batch=2)
    text, other = torch.randn(2, 2, cfg.max_text_tokens, cfg.caption_channels).unbind(0)
    mask = torch.ones(2, cfg.max_text_tokens, dtype=torch.bool)
    mask[1, 5:] = False
    projections = []
    model.caption_projection.register_forward_hook(lambda *_: projections.append(1))
    t1, t2 = torch.tensor([0.9, 0.9]), torch.tensor([0.4, 0.4])
    with torch.no_grad():
        plain = [model(x, t, c, mask, 24.0) for t, c in [(t1, text), (t2, text), (t2, other)]]
        projections.clear()
        with model.reuse_conditioning():
            cached = [model(x, t1, text, mask, 24.0), model(x, t2, text.clone(), mask, 24.0), model(x, t2, other, mask, 24.0)]
            assert len(projections) == 2  # the second forward reused the first's caption work
            text += 1.0  # the same tensor, new values: recomputed
            changed = model(x, t1, text, mask, 24.0)
            assert len(projections) == 3 and len(model._cache.rope) == 1  # one token grid, rotations kept
        fresh = model(x, t1, text, mask, 24.0)
    for a, b in zip(plain, cached):
        assert torch.equal(a, b)
    assert torch.equal(changed, fresh) and model._cache is None


def test_reuse_conditioning_precomputes_the_step_times_in_one_call() -> None:
    """Times passed to reuse_conditioning are embedded once, together: a forward at one of them skips the time
    MLP and matches a plain forward to rounding; other times, per-token times and autograd embed as usual."""
    _, model, x, text, mask = _tiny_inputs(2)
    calls = []
    model.time_mlp.register_forward_hook(lambda _m, inp, _o: calls.append(inp[0].shape[0]))
    times = torch.tensor([1.0, 0.7, 0.3])
    per_token = torch.full((2, model.token_count(tuple(x.shape[2:]))), 0.7)
    with torch.no_grad():
        plain = [model(x, t, text, mask, 24.0) for t in (times[1].expand(2), torch.tensor([0.5, 0.5]), per_token)]
        calls.clear()
        with model.reuse_conditioning(times):
            assert calls == [3]  # the three step times, in one call
            cached = model(x, times[1].expand(2), text, mask, 24.0)
            assert calls == [3]
            other, token = model(x, torch.tensor([0.5, 0.5]), text, mask, 24.0), model(x, per_token, text, mask, 24.0)
            assert calls == [3, 2, 2 * per_token.shape[1]]
    torch.testing.assert_close(cached, plain[0], rtol=0, atol=1e-5)
    assert torch.equal(other, plain[1]) and torch.equal(token, plain[2])
    with model.reuse_conditioning(times):  # autograd: nothing precomputed, gradients flow
        assert model._cache.times is None
        model(x, times[1].expand(2), text, mask, 24.0).square().mean().backward()
    assert model.time_modulation.weight.grad is not None


def test_a_guidance_batch_runs_the_first_self_attention_once() -> None:
    """Inside reuse_conditioning, a batch whose halves are the same latents at the same times (CFG) embeds them and
    runs block 0's self-attention on one half; outputs match plain forwards. Halves that differ run in full."""
    cfg, model, x, text, mask = _tiny_inputs(1, text_batch=2)
    rows = []
    model.blocks[0].self_attn.to_qkv.register_forward_hook(lambda _m, inp, _o: rows.append(inp[0].shape[0]))
    pair, t = torch.cat([x, x]), torch.tensor([0.6, 0.6])
    other = torch.cat([x, x + 1])
    with torch.no_grad():
        plain = [model(pair, t, text, mask, 24.0), model(other, t, text, mask, 24.0)]
        rows.clear()
        with model.reuse_conditioning():
            shared, full = model(pair, t, text, mask, 24.0), model(other, t, text, mask, 24.0)
    assert rows == [1, 2]
    torch.testing.assert_close(shared, plain[0], rtol=0, atol=1e-5)
    assert torch.equal(full, plain[1])
