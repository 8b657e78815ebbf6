"""Paired A/B of the working tree's models against another git revision's, in one process.

    python benchmarks/ab_models.py --rev HEAD --what dit vae [--threads 1 2] [--repeats 20]

A speed change to `models/` is judged against the code it replaces, not against diffusers
(whose own time drifts with the machine as much as the change is worth). `--rev`'s
`models/` package is extracted with `git archive` into a temporary folder as `models_ab`
(its imports rewritten), both versions are built from the same diffusers weights, and
their no-grad forwards run back to back, alternating who goes first. Printed per case:
the median of the paired CPU-time ratios new/old with its distribution-free 95% interval
(`_paired.median_interval`), and max |new - old| on the outputs.

Cases: `dit` at the generate shape (a CFG batch of 2 x 48 tokens inside
`reuse_conditioning`, as `models.flow.sample` runs it) and at `dit_speed.py`'s (2 x 320
tokens, one forward); `vae` encode + decode of a 17x128x128 clip (`vae_speed.py`'s).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path
from types import ModuleType
from typing import Callable

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO))
from _paired import median_interval  # noqa: E402

OLD = "models_ab"  # the package name the other revision's models/ is imported under


def import_revision(rev: str, into: Path) -> ModuleType:
    """`rev`'s models/ as the package `models_ab` (imports of `models` rewritten), or one sentence."""
    try:
        blob = subprocess.run(["git", "-C", str(REPO), "archive", rev, "models"], check=True, capture_output=True).stdout
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"git archive {rev} models failed: {exc.stderr.decode().strip()}; pass a revision that has models/.")
    with tarfile.open(fileobj=BytesIO(blob)) as tar:
        tar.extractall(into, filter="data")
    (into / "models").rename(into / OLD)
    pattern = re.compile(r"\b(from|import) models(\.|\b)")
    for path in (into / OLD).rglob("*.py"):
        path.write_text(pattern.sub(rf"\1 {OLD}\2", path.read_text()))
    sys.path.insert(0, str(into))
    return importlib.import_module(OLD)


def compare(label: str, new: Callable[[], torch.Tensor], old: Callable[[], torch.Tensor], repeats: int) -> None:
    with torch.no_grad():
        diff = (new() - old()).abs().max().item()
        new(), old()
        ratios, times_new, times_old = [], [], []
        for i in range(repeats):
            took = {}
            for fn in (new, old) if i % 2 == 0 else (old, new):
                start = time.process_time()
                fn()
                took[fn] = time.process_time() - start
            ratios.append(took[new] / took[old])
            times_new.append(took[new])
            times_old.append(took[old])
    low, high, level = median_interval(ratios)
    print(f"  {label}: new {statistics.median(times_new) * 1e3:.1f} ms, old {statistics.median(times_old) * 1e3:.1f} ms "
          f"(CPU time); new/old {statistics.median(ratios):.3f} [{low:.3f}, {high:.3f}] ({level:.0%} interval of the "
          f"median, n={repeats}); max |new - old| {diff:.2e}")


def dit_cases(repeats: int) -> None:
    """`dit_speed.py`'s `small` models and inputs (its 2 x 320-token forward), plus a generate-shape CFG batch."""
    from dit_speed import forward_models

    new_model, ref, inputs, _, _ = forward_models("small (8L, 8x64)", "cpu")
    old_convert = importlib.import_module(f"{OLD}.dit.convert")
    old_model = old_convert.config_from_diffusers(ref.config).build().eval()
    old_model.load_state_dict(old_convert.convert_diffusers_ltx(ref.state_dict()))
    models = (new_model, old_model)
    _, _, text, mask = inputs
    half = torch.randn(1, 128, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    cfg_batch, times = torch.cat([half, half]), torch.full((2,), 0.7)
    with contextlib.ExitStack() as stack:
        for model in models:
            stack.enter_context(model.reuse_conditioning(times[:1]))
        new, old = (lambda m=m: m(cfg_batch, times, text, mask, 24.0) for m in models)
        compare("DiT, generate shape (CFG batch 2 x 48 tokens, reuse_conditioning)", new, old, repeats)
    new, old = (lambda m=m: m(*inputs, 24.0) for m in models)
    compare("DiT, dit_speed shape (2 x 320 tokens)", new, old, repeats)


def vae_cases(repeats: int) -> None:
    """`vae_speed.py`'s `small` models and clip (17x128x128)."""
    from vae_speed import encode_decode, vae_models

    new_model, ref, video, timestep = vae_models("small", (17, 128, 128))
    old_vae, old_convert = importlib.import_module(f"{OLD}.vae"), importlib.import_module(f"{OLD}.vae.convert")
    old_model = old_vae.vae_config("ltx", "small").build().eval()
    old_model.load_state_dict(old_convert.from_diffusers_state_dict(ref.state_dict()))
    new, old = (lambda m=m: encode_decode(m, video, timestep) for m in (new_model, old_model))
    compare("VAE encode + decode, small, 17x128x128", new, old, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default="HEAD", help="the git revision whose models/ is the baseline")
    parser.add_argument("--what", nargs="+", choices=["dit", "vae"], default=["dit", "vae"])
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ab_models_") as tmp:
        import_revision(args.rev, Path(tmp))
        for threads in args.threads:
            torch.set_num_threads(threads)
            print(f"working tree vs {args.rev}, {threads} thread(s), torch {torch.__version__}")
            for what in args.what:
                (dit_cases if what == "dit" else vae_cases)(args.repeats)


if __name__ == "__main__":
    main()
