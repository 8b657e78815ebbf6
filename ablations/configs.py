"""Run configs: one tree of component configs per variant, serialised to JSON and rebuilt
by each component's `kind`. Every config is built on the meta device before a sweep
launches anything (`check_buildable`), so a bad recipe fails in a second, not an hour.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from ablations.training.config import ParallelConfig, check_batch_split
from evaluation.weights import WeightsConfig
from models.config import (SEED, ConfigError, Choice, Int, Real, Seq, check_ranges, declare_ranges, from_dict, to_dict,
                           to_json)


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    # + dwt_psnr_* bands; LPIPS is n/a (with the file it needs) until eval.weights has its backbone
    recon_metrics: tuple[str, ...] = ("psnr", "psnr_pooled", "ssim", "ms_ssim", "flicker", "lpips_alex", "lpips_vgg")
    dwt_bands: bool = True  # also score PSNR per 3D Haar sub-band (which variants keep high frequencies)
    heldout_prompts: int = 12  # held-out synthetic scenes used as t2v prompts / i2v first frames
    recon_samples: int = 2  # reconstructions kept as mp4 per run (for the dashboard's Compare page)
    # local pretrained networks (I3D, LPIPS backbones, CLIP, DINO); unset ones are looked up in $LTXLAB_WEIGHTS,
    # and a metric whose file is absent is reported "n/a: <metric> needs <file>" (evaluation/weights.py)
    weights: WeightsConfig = field(default_factory=WeightsConfig)
    fvd_frames: int = 16  # frames per FVD/rFVD clip (StyleGAN-V's FVD_16; 128 for the long protocol)
    fvd_min_samples: int = 256  # FVD/rFVD refuse below this many videos per set (small-N FVD is biased)


def _metric_names() -> list[str]:
    from evaluation.metrics import METRICS

    return METRICS.names()


declare_ranges(EvalConfig, {
    "recon_metrics": Seq(Choice(names=_metric_names), 1, 64), "heldout_prompts": Int(1, 10_000),
    "recon_samples": Int(0, 1000), "fvd_frames": Int(1, 1024), "fvd_min_samples": Int(2, 10_000_000),
})


@dataclass(frozen=True, kw_only=True)
class CostConfig:
    reference_shape: tuple[int, int, int] = (121, 512, 768)  # (T, H, W) at which FLOPs are also counted
    h100_peak_tflops: float = 989.0  # dense bf16 peak of an H100 SXM (NVIDIA datasheet)
    h100_utilisation: float = 0.4  # assumed model FLOPs utilisation for the estimate (stated, not measured)
    latency_repeats: int = 3  # timed forward passes (median) on the run's hardware


declare_ranges(CostConfig, {
    "reference_shape": Seq(Int(1, 100_000), 3, 3), "h100_peak_tflops": Real(0.0, 1e6, open_lo=True),
    "h100_utilisation": Real(0.0, 1.0, open_lo=True), "latency_repeats": Int(1, 1000),
})


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """Everything one variant of a sweep depends on; stages hash the parts they read."""

    seed: int = 0  # the run's seed: VAE and DiT init, data order, noise, sampling
    vae_data: Any  # clips.dataset.DataSpec the VAE trains on and is scored on (bundled real clips)
    vae: Any  # models.vae config (ltx or conventional)
    loss: Any  # models.losses.base.VAELossConfig
    vae_train: Any  # ablations.stages.train_vae.VAETrainConfig
    dit_data: Any  # clips.dataset.DataSpec the DiT trains on (synthetic captioned scenes)
    dit: Any  # models.dit.DiTConfig (paired with the VAE's channels and compression)
    flow: Any  # models.flow.FlowConfig
    text: Any  # models.text.TextEncoderConfig
    dit_train: Any  # ablations.stages.train_dit.DiTTrainConfig
    sample: Any  # ablations.stages.sample.SampleConfig
    eval: EvalConfig = field(default_factory=EvalConfig)
    cost: CostConfig = field(default_factory=CostConfig)
    train: ParallelConfig = field(default_factory=ParallelConfig)  # workers, ddp/fsdp, accumulation: how, not what (keys hold only its numerics: device, bf16, compile)

    def to_json(self) -> str:
        return to_json(self)


declare_ranges(RunConfig, {"seed": SEED})  # the other fields are sections, each with its own table


def _classes() -> dict[str, Any]:
    from ablations.stages.sample import SampleConfig
    from ablations.stages.train_dit import DiTTrainConfig
    from ablations.stages.train_vae import VAETrainConfig
    from clips.dataset import DataSpec
    from models.flow import FlowConfig
    from models.losses.base import VAELossConfig
    from models.text import TextEncoderConfig

    return {"vae_data": DataSpec, "loss": VAELossConfig, "vae_train": VAETrainConfig, "dit_data": DataSpec,
            "flow": FlowConfig, "text": TextEncoderConfig, "dit_train": DiTTrainConfig, "sample": SampleConfig,
            "eval": EvalConfig, "cost": CostConfig, "train": ParallelConfig}


def run_config_from_dict(data: dict[str, Any]) -> RunConfig:
    """JSON dict -> RunConfig, dispatching the VAE and DiT on their `kind`."""
    from models.dit import DITS
    from models.vae import VAES

    classes = _classes()
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        if name == "vae":
            kwargs[name] = from_dict(VAES.get(value["kind"]), value, "vae")
        elif name == "dit":
            kwargs[name] = from_dict(DITS.get(value.get("kind", "ltx_dit")), value, "dit")
        elif name in classes:
            kwargs[name] = from_dict(classes[name], value, name)
        elif name == "seed":
            kwargs[name] = int(value)
        else:
            raise ConfigError(f"A run config has no section '{name}'; valid sections are: "
                              f"{', '.join(f.name for f in dataclasses.fields(RunConfig))}.")
    return RunConfig(**kwargs)


def default_run_config(vae_kind: str = "ltx", size: str = "tiny", **sections: Any) -> RunConfig:
    """A complete tiny-scale run: bundled clips for the VAE, synthetic scenes for the DiT."""
    from ablations.stages.sample import SampleConfig
    from ablations.stages.train_dit import DiTTrainConfig
    from ablations.stages.train_vae import VAETrainConfig
    from clips.dataset import DataSpec
    from models.dit import dit_config
    from models.flow import flow_config
    from models.losses.base import VAELossConfig
    from models.text import TextEncoderConfig
    from models.vae import vae_config

    vae = vae_config(vae_kind, size)
    dit = dit_config(vae_kind, size, in_channels=vae.latent_channels)
    base = RunConfig(
        vae_data=DataSpec(source="bundled", frames=17, height=64, width=64, clips_per_video=8),
        vae=vae,
        # L1 + MSE: with L1 alone the tiny VAEs settle on blurry mean colours. The decoder is
        # timestep-conditioned and `sample` decodes noised latents at flow.decode_timestep, as
        # LTX-Video does, so it trains with LTX's shared diffusion objective too
        loss=VAELossConfig(mse=1.0, diffusion=1.0),
        vae_train=VAETrainConfig(),
        dit_data=DataSpec(source="synthetic", frames=17, height=64, width=64, num_scenes=256),
        dit=dit,
        flow=flow_config(size),
        text=TextEncoderConfig(max_length=dit.max_text_tokens),  # captions padded to what the DiT takes (LTX: 128)
        dit_train=DiTTrainConfig(),
        sample=SampleConfig(),
    )
    return dataclasses.replace(base, **sections)


def sync_pairing(cfg: RunConfig) -> RunConfig:
    """Keep the DiT paired with its VAE (after an axis swapped `vae.kind`, say).

    The DiT's input channels always follow the VAE's latent channels. Its compression
    factors (RoPE's pixel coordinates) follow the VAE's own strides; when they change,
    the transformer patch becomes that VAE kind's pairing (ltx: 1x1x1, conventional:
    4x4x2), so both sides of the patchifier ablation have equal tokens. A recipe's own
    patch choice is kept while the VAE's compression still matches the DiT's.
    """
    from models.dit import dit_config, vae_pairing

    updates = vae_pairing(cfg.vae)
    if (cfg.dit.vae_spatial_compression, cfg.dit.vae_temporal_compression) != (
            updates["vae_spatial_compression"], updates["vae_temporal_compression"]):
        updates["patch"] = dit_config(cfg.vae.kind, "tiny").patch
    return dataclasses.replace(cfg, dit=dataclasses.replace(cfg.dit, **updates))


def check_decoder_consistency(vae: Any, loss: Any, flow: Any) -> None:
    """Refuse to decode noised latents with a decoder that was never trained on them.

    A timestep-conditioned decoder learns what t and noise mean only from the diffusion
    objective (`loss.diffusion` > 0, t ~ U[0, loss.diffusion_max_t]); trained without it, it
    has only seen clean latents at t = 0, so `sample` must decode at t = 0 without noise.
    `loss` may be a VAELossConfig or its dict (as `vae.safetensors` records it).
    """
    if not getattr(vae, "decoder_timestep_conditioning", False):
        return  # an unconditioned decoder is always decoded from clean latents
    weight = loss["diffusion"] if isinstance(loss, dict) else loss.diffusion
    max_t = loss.get("diffusion_max_t", 0.2) if isinstance(loss, dict) else loss.diffusion_max_t
    t, s = flow.decode_timestep, flow.decode_noise_scale
    if weight <= 0 and (t > 0 or s > 0):
        raise ConfigError(f"The VAE decoder is timestep-conditioned but trained without the diffusion objective "
                          f"(loss.diffusion=0), yet sampling decodes at flow.decode_timestep={t} with "
                          f"flow.decode_noise_scale={s}; set loss.diffusion > 0 (LTX-Video's shared diffusion "
                          "objective) or decode clean latents with flow.decode_timestep=0 and flow.decode_noise_scale=0.")
    if weight > 0 and t > max_t:
        raise ConfigError(f"flow.decode_timestep={t} lies beyond the timesteps the decoder trains on "
                          f"(loss.diffusion_max_t={max_t}); lower it or raise loss.diffusion_max_t.")


def check_buildable(cfg: RunConfig, stages: set[str]) -> None:
    """Check ranges and data specs, and run the models once on the meta device at the run's clip shapes:
    fail fast, in one sentence."""
    from clips.dataset import check_data_spec
    from models.dit import DITS
    from models.vae import VAES

    check_ranges(cfg)  # every field in its declared range (recipe axes too, not only --set)
    VAES.get(cfg.vae.kind)  # an unknown kind fails here with the valid names
    DITS.get(cfg.dit.kind)
    if stages & {"train_vae", "eval_recon", "encode_latents", "sample", "eval_gen", "cost"}:
        check_data_spec(cfg.vae_data)
        _dry_run_vae(cfg.vae, cfg.vae_data, "vae_data")
    if stages & {"encode_latents", "train_dit", "sample", "eval_gen"}:
        check_data_spec(cfg.dit_data)
        _dry_run_vae(cfg.vae, cfg.dit_data, "dit_data")  # encode_latents encodes these clips
        if cfg.dit.in_channels != cfg.vae.latent_channels:
            raise ConfigError(f"dit.in_channels is {cfg.dit.in_channels} but the VAE has {cfg.vae.latent_channels} "
                              "latent channels; set them equal.")
        _check_caption_width(cfg.text, cfg.dit)
        _dry_run_dit(cfg.dit, cfg.dit_data)
    if stages & {"sample", "eval_gen"}:
        check_decoder_consistency(cfg.vae, cfg.loss, cfg.flow)
        if cfg.dit_data.source != "synthetic":  # held-out prompts are scored against their scene's oracle
            raise ConfigError(f"sample and eval_gen take their prompts from held-out synthetic scenes, but dit_data.source "
                              f"is '{cfg.dit_data.source}'; set dit_data.source=synthetic or drop those stages.")
    if stages & {"eval_recon", "eval_gen"}:
        _check_eval(cfg.eval)
    if "train_vae" in stages:
        check_batch_split(cfg.vae_train.batch_size, cfg.train, "vae_train")
        from ablations.stages.train_vae import latent_stats_source

        latent_stats_source(cfg.vae, cfg.vae_train)  # latent_stats=checkpoint needs a vae.init to keep them from
    if "train_dit" in stages:
        check_batch_split(cfg.dit_train.batch_size, cfg.train, "dit_train")
    _check_init(cfg, stages)


@lru_cache(maxsize=64)
def _dry_run_vae(vae: Any, spec: Any, section: str) -> None:
    """Encode and decode one clip of `spec`'s shape on the meta device (shapes only, no memory, no compute):
    a patch or stride that does not divide the clip fails here in a second, not in a worker after minutes."""
    from evaluation.cost import _vae_flops

    try:
        _vae_flops(vae, spec.frames, spec.height, spec.width)
    except Exception as exc:  # noqa: BLE001 - any failure of a shape-only pass is a config the user must change
        raise ConfigError(f"The VAE cannot encode and decode {spec.frames}x{spec.height}x{spec.width} clips of {section} "
                          f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no message'}); check "
                          f"vae.patch_size, vae.encoder_strides and vae.in_channels against {section}.frames, height "
                          "and width.") from None


@lru_cache(maxsize=64)
def _dry_run_dit(dit: Any, spec: Any) -> None:
    """One DiT forward at `spec`'s latent shape on the meta device: patch, heads and RoPE must divide it."""
    from models.dit import describe_dit

    try:
        describe_dit(dit, spec.frames, spec.height, spec.width, fps=spec.fps)
    except Exception as exc:  # noqa: BLE001 - as above
        raise ConfigError(f"The DiT cannot run on {spec.frames}x{spec.height}x{spec.width} clips of dit_data "
                          f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no message'}); check "
                          "dit.patch, dit.num_heads and dit.head_dim against dit_data.frames, height and width.") from None


def _check_caption_width(text: Any, dit: Any) -> None:
    """The DiT's caption projection must take what the text encoder gives (its config.json, no weights)."""
    from models.text import text_width

    width = text_width(text)
    if width is not None and width != dit.caption_channels:
        raise ConfigError(f"dit.caption_channels is {dit.caption_channels} but text.kind={text.kind} gives {width}-d "
                          f"captions; set dit.caption_channels={width}.")


def run_data_warnings(cfg: RunConfig) -> str | None:
    """The run table's `data_warnings`: one sentence per broken file of the run's folder sources
    (training skips them), found on the driver without decoding, one per line; None when there is nothing to say."""
    from clips.dataset import data_warnings

    sentences = dict.fromkeys(data_warnings(cfg.vae_data) + data_warnings(cfg.dit_data))
    return "\n".join(sentences) or None


def _check_eval(cfg: EvalConfig) -> None:
    """Metric names and configured weight paths, checked before launch (a missing file is a result, not an error)."""
    from evaluation.metrics import METRICS
    from evaluation.weights import check_formats, resolve_weights

    for name in cfg.recon_metrics:
        METRICS.get(name)  # unknown names fail here with the valid ones
    if cfg.fvd_frames < 1 or cfg.fvd_min_samples < 2:
        raise ConfigError(f"eval.fvd_frames must be >= 1 and eval.fvd_min_samples >= 2 (the Frechet distance needs a "
                          f"covariance), got {cfg.fvd_frames} and {cfg.fvd_min_samples}.")
    # a configured path that does not exist, is the wrong kind or is not in its metric's format fails in one
    # sentence now, not in eval_recon / eval_gen after training
    check_formats(resolve_weights(cfg.weights))


def _check_init(cfg: RunConfig, stages: set[str]) -> None:
    """`vae.init` / `dit.init` must fit their configs: safetensors headers only, a second at full size."""
    from models import weights

    if getattr(cfg.vae, "init", None) and "train_vae" in stages:
        weights.check(cfg.vae, "vae")
    if getattr(cfg.dit, "init", None) and "train_dit" in stages:
        weights.check(cfg.dit, "dit")


__all__ = ["CostConfig", "EvalConfig", "Literal", "RunConfig", "check_buildable", "check_decoder_consistency",
           "default_run_config", "run_data_warnings",
           "run_config_from_dict", "sync_pairing", "to_dict"]
