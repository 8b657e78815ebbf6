"""VAE speed: tiny `ltx` frames/s on CPU, and our forward time relative to diffusers'.

    python benchmarks/vae_speed.py                      # both figures, defaults below
    python benchmarks/vae_speed.py --sizes tiny small --shape 17x128x128 --repeats 7 --threads 1 2 [--profile]
    python benchmarks/vae_speed.py --sizes small --repeats 8 --max-repeats 30 --no-throughput   # the issue-16 verdicts

The ratio compares our `ltx` VAE with diffusers' `AutoencoderKLLTXVideo` at the same
config with the same weights (converted by `models/vae/convert.py`), in one process,
alternating which model goes first, at each thread count of `--threads`; it prints the
median wall and CPU time of each, the median of the back-to-back ratios with quartiles and
min-max (< 1 means ours is faster), and the load average (the machine is shared), then a
PASS/UNCLEAR/MISS line against the target ratio from the 95% intervals of the wall and CPU-time
median ratios (`_paired.Paired.verdict`), and whether the outputs
agree within 1e-5 (torch.allclose, atol = rtol = 1e-5). `--max-repeats` adds pairs until
the ratios' quartile interval is `--tight` wide.
`--profile` adds the top aten ops of each side; `--fp64` each side's max error against diffusers'
model run in float64 (how much of the 1e-5 budget is each side's own rounding). Timings are
no-grad fp32 encode + decode of the mean, with a decode timestep, as a reconstruction pass at
evaluation time runs.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _paired import Paired, add_repeat_options, load_average, paired, print_profiles  # noqa: E402

TARGET = 0.9  # issue 16: our encode + decode takes at most 0.9 of diffusers' time at `small`
TOLERANCE = 1e-5  # ... with outputs within this of diffusers' in fp32 (atol and rtol)


def parse_shape(text: str) -> tuple[int, int, int]:
    frames, height, width = (int(p) for p in text.lower().split("x"))
    return frames, height, width


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def frames_per_second(size: str, shape: tuple[int, int, int], repeats: int) -> float:
    from models.vae import vae_config

    torch.manual_seed(0)
    vae = vae_config("ltx", size).build().eval()
    video = torch.rand(1, 3, *shape) * 2 - 1
    timestep = torch.tensor([0.05])
    with torch.no_grad():
        run = lambda: vae.decode(vae.encode(video)[0], timestep)  # noqa: E731
        run()  # warm-up
        seconds = statistics.median(timed(run) for _ in range(repeats))
    return shape[0] / seconds


def vae_models(size: str, shape: tuple[int, int, int]):  # type: ignore[no-untyped-def]
    """(ours, diffusers', a video, the decode timestep): the same weights (diffusers' converted into ours)."""
    from diffusers import AutoencoderKLLTXVideo

    from models.vae import vae_config
    from models.vae.convert import from_diffusers_state_dict, to_diffusers_config

    cfg = vae_config("ltx", size)
    torch.manual_seed(0)
    theirs = AutoencoderKLLTXVideo(**to_diffusers_config(cfg)).eval()
    ours = cfg.build().eval()
    ours.load_state_dict(from_diffusers_state_dict(theirs.state_dict()))
    return ours, theirs, torch.rand(1, 3, *shape) * 2 - 1, torch.tensor([0.05])


@torch.no_grad()
def encode_decode(model: torch.nn.Module, video: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
    """One no-grad encode + decode of the posterior mean, ours or diffusers' (by the model's API), with the
    decoder's noise drawn from seed 1 on both sides."""
    from diffusers import AutoencoderKLLTXVideo

    torch.manual_seed(1)
    if isinstance(model, AutoencoderKLLTXVideo):
        return model(video, temb=timestep).sample
    return model(video, sample_posterior=False, timestep=timestep)[0]


def vae_pair(size: str, shape: tuple[int, int, int]):  # type: ignore[no-untyped-def]
    """(our encode + decode, diffusers' encode + decode, max |difference|) at identical converted weights."""
    ours, theirs, video, timestep = vae_models(size, shape)
    run_ours, run_theirs = (lambda m=m: encode_decode(m, video, timestep) for m in (ours, theirs))
    mine, ref = run_ours(), run_theirs()
    return run_ours, run_theirs, (mine - ref).abs().max().item(), torch.allclose(mine, ref, atol=TOLERANCE, rtol=TOLERANCE)


def float64_errors(size: str, shape: tuple[int, int, int]) -> tuple[float, float]:
    """Max |ours - exact| and max |diffusers - exact|, exact being diffusers' model run in float64: how much of the
    1e-5 parity budget is each side's own rounding."""
    ours, theirs, video, timestep = vae_models(size, shape)
    mine, ref = (encode_decode(m, video, timestep).double() for m in (ours, theirs))
    exact = encode_decode(copy.deepcopy(theirs).double(), video.double(), timestep.double())
    return (mine - exact).abs().max().item(), (ref - exact).abs().max().item()


def ratio_vs_diffusers(size: str, shape: tuple[int, int, int], args: argparse.Namespace) -> tuple[Paired, float, bool]:
    run_ours, run_theirs, diff, close = vae_pair(size, shape)
    # the ratio is the median of back-to-back pairs: on a shared machine, load drifts between pairs far more than within one
    return paired(run_ours, run_theirs, args.repeats, max_repeats=args.max_repeats, tight=args.tight), diff, close


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["tiny", "small"], help="ltx presets for the diffusers ratio")
    parser.add_argument("--shape", default="17x128x128", help="FRAMESxHEIGHTxWIDTH")
    add_repeat_options(parser, default=7)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch thread counts to measure at")
    parser.add_argument("--no-throughput", action="store_true", help="skip the tiny frames/s figure")
    parser.add_argument("--profile", action="store_true", help="print the top aten ops of each side")
    parser.add_argument("--fp64", action="store_true", help="also print each side's error against a float64 run")
    args = parser.parse_args()
    shape = parse_shape(args.shape)
    print(f"torch {torch.__version__}, fp32, no grad, batch 1, shape {args.shape} ({load_average()})")
    if not args.no_throughput:
        fps = frames_per_second("tiny", shape, args.repeats)
        print(f"tiny ltx encode+decode throughput (CPU, {torch.get_num_threads()} threads): {fps:.1f} frames/s")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for size in args.sizes:
            result, diff, close = ratio_vs_diffusers(size, shape, args)
            print(f"{size} ltx encode+decode, {threads} thread(s): {result.summary()} "
                  f"(max |ours - diffusers| {diff:.1e}; {load_average()})")
            print(f"  {result.verdict(f'{size} VAE, {threads} thread(s)', TARGET)}; outputs within {TOLERANCE:g}: "
                  f"{'yes' if close else 'NO'}")
            if args.profile and threads == args.threads[0]:
                print_profiles(*vae_pair(size, shape)[:2], repeats=1)
            if args.fp64 and threads == args.threads[0]:
                mine, ref = float64_errors(size, shape)
                print(f"  against a float64 run of diffusers' model: ours {mine:.2e}, diffusers {ref:.2e}")


if __name__ == "__main__":
    main()
