"""`ltxlab inspect vae|dit`: shapes, compression, parameters and FLOPs on the meta device.

With `--init PATH` it loads an LTX-Video checkpoint (single file or diffusers folder), or an
ltxlab vae.safetensors / dit.safetensors with the config in its header, into
the model, as `--set vae.init=PATH` / `dit.init=PATH` would, and prints what was loaded:
the container and key layout, tensors, parameters, dtypes, the files' sha256, and which
preset the weights fit. A diffusers folder brings its config; a single file is tried
against `--size` and then the release presets.

With any of `--workers N --batch B --parallel ddp|fsdp --grad-accum K --activation-checkpointing
--mfu F --gpu h100|h200|a100` it adds a training estimate at `--shape` (`evaluation.memory`, the
formulas in docs/memory.md): per-GPU memory (parameters, gradients, AdamW moments, the
DiT's EMA, bf16 weights, activations, total) and the step time at the stated MFU, with
tokens/s. `--batch` is the global batch; it must split evenly over the workers (x the
micro-batches of `--grad-accum`).
"""

from __future__ import annotations

import argparse
import json

from ablations.cli import UserError


def parse_shape(text: str) -> tuple[int, int, int]:
    """'121x512x768' -> (frames, height, width), checking LTX-Video's shape rules."""
    try:
        frames, height, width = (int(p) for p in text.lower().split("x"))
    except ValueError:
        raise UserError(f"--shape must look like FRAMESxHEIGHTxWIDTH (e.g. 121x512x768), not '{text}'.") from None
    if frames < 1 or (frames - 1) % 8:
        raise UserError(f"--shape has {frames} frames; use 1 + 8k frames (e.g. 17, 121).")
    if height % 32 or width % 32 or height <= 0 or width <= 0:
        raise UserError(f"--shape has {height}x{width}; height and width must be positive multiples of 32.")
    return frames, height, width


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("inspect", help="describe a VAE or DiT config without allocating weights")
    p.add_argument("component", choices=["vae", "dit"], help="which model family")
    p.add_argument("--preset", default="ltx", help="VAE kind: ltx or conventional (the DiT pairs with it)")
    p.add_argument("--size", default="full", help="tiny, small or full (ltx VAE also 0.9.0, 0.9.1, 0.9.5)")
    p.add_argument("--init", default=None, metavar="PATH",
                   help="load this LTX-Video checkpoint (single .safetensors or diffusers folder) or ltxlab "
                        "vae.safetensors / dit.safetensors (or its folder) and report it")
    p.add_argument("--shape", default="121x512x768", help="FRAMESxHEIGHTxWIDTH of the pixel video")
    p.add_argument("--fps", type=float, default=24.0, help="frame rate (RoPE works in seconds)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    t = p.add_argument_group("training estimate (per GPU; any of these turns it on)")
    t.add_argument("--workers", type=int, default=None, metavar="N", help="GPUs in the run (default 1)")
    t.add_argument("--parallel", default=None, metavar="ddp|fsdp", help="replicate (ddp) or shard (fsdp, the default)")
    t.add_argument("--batch", type=int, default=None, metavar="B",
                   help="global batch per optimizer step, a multiple of --workers (default: one per GPU)")
    t.add_argument("--grad-accum", type=int, default=None, metavar="K",
                   help="micro-batches per GPU per step (default 1); activations are per micro-batch")
    t.add_argument("--activation-checkpointing", action="store_true", default=None,
                   help="recompute each block in backward instead of keeping its activations")
    t.add_argument("--mfu", type=float, default=None, help="model FLOPs utilisation to assume (default 0.35)")
    t.add_argument("--gpu", default=None, help="peak bf16 FLOP/s of: h100 (SXM, default), h200, a100")
    p.set_defaults(func=run)


MAX_WORKERS = 1_000_000  # GPUs; beyond any cluster, so a larger number is a typo
MAX_BATCH = 100_000_000
FPS = (0.0, 1000.0)  # frame rate range (exclusive of 0): RoPE divides by it

TRAINING_OPTIONS = ("workers", "parallel", "batch", "grad_accum", "activation_checkpointing", "mfu", "gpu")


def training_layout(args: argparse.Namespace):
    """The `evaluation.memory.TrainingLayout` the options ask for, or None when none is given."""
    if all(getattr(args, name, None) is None for name in TRAINING_OPTIONS):
        return None
    from evaluation.memory import GPU_PEAK_BF16, PARALLEL_MODES, TrainingLayout

    workers = 1 if args.workers is None else args.workers
    if not 1 <= workers <= MAX_WORKERS:
        raise UserError(f"--workers must be from 1 to {MAX_WORKERS:,} (the number of GPUs), not {workers}.")
    parallel = args.parallel or "fsdp"
    if parallel not in PARALLEL_MODES:
        raise UserError(f"--parallel must be ddp or fsdp, not '{parallel}'.")
    batch = workers if args.batch is None else args.batch
    if not 1 <= batch <= MAX_BATCH:
        raise UserError(f"--batch must be from 1 to {MAX_BATCH:,} (the global batch), not {batch}.")
    accum = 1 if args.grad_accum is None else args.grad_accum
    if not 1 <= accum <= MAX_BATCH:
        raise UserError(f"--grad-accum must be from 1 to {MAX_BATCH:,} (micro-batches per GPU), not {accum}.")
    if batch % (workers * accum):
        split = f"--workers {workers}" + (f" x --grad-accum {accum}" if accum > 1 else "")
        raise UserError(f"--batch {batch} does not split evenly over {split}; "
                        f"use a multiple of {workers * accum} (--batch is the global batch).")
    mfu = 0.35 if args.mfu is None else args.mfu
    if not 0 < mfu <= 1:
        raise UserError(f"--mfu must be a fraction in (0, 1], e.g. 0.35, not {mfu:g}.")
    gpu = (args.gpu or "h100").lower()
    if gpu not in GPU_PEAK_BF16:
        raise UserError(f"--gpu must be one of {', '.join(GPU_PEAK_BF16)}, not '{args.gpu}'.")
    return TrainingLayout(workers=workers, parallel=parallel, batch=batch, grad_accum=accum, mfu=mfu, gpu=gpu,
                          activation_checkpointing=bool(args.activation_checkpointing))


def _size(nbytes: int) -> str:
    """Bytes in GiB, or MiB / KiB below a tenth of the next unit."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20)):
        if nbytes >= scale / 10:
            return f"{nbytes / scale:.2f} {unit}"
    return f"{nbytes / 2**10:.2f} KiB"


def _print_training(est: dict) -> None:
    ac = "on" if est["activation_checkpointing"] else "off"
    print(f"\ntraining estimate per GPU: {est['workers']} x {est['gpu']}, {est['parallel']}, global batch "
          f"{est['batch']} ({est['batch_per_gpu']} per GPU"
          + (f", {est['grad_accum']} micro-batches of {est['micro_batch']}" if est["grad_accum"] > 1 else "")
          + f"), activation checkpointing {ac}")
    print(f"  {est['precision']}")
    if est["timesteps"]:
        print(f"  timesteps {est['timesteps']}")
    for key, nbytes in est["memory_bytes"].items():
        print(f"  {key:<18} {_size(nbytes):>12}")
    print(f"  {'step time':<18} {est['step_time_s']:>10.3g} s at {est['mfu']:.0%} MFU of "
          f"{est['peak_bf16_flops'] / 1e12:.0f} TFLOP/s ({est['flops_per_step_per_gpu']:.3g} FLOPs per GPU)")
    print(f"  {'throughput':<18} {est['tokens_per_s']:>12,.0f} tokens/s ({est['tokens_per_s_per_gpu']:,.0f} per GPU), "
          f"{est['samples_per_s']:.3g} samples/s")


def _candidates(args: argparse.Namespace) -> list[tuple[str, object]]:
    """(label, config) to try a checkpoint against: its own diffusers config, else --size, then the releases."""
    import dataclasses

    from models import weights

    source = weights.locate(args.init, args.component)
    if source.meta is not None:  # one of our trained artifacts: its header holds the config it was trained with
        from models.config import from_dict
        from models.dit import DITS
        from models.vae import VAES

        registry = VAES if args.component == "vae" else DITS
        own = from_dict(registry.get(source.meta["kind"]), source.meta["config"])
        return [("its header", dataclasses.replace(own, init=args.init))]
    if args.component == "vae":
        from models.vae import vae_config
        from models.vae.convert import config_from_diffusers
        from models.vae.ltx import RELEASES

        if source.config is not None:
            return [("its config.json", dataclasses.replace(config_from_diffusers(source.config), init=args.init))]
        sizes = [args.size] + [r for r in RELEASES if r != args.size and args.preset == "ltx"]
        return [(f"{args.preset} {size}", vae_config(args.preset, size, init=args.init)) for size in sizes]
    from models.dit import dit_config
    from models.dit.convert import config_from_diffusers

    base = dit_config(args.preset, args.size)
    if source.config is not None:
        theirs = config_from_diffusers(source.config, vae_temporal_compression=base.vae_temporal_compression,
                                       vae_spatial_compression=base.vae_spatial_compression)
        return [("its config.json", dataclasses.replace(theirs, init=args.init))]
    return [(f"{args.preset} {args.size}", dataclasses.replace(base, init=args.init))]


def loaded_info(args: argparse.Namespace) -> tuple[object, dict]:
    """Load `args.init` into the first candidate config it fits; (config, what was loaded)."""
    from models import weights

    first_error = None
    for label, cfg in _candidates(args):
        try:
            weights.check(cfg, args.component)
        except weights.WeightsError as exc:
            first_error = first_error or exc
            continue
        _, report = weights.load(cfg, args.component, dtype=None)  # the file's own dtypes
        info = {"loaded": report.path, "fits": label, **{k: v for k, v in report.as_dict().items() if k != "path"}}
        info["sha256"] = weights.file_sha256(report.files)
        return cfg, info
    raise first_error  # type: ignore[misc]


def run(args: argparse.Namespace) -> int:
    frames, height, width = parse_shape(args.shape)
    if not FPS[0] < args.fps <= FPS[1]:  # also NaN
        raise UserError(f"--fps must be a frame rate above {FPS[0]:g} and at most {FPS[1]:g}, not {args.fps:g}.")
    layout = training_layout(args)  # bad options fail before any model is built
    loaded: dict = {}
    if args.component == "vae":
        from models.vae import describe_vae, vae_config

        cfg = vae_config(args.preset, args.size)
        if args.init:
            cfg, loaded = loaded_info(args)
        info = describe_vae(cfg, frames, height, width)
    else:
        from models.dit import describe_dit, dit_config

        cfg = dit_config(args.preset, args.size)
        if args.init:
            cfg, loaded = loaded_info(args)
        info = describe_dit(cfg, frames, height, width, fps=args.fps)
    info = {**loaded, **info}
    training = None
    if layout is not None:
        from evaluation.memory import training_estimate

        training = training_estimate(cfg, args.component, frames, height, width, layout,
                                     flops_per_forward=info.get("flops_per_forward"))
    if args.json:
        print(json.dumps(info if training is None else {**info, "training": training}, indent=2))
    else:
        width_ = max(len(k) for k in info)
        for key, value in info.items():
            shown = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else value
            if isinstance(value, (list, tuple)) and key in ("files", "dtypes"):
                shown = ", ".join(map(str, value))
            print(f"{key:<{width_}}  {shown}")
        if training is not None:
            _print_training(training)
    return 0
