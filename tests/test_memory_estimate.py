"""evaluation/memory.py: the activation formulas against what autograd really saves, the
parameter/gradient/optimizer bytes against the meta model, the step time, and the CLI.

Measurement: one forward under `torch.autograd.graph.saved_tensors_hooks`, summing the bytes
of every distinct storage (by data_ptr) autograd packs for backward, parameters excluded
(they are counted as parameters). With activation checkpointing, non-reentrant
`torch.utils.checkpoint` packs only the tensor positional arguments; the RoPE tuple and the
keyword arguments it keeps by plain reference, so those storages are added from the
arguments each block was called with. The recompute figure is one block (stage) run again
on its recorded inputs, counting only storages not already held.
"""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from evaluation import memory as M
from models.dit import dit_config
from models.vae import vae_config

TOLERANCE = 0.15
FP32_CPU = dict(act_bytes=4, backend="cpu")


# ------------------------------------------------------------------------ measurement


def _saved(model: torch.nn.Module, fn, held=()) -> tuple[int, dict[int, int], object]:
    """(bytes, {data_ptr: nbytes}, output) of what autograd saves during fn(); `held` pointers
    are already in memory and not counted again."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen = {ptr: 0 for ptr in held}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params and storage.data_ptr() not in seen:
            seen[storage.data_ptr()] = storage.nbytes()
        return t  # keep it alive: no storage can be freed and its address reused mid-count

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return sum(seen.values()), seen, out


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            yield from _tensors(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _tensors(item)


def _with_checkpoint_parts(model, run, calls, stop_recording) -> tuple[int, int]:
    """(bytes held when backward starts, the largest unit's recompute) for a checkpointed run;
    `calls` fills with (unit forward, args, kwargs) as the units are called, until
    `stop_recording()` (before the recompute calls them again)."""
    held, seen, out = _saved(model, run)
    stop_recording()
    calls = list(calls)
    for _, args, kwargs in calls:  # kept by the checkpoint's closure, not packed
        for t in _tensors((args, kwargs)):
            storage = t.untyped_storage()
            if storage.data_ptr() not in seen:
                seen[storage.data_ptr()] = storage.nbytes()
                held += storage.nbytes()
    recompute = max(_saved(model, lambda f=f, a=a, k=k: f(*a, **k), held=seen)[0] for f, a, k in calls)
    del out
    return held, recompute


def measure_dit(cfg, batch: int, latent: tuple[int, int, int], per_token: bool, checkpointing: bool) -> tuple[int, int]:
    """(held, recompute) bytes of one fp32 DiT forward on CPU; recompute is 0 without checkpointing."""
    torch.manual_seed(0)
    model = cfg.build()
    model.gradient_checkpointing = checkpointing
    n = model.token_count(latent)
    latents = torch.randn(batch, cfg.in_channels, *latent)
    timestep = torch.rand(batch, n) if per_token else torch.rand(batch)
    text = torch.randn(batch, cfg.max_text_tokens, cfg.caption_channels)
    mask = torch.ones(batch, cfg.max_text_tokens, dtype=torch.bool)
    mask[:, -2:] = False
    run = lambda: model(latents, timestep, text, mask, 24.0)  # noqa: E731
    if not checkpointing:
        return _saved(model, run)[0], 0
    calls = []
    hooks = [b.register_forward_pre_hook(lambda m, a, k: calls.append((m, a, k)), with_kwargs=True) for b in model.blocks]

    def stop_recording() -> None:
        for h in hooks:
            h.remove()

    try:
        return _with_checkpoint_parts(model, run, calls, stop_recording)
    finally:
        stop_recording()


def measure_vae(cfg, batch: int, shape: tuple[int, int, int], checkpointing: bool) -> tuple[int, int]:
    """(held, recompute) bytes of one fp32 VAE training forward (encode, sample, decode) on CPU,
    optionally with every encoder/decoder stage and mid-block checkpointed."""
    from torch.utils.checkpoint import checkpoint

    torch.manual_seed(0)
    vae = cfg.build()
    video = torch.rand(batch, 3, *shape) * 2 - 1
    run = lambda: vae(video)  # noqa: E731
    if not checkpointing:
        return _saved(vae, run)[0], 0
    calls, recording = [], [True]
    for stage in [*vae.encoder.stages, vae.encoder.mid, vae.decoder.mid, *vae.decoder.stages]:
        def wrapped(*args, _forward=stage.forward):
            if recording[0]:
                calls.append((_forward, args, {}))
            return checkpoint(_forward, *args, use_reentrant=False)
        stage.forward = wrapped
    return _with_checkpoint_parts(vae, run, calls, lambda: recording.__setitem__(0, False))


def _pixels(cfg, latent: tuple[int, int, int]) -> tuple[int, int, int]:
    t, h, w = latent
    return 1 + (t - 1) * cfg.vae_temporal_compression, h * cfg.vae_spatial_compression, w * cfg.vae_spatial_compression


TINY = dit_config("ltx", "tiny")
DIT_CASES = {
    "tiny": (TINY, 2, (3, 4, 4), False),
    "tiny, 4 layers, 6 heads, 3x6x8 latents, per-token timesteps": (
        dataclasses.replace(TINY, num_layers=4, num_heads=6), 2, (3, 6, 8), True),
    "tiny mmdit, per-token timesteps": (dataclasses.replace(TINY, text_conditioning="mmdit"), 2, (3, 4, 4), True),
    "tiny, no qk norm, no rope, batch 1": (dataclasses.replace(TINY, qk_norm="none", rope="off"), 1, (3, 4, 4), False),
}


def _close(estimate: int, measured: int) -> bool:
    return abs(estimate - measured) <= TOLERANCE * measured


@pytest.mark.parametrize("name", list(DIT_CASES))
def test_dit_activation_formula_matches_saved_tensors(name: str) -> None:
    cfg, batch, latent, per_token = DIT_CASES[name]
    full, _ = measure_dit(cfg, batch, latent, per_token, checkpointing=False)
    held, recompute = measure_dit(cfg, batch, latent, per_token, checkpointing=True)
    assert held + recompute < full  # checkpointing saves memory, and the estimate must follow it down
    for checkpointing, measured in ((False, (full, 0)), (True, (held, recompute))):
        layout = M.TrainingLayout(batch=batch, per_token_timesteps=per_token,
                                  activation_checkpointing=checkpointing, **FP32_CPU)
        est = M.dit_activations(cfg, *_pixels(cfg, latent), layout)
        assert est["tokens_per_sample"] == math.prod(latent)
        assert _close(est["total"], sum(measured)), (checkpointing, est["total"], measured)
        assert _close(est["forward_saved"], measured[0]), (checkpointing, est["forward_saved"], measured)
        if checkpointing:
            assert _close(est["recompute"], measured[1]), (est["recompute"], measured)


@pytest.mark.parametrize("kind,shape", [("ltx", (9, 64, 64)), ("conventional", (9, 16, 16))])
def test_vae_activation_formula_matches_saved_tensors(kind: str, shape: tuple[int, int, int]) -> None:
    cfg = vae_config(kind, "tiny")
    full, _ = measure_vae(cfg, 1, shape, checkpointing=False)
    held, recompute = measure_vae(cfg, 1, shape, checkpointing=True)
    assert held + recompute < full
    for checkpointing, measured in ((False, (full, 0)), (True, (held, recompute))):
        layout = M.TrainingLayout(activation_checkpointing=checkpointing, **FP32_CPU)
        est = M.vae_activations(cfg, *shape, layout)
        assert _close(est["total"], sum(measured)), (checkpointing, est["total"], measured)
        assert _close(est["forward_saved"], measured[0]), (checkpointing, est["forward_saved"], measured)


class _FusedRMSNorm(torch.autograd.Function):
    """Keeps what CUDA's fused RMSNorm keeps for backward (`_fused_rms_norm_backward` takes
    input, rstd, weight): CPU has only the composite, which also keeps fp32 copies."""

    @staticmethod
    def forward(ctx, x, weight, eps):
        xf = x.float()
        rstd = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
        ctx.save_for_backward(x, rstd, weight)
        return (xf * rstd * weight.float()).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        x, rstd, weight = ctx.saved_tensors
        normed, g = x.float() * rstd, grad.float() * weight.float()
        dx = rstd * (g - normed * (g * normed).mean(-1, keepdim=True))
        return dx.to(x.dtype), (grad.float() * normed).flatten(0, -2).sum(0).to(weight.dtype), None


def test_bf16_dtypes_of_the_cuda_path(monkeypatch) -> None:
    """The fp32/bf16 split of the GPU estimate (fp32 norm inputs and statistics, RoPE tables,
    bf16 elsewhere): a bf16 forward on CPU with the fused RMSNorm's saving behaviour."""
    monkeypatch.setattr(torch.nn.RMSNorm, "forward", lambda self, x: _FusedRMSNorm.apply(x, self.weight, self.eps))
    cfg = TINY
    torch.manual_seed(0)
    model = cfg.build().to(torch.bfloat16)
    latent, batch = (3, 4, 4), 2
    latents = torch.randn(batch, cfg.in_channels, *latent, dtype=torch.bfloat16)
    text = torch.randn(batch, cfg.max_text_tokens, cfg.caption_channels, dtype=torch.bfloat16)
    mask = torch.ones(batch, cfg.max_text_tokens, dtype=torch.bool)
    measured, _, out = _saved(model, lambda: model(latents, torch.rand(batch, 48), text, mask, 24.0))
    out.float().square().mean().backward()  # the stand-in's backward is a real one
    est = M.dit_activations(cfg, *_pixels(cfg, latent), M.TrainingLayout(batch=batch, act_bytes=2))
    assert _close(est["total"], measured), (est["total"], measured)
    fp32 = M.dit_activations(cfg, *_pixels(cfg, latent), M.TrainingLayout(batch=batch, act_bytes=4))
    assert not _close(fp32["total"], measured)  # the dtype matters at this tolerance

    vae_cfg = vae_config("ltx", "tiny")
    vae = vae_cfg.build().to(torch.bfloat16)
    video = (torch.rand(1, 3, 9, 64, 64) * 2 - 1).to(torch.bfloat16)
    measured, _, _ = _saved(vae, lambda: vae(video))
    assert _close(M.vae_activations(vae_cfg, 9, 64, 64, M.TrainingLayout())["total"], measured)


# --------------------------------------------------------------- parameters and state


def _meta_shapes(cfg) -> list[tuple[int, ...]]:
    with torch.device("meta"):
        return [tuple(p.shape) for p in cfg.build().parameters()]


@pytest.mark.parametrize("component", ["dit", "vae"])
def test_param_grad_optimizer_bytes_are_exact(component: str) -> None:
    cfg = TINY if component == "dit" else vae_config("ltx", "tiny")
    shapes = _meta_shapes(cfg)
    total = sum(math.prod(s) for s in shapes)
    ddp = M.state_memory(cfg, component, M.TrainingLayout(workers=4, batch=4, parallel="ddp"))
    assert (ddp["params"], ddp["grads"], ddp["optimizer"]) == (4 * total, 4 * total, 8 * total)
    assert ddp["ema"] == (4 * total if component == "dit" else 0)
    assert ddp["bf16_weights"] == 2 * total
    for workers in (1, 3, 8):
        fsdp = M.state_memory(cfg, component, M.TrainingLayout(workers=workers, batch=workers, parallel="fsdp"))
        # FSDP2 shards dim 0 of every tensor, padded to a multiple of the workers
        shard = sum(-(-(s or (1,))[0] // workers) * math.prod((s or (1,))[1:]) for s in shapes)
        assert (fsdp["params"], fsdp["grads"], fsdp["optimizer"]) == (4 * shard, 4 * shard, 8 * shard)
        assert fsdp["ema"] == (4 * shard if component == "dit" else 0)
        assert total / workers <= shard < total / workers + sum(math.prod(s[1:]) for s in shapes if s)
        assert fsdp["param_count"] == total
    assert M.state_memory(cfg, component, M.TrainingLayout(parallel="fsdp"))["params"] == ddp["params"]


def test_fsdp_gathers_the_root_and_two_blocks() -> None:
    units = M.param_units(TINY, "dit")
    blocks = [sum(math.prod(s) for s in units[f"blocks.{i}"]) for i in range(TINY.num_layers)]
    root = sum(math.prod(s) for s in units["root"])
    assert root + sum(blocks) == sum(math.prod(s) for s in _meta_shapes(TINY))
    fsdp = M.state_memory(TINY, "dit", M.TrainingLayout(workers=2, batch=2))
    assert fsdp["bf16_weights"] == 2 * (root + 2 * max(blocks))


# --------------------------------------------------------------------------- estimate


def test_step_time_from_the_cost_flop_count() -> None:
    from models.dit import describe_dit

    layout = M.TrainingLayout(workers=2, batch=6, mfu=0.5, gpu="a100")
    est = M.training_estimate(TINY, "dit", 17, 64, 64, layout)
    fwd = describe_dit(TINY, 17, 64, 64)["flops_per_forward"]
    assert est["flops_per_forward_sample"] == fwd
    assert est["step_time_s"] == pytest.approx(3 * fwd * 3 / (312e12 * 0.5))
    assert est["tokens_per_s"] == pytest.approx(6 * est["tokens_per_sample"] / est["step_time_s"])
    recompute = M.training_estimate(TINY, "dit", 17, 64, 64, dataclasses.replace(layout, activation_checkpointing=True))
    assert recompute["step_time_s"] == pytest.approx(est["step_time_s"] * 4 / 3)
    assert recompute["memory_bytes"]["activations"] < est["memory_bytes"]["activations"]
    memory = est["memory_bytes"]
    assert memory["total"] == sum(v for k, v in memory.items() if k != "total")
    # gradient accumulation: activations of one micro-batch, FLOPs of the whole per-GPU batch
    accum = M.training_estimate(TINY, "dit", 17, 64, 64, dataclasses.replace(layout, grad_accum=3))
    one = M.training_estimate(TINY, "dit", 17, 64, 64, dataclasses.replace(layout, batch=2))
    assert accum["micro_batch"] == 1 and accum["memory_bytes"]["activations"] == one["memory_bytes"]["activations"]
    assert accum["step_time_s"] == pytest.approx(est["step_time_s"])

    from evaluation.cost import _vae_flops

    vae_cfg = vae_config("ltx", "tiny")
    vae = M.training_estimate(vae_cfg, "vae", 9, 64, 64, M.TrainingLayout())
    encode, decode, latent = _vae_flops(vae_cfg, 9, 64, 64)
    assert vae["flops_per_forward_sample"] == encode + decode
    assert vae["tokens_per_sample"] == math.prod(latent[1:])
    assert vae["memory_bytes"]["ema"] == 0


@pytest.mark.parametrize("kwargs,field", [(dict(workers=0), "workers"), (dict(parallel="foo"), "parallel"),
                                          (dict(workers=2, batch=5), "batch"), (dict(mfu=35.0), "mfu"),
                                          (dict(workers=2, batch=6, grad_accum=2), "batch"),
                                          (dict(grad_accum=0), "grad_accum"),
                                          (dict(gpu="v100"), "gpu"), (dict(backend="cpu", act_bytes=2), "backend")])
def test_layout_rejects_what_cannot_run(kwargs: dict, field: str) -> None:
    with pytest.raises(M.LayoutError, match=field):
        M.TrainingLayout(**kwargs)


# -------------------------------------------------------------------------------- CLI


def test_cli_json_carries_the_estimate(capsys) -> None:
    from ablations.cli import main

    args = ["inspect", "dit", "--size", "tiny", "--workers", "2", "--parallel", "fsdp", "--batch", "4",
            "--shape", "17x64x64", "--json"]
    assert main(args) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["params"] > 0 and info["flops_per_forward"] > 0  # the description is still there
    est = info["training"]
    assert (est["workers"], est["parallel"], est["batch"], est["batch_per_gpu"]) == (2, "fsdp", 4, 2)
    assert set(est["memory_bytes"]) == {"params", "grads", "optimizer", "ema", "bf16_weights", "activations", "total"}
    expected = M.training_estimate(dit_config("ltx", "tiny"), "dit", 17, 64, 64,
                                   M.TrainingLayout(workers=2, batch=4, parallel="fsdp"))
    assert est["memory_bytes"] == expected["memory_bytes"]
    assert est["step_time_s"] == pytest.approx(expected["step_time_s"])
    assert est["tokens_per_s"] > 0 and est["mfu"] == 0.35 and est["gpu"] == "H100 SXM"

    assert main(["inspect", "vae", "--size", "tiny", "--shape", "9x64x64", "--batch", "2",
                 "--activation-checkpointing"]) == 0
    out = capsys.readouterr().out
    assert "training estimate per GPU: 1 x H100 SXM, fsdp, global batch 2" in out and "activations" in out

    assert main(["inspect", "vae", "--size", "tiny", "--shape", "9x64x64", "--json"]) == 0
    assert "training" not in json.loads(capsys.readouterr().out)  # without the options, as before


@pytest.mark.parametrize("extra,flag", [(["--workers", "0"], "--workers"), (["--parallel", "foo"], "--parallel"),
                                        (["--workers", "2", "--batch", "3"], "--batch"), (["--mfu", "35"], "--mfu"),
                                        (["--workers", "2", "--batch", "6", "--grad-accum", "2"], "--grad-accum"),
                                        (["--gpu", "v100"], "--gpu")])
def test_cli_bad_layout_is_one_sentence(extra: list[str], flag: str, capsys) -> None:
    from ablations.cli import main

    assert main(["inspect", "dit", "--size", "tiny", "--shape", "17x64x64", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.endswith(".") and flag in err and "Traceback" not in err
