"""VAE speed: tiny `ltx` frames/s on CPU, and our forward time relative to diffusers'.

    python benchmarks/vae_speed.py                      # both figures, defaults below
    python benchmarks/vae_speed.py --sizes tiny small --shape 17x128x128 --repeats 7

The ratio compares our `ltx` VAE with diffusers' `AutoencoderKLLTXVideo` at the same
config with the same weights (converted by `models/vae/convert.py`), in one process,
alternating which model goes first; it prints the median time of each and the median
of the back-to-back ratios (< 1 means ours is faster). Timings are no-grad fp32 encode + decode of the mean, with a
decode timestep, as a reconstruction pass at evaluation time runs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


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


def ratio_vs_diffusers(size: str, shape: tuple[int, int, int], repeats: int) -> tuple[float, float, float]:
    """(our median s, diffusers' median s, median of paired ours / theirs) for one encode + decode."""
    from diffusers import AutoencoderKLLTXVideo

    from models.vae import vae_config
    from models.vae.convert import from_diffusers_state_dict, to_diffusers_config

    cfg = vae_config("ltx", size)
    torch.manual_seed(0)
    theirs = AutoencoderKLLTXVideo(**to_diffusers_config(cfg)).eval()
    ours = cfg.build().eval()
    ours.load_state_dict(from_diffusers_state_dict(theirs.state_dict()))
    video = torch.rand(1, 3, *shape) * 2 - 1
    timestep = torch.tensor([0.05])

    def run_ours() -> torch.Tensor:
        torch.manual_seed(1)
        return ours(video, sample_posterior=False, timestep=timestep)[0]

    def run_theirs() -> torch.Tensor:
        torch.manual_seed(1)
        return theirs(video, temb=timestep).sample

    with torch.no_grad():
        diff = (run_ours() - run_theirs()).abs().max().item()  # also the warm-up
        ours_s, theirs_s = [], []
        for i in range(repeats):
            order = [(run_ours, ours_s), (run_theirs, theirs_s)]
            for fn, sink in order if i % 2 == 0 else order[::-1]:
                sink.append(timed(fn))
    print(f"  [{size}] max |ours - diffusers| on the reconstruction: {diff:.2e}")
    # the ratio is the median of back-to-back pairs: on a shared machine, load drifts
    # between pairs far more than within one
    ratio = statistics.median(a / b for a, b in zip(ours_s, theirs_s))
    return statistics.median(ours_s), statistics.median(theirs_s), ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["tiny", "small"], help="ltx presets for the diffusers ratio")
    parser.add_argument("--shape", default="17x128x128", help="FRAMESxHEIGHTxWIDTH")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per model (median reported)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    shape = parse_shape(args.shape)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32, no grad, batch 1, shape {args.shape}")
    fps = frames_per_second("tiny", shape, args.repeats)
    print(f"tiny ltx encode+decode throughput (CPU): {fps:.1f} frames/s")
    for size in args.sizes:
        ours_s, theirs_s, ratio = ratio_vs_diffusers(size, shape, args.repeats)
        print(f"{size} ltx forward time, ours: {ours_s * 1e3:.1f} ms, diffusers: {theirs_s * 1e3:.1f} ms, "
              f"median paired ratio ours/diffusers: {ratio:.3f}")


if __name__ == "__main__":
    main()
