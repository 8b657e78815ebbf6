"""Run-config pairing: the DiT follows the VAE it is trained on (channels, compression, patch),
and the text-conditioning recipe's scale is one the oracle can read."""

from __future__ import annotations

import dataclasses

import pytest

from ablations.configs import check_buildable, default_run_config, sync_pairing
from ablations.graph import expand_variants
from ablations.overrides import set_field
from ablations.recipes import RECIPES
from ablations.recipes.common import ALIGNMENT_SHIFT_TOKENS, ALIGNMENT_VAE, alignment_run_config
from models.dit.describe import latent_shape_for
from models.dit.patch import token_grid
from models.flow import token_shift
from models.vae import vae_config


def _tokens(cfg) -> int:
    """Tokens of one clip of cfg.dit_data through cfg.dit's compression and patch."""
    spec = cfg.dit_data
    t, h, w = token_grid(latent_shape_for(cfg.dit, spec.frames, spec.height, spec.width), cfg.dit.patch)
    return t * h * w


def test_swapping_the_vae_kind_keeps_tokens_equal():
    ltx = sync_pairing(default_run_config("ltx", "tiny"))
    conventional = sync_pairing(set_field(ltx, "vae.kind", "conventional"))
    assert (conventional.dit.in_channels, conventional.dit.patch) == (conventional.vae.latent_channels, "4x4x2")
    assert (conventional.dit.vae_spatial_compression, conventional.dit.vae_temporal_compression) == (8, 4)
    assert (ltx.dit.patch, ltx.dit.vae_spatial_compression, ltx.dit.vae_temporal_compression) == ("1x1x1", 32, 8)
    assert _tokens(ltx) == _tokens(conventional)


def test_dit_takes_compression_from_the_vae_strides_not_the_preset():
    cfg = default_run_config("ltx", "tiny")
    custom = dataclasses.replace(cfg, vae=vae_config("ltx", "tiny", **ALIGNMENT_VAE))
    paired = sync_pairing(custom)
    assert (paired.dit.vae_spatial_compression, paired.dit.vae_temporal_compression) == (4, 2)
    assert paired.dit.in_channels == 16


def test_a_recipes_own_patch_is_kept_while_the_vae_matches():
    cfg = alignment_run_config()
    assert sync_pairing(cfg) == cfg
    assert cfg.dit.patch == "2x2x1"


def test_alignment_scale_is_anchored_where_the_flow_shift_starts():
    cfg = alignment_run_config()
    tokens = _tokens(cfg)
    assert tokens == ALIGNMENT_SHIFT_TOKENS[0] == 80
    assert token_shift(tokens, cfg.flow) == pytest.approx(cfg.flow.shift_min)
    # the tiny preset's anchors (1:192 latents) would put this token count far past LTX's top shift
    assert token_shift(tokens, default_run_config().flow) > cfg.flow.shift_max


def test_text_conditioning_recipe_variants_all_build():
    sweep = RECIPES.get("text-conditioning")()
    variants = expand_variants(sweep.base, sweep.axes, sweep.seeds, sweep.variants)
    assert len(variants) == 6  # cross-attention, MM-DiT as is, MM-DiT matched in parameters; x qk-norm
    seen = set()
    for variant in variants:
        cfg = sync_pairing(variant.config)
        check_buildable(cfg, {"train_vae", "encode_latents", "train_dit", "sample", "eval_gen", "cost"})
        seen.add((cfg.dit.text_conditioning, cfg.dit.match_params, cfg.dit.qk_norm))
        assert cfg.vae.latent_channels == cfg.dit.in_channels == 16
    arms = {("cross_attention", False), ("mmdit", False), ("mmdit", True)}
    assert seen == {(c, m, q) for c, m in arms for q in ("none", "rms_across_heads")}


def test_default_decoder_trains_for_the_noisy_decode_it_gets():
    """The default timestep-conditioned decoder trains with the diffusion objective, so sampling's
    t = 0.05 + noise decode is a state it trained for; the config check passes."""
    cfg = default_run_config("ltx", "tiny")
    assert cfg.vae.decoder_timestep_conditioning and cfg.loss.diffusion > 0
    assert 0 < cfg.flow.decode_timestep <= cfg.loss.diffusion_max_t
    check_buildable(cfg, {"train_vae", "sample", "eval_gen"})


def test_noisy_decode_of_a_decoder_trained_without_diffusion_is_refused():
    from models.config import ConfigError

    cfg = set_field(default_run_config("ltx", "tiny"), "loss.diffusion", 0.0)
    with pytest.raises(ConfigError, match=r"trained without the diffusion objective \(loss.diffusion=0\).*"
                                          r"flow.decode_timestep=0.05.*set loss.diffusion > 0"):
        check_buildable(cfg, {"train_vae", "sample", "eval_gen"})
    check_buildable(cfg, {"train_vae", "eval_recon"})  # no sampling: nothing is decoded noisy
    clean = set_field(set_field(cfg, "flow.decode_timestep", 0.0), "flow.decode_noise_scale", 0.0)
    check_buildable(clean, {"train_vae", "sample", "eval_gen"})  # decode at t = 0 without noise: consistent
    unconditioned = set_field(cfg, "vae.decoder_timestep_conditioning", False)
    check_buildable(unconditioned, {"train_vae", "sample", "eval_gen"})  # decoded clean whatever flow says
    beyond = set_field(default_run_config("ltx", "tiny"), "flow.decode_timestep", 0.5)
    with pytest.raises(ConfigError, match="beyond the timesteps the decoder trains on"):
        check_buildable(beyond, {"sample"})


def test_decode_noise_space_is_a_choice():
    from models.config import ConfigError

    cfg = default_run_config("ltx", "tiny")
    assert cfg.flow.decode_noise_space == "raw"
    assert set_field(cfg, "flow.decode_noise_space", "normalized").flow.decode_noise_space == "normalized"
    with pytest.raises(ConfigError, match="decode_noise_space must be one of 'raw', 'normalized'"):
        set_field(cfg, "flow.decode_noise_space", "latent")


@pytest.mark.parametrize("size", ["tiny", "small", "full"])
def test_captions_are_padded_to_what_the_dit_takes(size):
    """A full-size sweep pads T5 captions to LTX-Video's 128 tokens, not the tiny preset's 16."""
    cfg = default_run_config("ltx", size)
    assert cfg.text.max_length == cfg.dit.max_text_tokens == {"tiny": 16, "small": 32, "full": 128}[size]
