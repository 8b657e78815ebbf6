"""Official-weights loading (`vae.init`, `dit.init`, models/weights.py) on tiny checkpoints.

Checkpoints are written from diffusers' own classes at tiny widths, in both real key
layouts: diffusers' folder (`save_pretrained` into `vae/` and `transformer/`) and the
original single file (VAE under `vae.`, transformer under `model.diffusion_model.`, with
the original key names). The single file's names are made by inverting the rename tables
of diffusers' `scripts/convert_ltx_to_diffusers.py` (copied below), and the test checks
that the script's own forward renaming turns them back into diffusers' names, so the file
is what that script would convert. Loaded models must give the diffusers models' outputs.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from models import weights
from models.vae import vae_config
from models.vae.convert import to_diffusers_config
from tests._dit_util import tiny_diffusers_ltx

diffusers = pytest.importorskip("diffusers")
from safetensors.torch import load_file, save_file  # noqa: E402  (after the skip: a diffusers dependency)

ATOL, RTOL = 1e-5, 1e-5

# ---- diffusers' scripts/convert_ltx_to_diffusers.py, verbatim (the facts the layout test rests on)
TRANSFORMER_KEYS_RENAME_DICT = {"patchify_proj": "proj_in", "adaln_single": "time_embed", "q_norm": "norm_q",
                                "k_norm": "norm_k"}
VAE_KEYS_RENAME_DICT = {
    "up_blocks.0": "mid_block", "up_blocks.1": "up_blocks.0", "up_blocks.2": "up_blocks.1.upsamplers.0",
    "up_blocks.3": "up_blocks.1", "up_blocks.4": "up_blocks.2.conv_in", "up_blocks.5": "up_blocks.2.upsamplers.0",
    "up_blocks.6": "up_blocks.2", "up_blocks.7": "up_blocks.3.conv_in", "up_blocks.8": "up_blocks.3.upsamplers.0",
    "up_blocks.9": "up_blocks.3",
    "down_blocks.0": "down_blocks.0", "down_blocks.1": "down_blocks.0.downsamplers.0",
    "down_blocks.2": "down_blocks.0.conv_out", "down_blocks.3": "down_blocks.1",
    "down_blocks.4": "down_blocks.1.downsamplers.0", "down_blocks.5": "down_blocks.1.conv_out",
    "down_blocks.6": "down_blocks.2", "down_blocks.7": "down_blocks.2.downsamplers.0", "down_blocks.8": "down_blocks.3",
    "down_blocks.9": "mid_block",
    "conv_shortcut": "conv_shortcut.conv", "res_blocks": "resnets", "norm3.norm": "norm3",
    "per_channel_statistics.mean-of-means": "latents_mean", "per_channel_statistics.std-of-means": "latents_std",
}
VAE_091_RENAME_DICT = {
    "up_blocks.0": "mid_block", "up_blocks.1": "up_blocks.0.upsamplers.0", "up_blocks.2": "up_blocks.0",
    "up_blocks.3": "up_blocks.1.upsamplers.0", "up_blocks.4": "up_blocks.1", "up_blocks.5": "up_blocks.2.upsamplers.0",
    "up_blocks.6": "up_blocks.2", "up_blocks.7": "up_blocks.3.upsamplers.0", "up_blocks.8": "up_blocks.3",
    "last_time_embedder": "time_embedder", "last_scale_shift_table": "scale_shift_table",
}
VAE_SPECIAL_REMOVED = ("per_channel_statistics.channel", "per_channel_statistics.mean-of-means",
                       "per_channel_statistics.mean-of-stds", "model.diffusion_model")


def script_vae_rename(key: str) -> str | None:
    """convert_vae's renaming for 0.9.1 (`VAE_KEYS_RENAME_DICT.update(VAE_091_RENAME_DICT)`); None = removed."""
    table = dict(VAE_KEYS_RENAME_DICT)
    table.update(VAE_091_RENAME_DICT)
    key = key[len("vae."):] if key.startswith("vae.") else key
    for old, new in table.items():
        key = key.replace(old, new)
    return None if any(s in key for s in VAE_SPECIAL_REMOVED) else key


def script_transformer_rename(key: str) -> str:
    key = key[len("model.diffusion_model."):] if key.startswith("model.diffusion_model.") else key
    for old, new in TRANSFORMER_KEYS_RENAME_DICT.items():
        key = key.replace(old, new)
    return key


def original_vae_key(key: str) -> str:
    """diffusers VAE key -> the original file's name: the 0.9.1 tables read backwards."""
    section, rest = key.split(".", 1) if key.startswith(("encoder.", "decoder.")) else ("", key)
    table = dict(VAE_KEYS_RENAME_DICT)
    table.update(VAE_091_RENAME_DICT)
    kind = "down_blocks" if section == "encoder" else "up_blocks"
    blocks = {new: old for old, new in table.items() if old.startswith(kind) and old != "up_blocks.9"}
    for new in sorted(blocks, key=len, reverse=True):  # the longest diffusers prefix wins
        if rest == new or rest.startswith(new + "."):
            rest = blocks[new] + rest[len(new):]
            break
    rest = rest.replace("resnets", "res_blocks").replace("conv_shortcut.conv", "conv_shortcut")
    rest = rest.replace("norm3.", "norm3.norm.")
    if section == "decoder" and rest.startswith(("time_embedder.", "scale_shift_table")):
        rest = "last_" + rest
    rest = {"latents_mean": "per_channel_statistics.mean-of-means",
            "latents_std": "per_channel_statistics.std-of-means"}.get(rest, rest)
    return f"{section}.{rest}" if section else rest


def original_transformer_key(key: str) -> str:
    for old, new in TRANSFORMER_KEYS_RENAME_DICT.items():
        key = key.replace(new, old)
    return key


# ---- tiny diffusers models and the checkpoints written from them

def tiny_diffusers_vae() -> tuple[Any, Any]:
    """Our tiny ltx VAE config and diffusers' model of it with random weights (noise and stats too)."""
    cfg = vae_config("ltx", "tiny")
    torch.manual_seed(0)
    theirs = diffusers.AutoencoderKLLTXVideo(**to_diffusers_config(cfg)).eval()
    with torch.no_grad():
        for name, param in theirs.named_parameters():
            if "per_channel_scale" in name:
                param.copy_(torch.randn_like(param) * 0.5)
        theirs.latents_mean.copy_(torch.randn(128))
        theirs.latents_std.copy_(torch.rand(128) + 0.5)
    return cfg, theirs


def dit_cfg_for(model: Any) -> Any:
    from models.dit.convert import config_from_diffusers

    return config_from_diffusers(model.config)


def original_header(dit: Any) -> dict[str, Any]:
    """The `config` JSON of ltx-video-2b-v0.9.1.safetensors' header (what LTX-Video's from_pretrained builds
    from), at the tiny VAE's and `dit`'s sizes: blocks listed pixel side first, the mid-block last."""
    res = lambda noise: ["res_x", {"num_layers": 1, "inject_noise": noise}]  # noqa: E731
    up = ["compress_all", {"residual": True, "multiplier": 2}]
    vae = {"_class_name": "CausalVideoAutoencoder", "dims": 3, "in_channels": 3, "out_channels": 3, "latent_channels": 128,
           "encoder_blocks": [["res_x", {"num_layers": 1}], ["compress_all", {}], ["res_x_y", 1]] * 2
           + [["res_x", {"num_layers": 1}], ["compress_all", {}], ["res_x", {"num_layers": 1}], ["res_x", {"num_layers": 1}]],
           "decoder_blocks": [res(True), up, res(True), up, res(True), up, res(False)], "scaling_factor": 1.0,
           "norm_layer": "pixel_norm", "patch_size": 4, "latent_log_var": "uniform", "use_quant_conv": False,
           "causal_decoder": False, "timestep_conditioning": True}
    c = dit.config
    transformer = {"_class_name": "Transformer3DModel", "activation_fn": "gelu-approximate", "attention_bias": True,
                   "attention_head_dim": c.attention_head_dim, "num_attention_heads": c.num_attention_heads,
                   "cross_attention_dim": c.cross_attention_dim, "in_channels": c.in_channels, "out_channels": c.in_channels,
                   "num_layers": c.num_layers, "caption_channels": c.caption_channels, "norm_eps": 1e-6,
                   "norm_elementwise_affine": False, "adaptive_norm": "single_scale_shift", "standardization_norm": "rms_norm",
                   "qk_norm": "rms_norm", "positional_embedding_type": "rope", "positional_embedding_theta": 10000.0,
                   "positional_embedding_max_pos": [20, 2048, 2048], "timestep_scale_multiplier": 1000,
                   "project_to_2d_pos": True}
    return {"vae": vae, "transformer": transformer}


def write_single_file(path: Path, vae: Any, dit: Any, *, drop: tuple[str, ...] = (), extra: dict | None = None,
                      header: dict | None = None) -> Path:
    """ltx-video-2b-v0.9.1.safetensors' layout: both models in one file, original names, prefixed;
    `header`: the `config` JSON its metadata carries (`original_header`), or none."""
    state: dict[str, torch.Tensor] = {}
    for key, value in vae.state_dict().items():
        state["vae." + original_vae_key(key)] = value.contiguous()
    channels = vae.config.latent_channels
    state["vae.per_channel_statistics.channel"] = torch.arange(channels).float()  # dropped on load, as diffusers does
    state["vae.per_channel_statistics.mean-of-stds"] = torch.rand(channels)
    state["vae.per_channel_statistics.mean-of-stds_over_std-of-means"] = torch.rand(channels)
    for key, value in dit.state_dict().items():
        state["model.diffusion_model." + original_transformer_key(key)] = value.contiguous()
    for key in drop:
        del state[key]
    state.update(extra or {})
    save_file(state, str(path), metadata={"format": "pt", **({"config": json.dumps(header)} if header else {})})
    return path


@pytest.fixture(scope="module")
def models() -> dict[str, Any]:
    cfg, vae = tiny_diffusers_vae()
    dit = tiny_diffusers_ltx(seed=2)
    return {"vae_cfg": cfg, "vae": vae, "dit": dit, "dit_cfg": dit_cfg_for(dit)}


@pytest.fixture(scope="module")
def checkpoints(models, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ckpt")
    folder = root / "LTX-Video-tiny"
    models["vae"].save_pretrained(folder / "vae", safe_serialization=True)
    models["dit"].save_pretrained(folder / "transformer", safe_serialization=True)
    single = write_single_file(root / "ltx-video-tiny.safetensors", models["vae"], models["dit"])
    return {"folder": folder, "single": single, "root": root}


def test_single_file_uses_the_original_names_the_conversion_script_reads(models, checkpoints) -> None:
    stored = load_file(str(checkpoints["single"]))
    assert any(k.startswith("vae.decoder.up_blocks.6.res_blocks.") for k in stored)
    assert "vae.decoder.last_scale_shift_table" in stored and "model.diffusion_model.patchify_proj.weight" in stored
    vae_keys = {script_vae_rename(k) for k in stored if k.startswith("vae.")} - {None}
    assert vae_keys == set(models["vae"].state_dict())
    dit_keys = {script_transformer_rename(k) for k in stored if k.startswith("model.diffusion_model.")}
    assert dit_keys == set(models["dit"].state_dict())


# ---- outputs equal the diffusers models holding the same weights

def _vae_outputs_match(ours: Any, theirs: Any) -> float:
    video = torch.rand(2, 3, 17, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    timestep = torch.tensor([0.05, 0.5])
    ours.eval()
    with torch.no_grad():
        expected_mean = theirs.encode(video).latent_dist.mean
        mean, _ = ours.encode(video)
        torch.manual_seed(7)  # diffusers draws injected noise from the global RNG
        expected = theirs.decode(expected_mean, timestep).sample
        torch.manual_seed(7)
        got = ours.decode(mean, timestep)
    torch.testing.assert_close(mean, expected_mean, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(ours.latents_std, theirs.latents_std)
    return float((got - expected).abs().max())


def _dit_forward(model: Any, latents, timestep, text, mask, fps: float, vae_t: int = 8, vae_s: int = 32):
    """diffusers' transformer on (B, C, T, H, W) latents, as its pipeline calls it (tests/test_dit_parity.py)."""
    b, c, t, h, w = latents.shape
    out = model(hidden_states=latents.flatten(2).transpose(1, 2), encoder_hidden_states=text,
                timestep=timestep * 1000.0, encoder_attention_mask=mask.long(), num_frames=t, height=h, width=w,
                rope_interpolation_scale=(vae_t / fps, vae_s, vae_s), return_dict=False)[0]
    return out.transpose(1, 2).reshape(b, c, t, h, w)


def _dit_outputs_match(ours: Any, theirs: Any) -> float:
    g = torch.Generator().manual_seed(3)
    latents, text = torch.randn(2, 8, 3, 4, 6, generator=g), torch.randn(2, 7, 24, generator=g)
    mask = torch.tensor([[1] * 5 + [0] * 2, [1] * 7], dtype=torch.bool)
    timestep = torch.tensor([0.3, 0.9])
    ours.eval()
    with torch.no_grad():
        expected = _dit_forward(theirs, latents, timestep, text, mask, 24.0)
        got = ours(latents, timestep, text, mask, 24.0)
    torch.testing.assert_close(got, expected)
    return float((got - expected).abs().max())


@pytest.mark.parametrize("layout", ["folder", "single"])
def test_vae_init_loads_both_layouts(models, checkpoints, layout) -> None:
    cfg = dataclasses.replace(models["vae_cfg"], init=str(checkpoints[layout]))
    ours, report = weights.load_vae(cfg)
    assert report.key_layout == ("diffusers" if layout == "folder" else "original")
    assert report.container == ("diffusers_folder" if layout == "folder" else "single_file")
    assert report.params == sum(p.numel() for p in models["vae"].parameters())
    assert report.ignored == (0 if layout == "folder" else len(models["dit"].state_dict()))
    error = _vae_outputs_match(ours, models["vae"])
    print(f"vae {layout}: max abs error {error:.2e}")


@pytest.mark.parametrize("layout", ["folder", "single"])
def test_dit_init_loads_both_layouts(models, checkpoints, layout) -> None:
    cfg = dataclasses.replace(models["dit_cfg"], init=str(checkpoints[layout]))
    ours, report = weights.load_dit(cfg)
    assert report.key_layout == ("diffusers" if layout == "folder" else "original")
    assert report.params == sum(p.numel() for p in models["dit"].parameters())
    error = _dit_outputs_match(ours, models["dit"])
    print(f"dit {layout}: max abs error {error:.2e}")


def test_loading_assigns_the_files_tensors_without_a_second_copy(models, checkpoints, tmp_path) -> None:
    """Built on the meta device and assigned: the file's bf16 stays bf16 with dtype=None."""
    half = tmp_path / "bf16.safetensors"
    save_file({k: v.to(torch.bfloat16) for k, v in load_file(str(checkpoints["single"])).items()}, str(half))
    cfg = dataclasses.replace(models["vae_cfg"], init=str(half))
    kept, report = weights.load_vae(cfg, dtype=None)
    assert {p.dtype for p in kept.parameters()} == {torch.bfloat16} and report.dtypes == ("BF16",)
    cast, report = weights.load_vae(cfg)
    assert {p.dtype for p in cast.parameters()} == {torch.float32} and report.loaded_dtype == "torch.float32"
    assert not any(p.is_meta for p in cast.parameters())
    same, _ = weights.load_vae(dataclasses.replace(cfg, init=str(checkpoints["single"])))  # fp32 file: views of its map
    before = load_file(str(checkpoints["single"]))["vae.encoder.conv_in.conv.weight"].clone()
    with torch.no_grad():
        same.encoder.conv_in.weight.add_(1.0)  # training writes parameters in place: copy-on-write, not the file
    torch.testing.assert_close(load_file(str(checkpoints["single"]))["vae.encoder.conv_in.conv.weight"], before)


# ---- a wrong file gets one sentence

def _one_sentence(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and text.endswith(".") and "Traceback" not in text
    return text


def test_absent_path_names_the_file_it_needs(models, tmp_path) -> None:
    cfg = dataclasses.replace(models["vae_cfg"], init=str(tmp_path / "ltx-video-2b-v0.9.1.safetensors"))
    with pytest.raises(weights.WeightsError) as exc:
        weights.load_vae(cfg)
    text = _one_sentence(exc)
    assert "vae.init=" in text and "nothing exists" in text and "vae/diffusion_pytorch_model.safetensors" in text
    (tmp_path / "empty").mkdir()
    with pytest.raises(weights.WeightsError, match="transformer/diffusion_pytorch_model.safetensors"):
        weights.load_dit(dataclasses.replace(models["dit_cfg"], init=str(tmp_path / "empty")))


def test_not_safetensors_is_one_sentence(models, tmp_path) -> None:
    bad = tmp_path / "ltx.ckpt"
    torch.save({"vae.encoder.conv_in.conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(weights.WeightsError) as exc:
        weights.load_vae(dataclasses.replace(models["vae_cfg"], init=str(bad)))
    assert "is not a safetensors file" in _one_sentence(exc)


def test_missing_keys_are_named_with_a_count(models, tmp_path) -> None:
    drop = ("vae.decoder.up_blocks.2.res_blocks.0.conv1.conv.weight", "vae.decoder.up_blocks.2.res_blocks.0.conv1.conv.bias",
            "vae.encoder.conv_in.conv.weight")
    path = write_single_file(tmp_path / "missing.safetensors", models["vae"], models["dit"], drop=drop)
    with pytest.raises(weights.WeightsError) as exc:
        weights.load_vae(dataclasses.replace(models["vae_cfg"], init=str(path)))
    text = _one_sentence(exc)
    assert "lacks tensors" in text and "(3 in all)" in text and "decoder.stages.0.resnets.0.conv1.bias" in text
    path = write_single_file(tmp_path / "dit_missing.safetensors", models["vae"], models["dit"],
                             drop=("model.diffusion_model.transformer_blocks.1.attn1.to_k.weight",))
    with pytest.raises(weights.WeightsError, match=r"lacks tensors .*blocks.1.self_attn.to_qkv.weight \(1 in all\)"):
        weights.load_dit(dataclasses.replace(models["dit_cfg"], init=str(path)))


def test_extra_keys_are_named_with_a_count(models, tmp_path) -> None:
    extra = {"vae.decoder.up_blocks.9.res_blocks.0.conv1.conv.weight": torch.zeros(2),
             "vae.encoder.extra_head.weight": torch.zeros(2)}
    path = write_single_file(tmp_path / "extra.safetensors", models["vae"], models["dit"], extra=extra)
    with pytest.raises(weights.WeightsError) as exc:
        weights.load_vae(dataclasses.replace(models["vae_cfg"], init=str(path)))
    text = _one_sentence(exc)
    assert "no place in our ltx VAE" in text and "(2 in all)" in text
    assert "decoder.up_blocks.9.res_blocks.0.conv1.conv.weight" in text  # the checkpoint's own name
    path = write_single_file(tmp_path / "dit_extra.safetensors", models["vae"], models["dit"],
                             extra={"model.diffusion_model.transformer_blocks.0.attn1.rotary.weight": torch.zeros(2)})
    with pytest.raises(weights.WeightsError, match=r"transformer_blocks.0.attn1.rotary.weight \(1 in all\)"):
        weights.load_dit(dataclasses.replace(models["dit_cfg"], init=str(path)))


def test_mis_shaped_q_k_v_are_named_before_they_are_fused(models, tmp_path) -> None:
    prefix = "model.diffusion_model.transformer_blocks.0."
    k = models["dit"].state_dict()["transformer_blocks.0.attn1.to_k.weight"]
    v = models["dit"].state_dict()["transformer_blocks.0.attn2.to_v.bias"]
    extra = {prefix + "attn1.to_k.weight": torch.zeros(k.shape[0], k.shape[1] + 3)}  # torch.cat's dim 1 would fail
    path = write_single_file(tmp_path / "qkv.safetensors", models["vae"], models["dit"], extra=extra)
    with pytest.raises(weights.WeightsError) as exc:
        weights.check(dataclasses.replace(models["dit_cfg"], init=str(path)), "dit")
    text = _one_sentence(exc)
    assert f"transformer_blocks.0.attn1.to_k.weight [{k.shape[0]}, {k.shape[1] + 3}] vs [{k.shape[0]}, {k.shape[1]}]" in text
    assert "to_q" not in text and "(1 in all)" in text  # only the odd part is named
    extra = {prefix + "attn2.to_v.bias": torch.zeros(v.shape[0] + 1)}  # torch.cat would succeed: one row too many
    path = write_single_file(tmp_path / "kv.safetensors", models["vae"], models["dit"], extra=extra)
    with pytest.raises(weights.WeightsError, match=rf"attn2.to_v.bias \[{v.shape[0] + 1}\] vs \[{v.shape[0]}\] \(1 in all\)"):
        weights.load_dit(dataclasses.replace(models["dit_cfg"], init=str(path)))


def test_a_config_that_differs_is_named_field_by_field(models, checkpoints) -> None:
    wider = dataclasses.replace(models["vae_cfg"], decoder_layers=(2, 1, 1, 1), init=str(checkpoints["folder"]))
    with pytest.raises(weights.WeightsError) as exc:
        weights.load_vae(wider)
    assert "decoder_layers=[1, 1, 1, 1] (not [2, 1, 1, 1])" in _one_sentence(exc)
    single = dataclasses.replace(wider, init=str(checkpoints["single"]))  # no config.json: the shapes tell
    with pytest.raises(weights.WeightsError, match="lacks tensors"):
        weights.load_vae(single)
    deeper = dataclasses.replace(models["dit_cfg"], num_layers=3, init=str(checkpoints["folder"]))
    with pytest.raises(weights.WeightsError, match=r"num_layers=2 \(not 3\)"):
        weights.load_dit(deeper)
    mmdit = dataclasses.replace(models["dit_cfg"], text_conditioning="mmdit", init=str(checkpoints["folder"]))
    with pytest.raises(weights.WeightsError, match="cross-attention transformer"):
        weights.load_dit(mmdit)


def test_a_single_files_header_config_is_compared_field_by_field(models, tmp_path) -> None:
    header = original_header(models["dit"])
    path = write_single_file(tmp_path / "header.safetensors", models["vae"], models["dit"], header=header)
    vae_cfg = dataclasses.replace(models["vae_cfg"], init=str(path))
    dit_cfg = dataclasses.replace(models["dit_cfg"], init=str(path))
    weights.check(vae_cfg, "vae")  # the header describes these configs
    weights.check(dit_cfg, "dit")
    for change, said in (({"decoder_upsample_residual": False}, "decoder_upsample_residual=True (not False)"),
                         ({"decoder_causal": True}, "decoder_causal=False (not True)")):  # no tensor shape changes
        with pytest.raises(weights.WeightsError) as exc:
            weights.check(dataclasses.replace(vae_cfg, **change), "vae")
        assert said in _one_sentence(exc) and "its header config states them" in str(exc.value)
    with pytest.raises(weights.WeightsError, match=r"timestep_scale=1000.0 \(not 1.0\), rope_max_positions=\[20.0, 2048.0"):
        weights.check(dataclasses.replace(dit_cfg, timestep_scale=1.0, rope_max_positions=(1.0, 1.0, 1.0)), "dit")
    header["transformer"]["causal_temporal_positioning"] = True  # LTX-Video 0.9.5 and later
    path = write_single_file(tmp_path / "causal.safetensors", models["vae"], models["dit"], header=header)
    with pytest.raises(weights.WeightsError) as exc:
        weights.check(dataclasses.replace(dit_cfg, init=str(path)), "dit")
    assert "causal_temporal_positioning=true" in _one_sentence(exc) and "cannot express" in str(exc.value)


def test_our_artifacts_header_config_is_compared_field_by_field(models, tmp_path) -> None:
    from ablations.artifacts import FORMATS
    from models import tensor_file
    from models.config import to_dict

    cfg = dataclasses.replace(models["dit_cfg"], rope_spacing="linear")
    path = tmp_path / "dit.safetensors"
    tensor_file.save(path, cfg.build().state_dict(), {"format": FORMATS["dit"], "kind": cfg.kind, "config": to_dict(cfg)})
    weights.check(dataclasses.replace(cfg, init=str(tmp_path), max_text_tokens=7), "dit")  # a label, not the weights
    with pytest.raises(weights.WeightsError) as exc:
        weights.check(dataclasses.replace(models["dit_cfg"], init=str(tmp_path)), "dit")  # the same shapes
    text = _one_sentence(exc)
    assert "holds a trained ltx_dit DiT with rope_spacing=linear (not exp)" in text and "ltxlab inspect dit" in text


def test_a_file_without_this_component(models, tmp_path) -> None:
    only_dit = tmp_path / "dit_only.safetensors"
    save_file({"model.diffusion_model." + k: v.contiguous() for k, v in models["dit"].state_dict().items()}, str(only_dit))
    with pytest.raises(weights.WeightsError, match="holds no LTX VAE weights \\(no key starts with 'vae.'\\)"):
        weights.load_vae(dataclasses.replace(models["vae_cfg"], init=str(only_dit)))


def test_the_config_check_refuses_a_bad_init_before_launch(models, tmp_path) -> None:
    from ablations.configs import check_buildable, default_run_config
    from ablations.overrides import apply_overrides

    cfg = apply_overrides(default_run_config("ltx", "tiny"), [f"vae.init={tmp_path / 'nope.safetensors'}"])
    with pytest.raises(weights.WeightsError, match="nothing exists at that path"):
        check_buildable(cfg, {"train_vae", "eval_recon"})
    check_buildable(cfg, {"cost"})  # a stage that does not train the VAE does not read the checkpoint


# ---- fine-tuning starts from the loaded weights

def test_train_vae_fine_tunes_from_the_checkpoint(models, checkpoints, tmp_path, capsys) -> None:
    from ablations.cli import main
    from ablations.stages.train_vae import build_vae_model

    common = ["--batch-size", "2", "--resolution", "32x32", "--frames", "9", "--clips-per-video", "1"]
    init = f"vae.init={checkpoints['single']}"
    assert main(["train-vae", "--steps", "3", "--out", str(tmp_path / "tuned"), "--set", init, *common]) == 0
    assert "starting from" in capsys.readouterr().out
    init_cfg = dataclasses.replace(models["vae_cfg"], init=str(checkpoints["single"]))
    start, _ = build_vae_model(init_cfg, torch.device("cpu"))  # what training starts from (steps=0 is refused now)
    reference = {k: v for k, v in start.state_dict().items() if not k.startswith("latents_")}
    expected = weights.load_vae(init_cfg)[0].state_dict()
    for key, value in reference.items():  # before any step: exactly the checkpoint's weights
        assert torch.equal(value, expected[key]), key
    from ablations import artifacts

    tuned, blob = artifacts.load(tmp_path / "tuned", "vae")
    assert blob["init"]["key_layout"] == "original" and blob["config"]["init"] == str(checkpoints["single"])
    assert blob["latent_stats"] == "checkpoint" and blob["train"]["latent_stats"] == "auto"
    for key in ("latents_mean", "latents_std"):  # the official DiT was trained on latents normalised by these
        assert torch.equal(tuned[key], expected[key]) and torch.equal(tuned[key], getattr(models["vae"], key)), key
    moved = sum(float((tuned[k] - v).pow(2).sum()) for k, v in reference.items()) ** 0.5
    fresh = vae_config("ltx", "tiny").build().state_dict()
    apart = sum(float((fresh[k] - v).pow(2).sum()) for k, v in reference.items()) ** 0.5
    assert 0 < moved < 0.01 * apart  # 3 steps moved it a little from the checkpoint; a random init is far away


def test_latent_stats_choice(models) -> None:
    from ablations.stages.train_vae import VAETrainConfig, latent_stats_source
    from models.config import ConfigError

    init = dataclasses.replace(models["vae_cfg"], init="ltx.safetensors")
    assert [latent_stats_source(init, VAETrainConfig(latent_stats=c)) for c in ("auto", "checkpoint", "recompute")] == [
        "checkpoint", "checkpoint", "recompute"]
    assert latent_stats_source(models["vae_cfg"], VAETrainConfig()) == "recompute"  # a random init has none
    with pytest.raises(ConfigError, match="latent_stats=checkpoint keeps the statistics of vae.init, which is not set"):
        latent_stats_source(models["vae_cfg"], VAETrainConfig(latent_stats="checkpoint"))


def test_train_dit_state_starts_from_the_checkpoint(models, checkpoints) -> None:
    from ablations.stages.train_dit import DiTTrainConfig, build_state

    cfg = dataclasses.replace(models["dit_cfg"], init=str(checkpoints["folder"]))
    state = build_state(cfg, DiTTrainConfig(seed=0), torch.device("cpu"))
    _dit_outputs_match(state.model, models["dit"])
    _dit_outputs_match(state.ema, models["dit"])
    assert all(p.requires_grad for p in state.model.parameters())


def test_inspect_prints_what_was_loaded(checkpoints, capsys) -> None:
    from ablations.cli import main

    assert main(["inspect", "vae", "--init", str(checkpoints["single"]), "--size", "tiny", "--shape", "17x64x64",
                 "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["key_layout"] == "original" and info["container"] == "single_file" and info["fits"] == "ltx tiny"
    assert len(info["sha256"]) == 64 and info["params"] == info["total_params"]
    assert main(["inspect", "dit", "--init", str(checkpoints["folder"]), "--shape", "17x64x64"]) == 0
    table = capsys.readouterr().out
    assert "diffusers_folder" in table and "its config.json" in table and "sha256" in table
    assert main(["inspect", "vae", "--init", str(checkpoints["single"])]) == 2  # fits neither full nor a release
    err = capsys.readouterr().err
    assert "lacks tensors our ltx VAE (size full) needs" in err and "Traceback" not in err
