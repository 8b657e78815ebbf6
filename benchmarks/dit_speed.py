"""DiT speed: tiny training steps/s, and our forward time vs diffusers' at identical weights.

    python benchmarks/dit_speed.py [--device cpu|cuda] [--repeats 30] [--max-repeats 80] [--threads 1 2] [--configs small] [--profile]
    python benchmarks/dit_speed.py --kernels [--threads 1 2]

1. Training: `dit_config("ltx", "tiny")`, batch 4, latents (4, 128, 5, 4, 4) (a 33x128x128
   video, 80 tokens), 16 MiniLM-width text tokens, `flow_matching_loss` + AdamW step.
2. Forward ratio: for each config below, a diffusers `LTXVideoTransformer3DModel` with
   random weights and our `LTXDiT` with the converted weights, same inputs; the two
   forwards run back to back, alternating who goes first, at each thread count of
   `--threads`; printed: the median of the paired ratios with quartiles and min-max
   (< 1.0: ours is faster), and the load average (the machine is shared). Outputs are
   checked equal first, then a PASS/UNCLEAR/MISS line against TARGET from the 95% intervals of
   the wall and CPU-time median ratios (`_paired.Paired.verdict`). `--max-repeats` adds pairs
   until the ratios' quartile interval is `--tight` wide. `--profile` adds the top aten ops of each side per forward; `--fp64` each side's max
   error against diffusers' model run in float64.
3. `--kernels`: GFLOP/s of one projection at the `small` DiT's shapes through each CPU route
   `models.layers.WorkspaceLinear` can take (addmm, MKL's packed sgemm, oneDNN's reordered
   linear), median of 30 calls each, and oneDNN's max difference from addmm: what
   `models.layers.cpu_linear_backend`'s choice rests on, for the machine at hand.
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
from _paired import Paired, add_repeat_options, load_average, paired, print_profiles, timed  # noqa: E402

from models.dit import dit_config
from models.dit.convert import config_from_diffusers, convert_diffusers_ltx
from models.flow import flow_config, flow_matching_loss

TARGET = 0.9  # issue 16: our forward takes at most 0.9 of diffusers' time (at `small`)
RATIO_CONFIGS = {
    # name: (diffusers kwargs, latent (C, T, H, W), text tokens)
    "tiny (2L, 4x16)": (dict(num_attention_heads=4, attention_head_dim=16, num_layers=2), (128, 5, 4, 4), 16),
    "small (8L, 8x64)": (dict(num_attention_heads=8, attention_head_dim=64, num_layers=8), (128, 5, 8, 8), 32),
}


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def train_steps_per_second(device: str, reps: int) -> float:
    cfg = dit_config("ltx", "tiny")
    torch.manual_seed(0)
    model = cfg.build().to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator(device=device).manual_seed(0)
    x0 = torch.randn(4, 128, 5, 4, 4, device=device)
    text = torch.randn(4, cfg.max_text_tokens, cfg.caption_channels, device=device)
    mask = torch.ones(4, cfg.max_text_tokens, dtype=torch.bool, device=device)
    flow = flow_config("tiny")
    times = []
    for i in range(reps + 5):
        sync(device)
        start = time.perf_counter()
        loss, _ = flow_matching_loss(model, x0, text, mask, 24.0, flow, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync(device)
        if i >= 5:
            times.append(time.perf_counter() - start)
    return 1.0 / statistics.median(times)


def forward_models(name: str, device: str):  # type: ignore[no-untyped-def]
    """(ours, diffusers', our inputs, diffusers' packed latents, diffusers' grid) for one RATIO_CONFIGS entry,
    the same weights (diffusers' converted into ours)."""
    from diffusers import LTXVideoTransformer3DModel

    kwargs, (c, t, h, w), text_tokens = RATIO_CONFIGS[name]
    hidden = kwargs["num_attention_heads"] * kwargs["attention_head_dim"]
    torch.manual_seed(0)
    ref = LTXVideoTransformer3DModel(in_channels=c, out_channels=c, cross_attention_dim=hidden, caption_channels=384, **kwargs)
    ref = ref.to(device).eval()
    ours = config_from_diffusers(ref.config).build().to(device).eval()
    ours.load_state_dict(convert_diffusers_ltx(ref.state_dict()))
    latents = torch.randn(2, c, t, h, w, device=device)
    text = torch.randn(2, text_tokens, 384, device=device)
    mask = torch.ones(2, text_tokens, dtype=torch.bool, device=device)
    mask[0, text_tokens // 2 :] = False
    timestep = torch.tensor([0.3, 0.8], device=device)
    packed = latents.flatten(2).transpose(1, 2)  # (B, N, C) for diffusers
    return ours, ref, (latents, timestep, text, mask), packed, (t, h, w)


def diffusers_forward(ref, packed, inputs, grid):  # type: ignore[no-untyped-def]
    _, timestep, text, mask = inputs
    return ref(packed, text, timestep * 1000, mask.long(), *grid, (8 / 24.0, 32, 32), return_dict=False)[0]


def forward_pair(name: str, device: str):  # type: ignore[no-untyped-def]
    """(our forward, diffusers' forward, max |difference|) for one RATIO_CONFIGS entry, same weights and inputs."""
    ours, ref, inputs, packed, grid = forward_models(name, device)

    @torch.no_grad()
    def run_ours():
        return ours(*inputs, 24.0)

    @torch.no_grad()
    def run_ref():
        return diffusers_forward(ref, packed, inputs, grid)

    diff = (run_ours().flatten(2).transpose(1, 2) - run_ref()).abs().max().item()
    return run_ours, run_ref, diff


@torch.no_grad()
def float64_errors(name: str, device: str) -> tuple[float, float]:
    """Max |ours - exact| and max |diffusers - exact|, exact being diffusers' model run in float64."""
    ours, ref, inputs, packed, grid = forward_models(name, device)
    mine = ours(*inputs, 24.0).flatten(2).transpose(1, 2).double()
    theirs = diffusers_forward(ref, packed, inputs, grid).double()
    exact_inputs = tuple(x.double() if x.is_floating_point() else x for x in inputs)
    exact = diffusers_forward(copy.deepcopy(ref).double(), packed.double(), exact_inputs, grid)
    return (mine - exact).abs().max().item(), (theirs - exact).abs().max().item()


def forward_ratio(name: str, device: str, args: argparse.Namespace) -> tuple[Paired, float]:
    run_ours, run_ref, diff = forward_pair(name, device)
    return paired(run_ours, run_ref, args.repeats, warmup=3, device=device, max_repeats=args.max_repeats,
                  tight=args.tight), diff


KERNEL_SHAPES = [(96, 512, 1536), (96, 2048, 512), (640, 512, 2048), (640, 2048, 512)]  # rows, in, out


def linear_kernels(threads: list[int]) -> None:
    """Per projection shape and thread count: GFLOP/s of addmm, MKL packed sgemm and oneDNN's linear."""
    from models.layers import cpu_linear_backend, mkl_packed_linear_available, onednn_linear_available

    def median_s(fn) -> float:  # type: ignore[no-untyped-def]
        for _ in range(3):
            fn()
        return statistics.median(timed(fn)[0] for _ in range(30))

    print(f"projection kernels (CPU capability {torch.backends.cpu.get_cpu_capability()}; "
          f"models.layers.cpu_linear_backend() = {cpu_linear_backend()}):")
    torch.manual_seed(0)
    for n in threads:
        torch.set_num_threads(n)
        for rows, k, out in KERNEL_SHAPES:
            x, w, b = torch.randn(rows, k), torch.randn(out, k) / k**0.5, torch.randn(out)
            routes = {"addmm": lambda: torch.addmm(b, x, w.t())}
            if mkl_packed_linear_available():
                mkl = torch.ops.mkl._mkl_reorder_linear_weight(w, rows)
                routes["MKL packed"] = lambda: torch.ops.mkl._mkl_linear(x, mkl, w, b, rows)
            if onednn_linear_available():
                dnn = torch.ops.mkldnn._reorder_linear_weight(w, None)
                routes["oneDNN"] = lambda: torch.ops.mkldnn._linear_pointwise(x, dnn, b, "none", [], "")
            flops = 2 * rows * k * out
            rates = ", ".join(f"{name} {flops / median_s(fn) / 1e9:.0f}" for name, fn in routes.items())
            diff = (routes["oneDNN"]() - routes["addmm"]()).abs().max().item() if "oneDNN" in routes else float("nan")
            print(f"  {n} thread(s), {rows} x {k} -> {out}: {rates} GFLOP/s; |oneDNN - addmm| {diff:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add_repeat_options(parser, default=30)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch CPU thread counts to measure at")
    parser.add_argument("--configs", nargs="+", default=["tiny", "small"], help="RATIO_CONFIGS names (their first word)")
    parser.add_argument("--no-train", action="store_true", help="skip the training steps/s figure")
    parser.add_argument("--profile", action="store_true", help="print the top aten ops of each side per forward")
    parser.add_argument("--fp64", action="store_true", help="also print each side's error against a float64 run")
    parser.add_argument("--kernels", action="store_true", help="only the projection kernels' GFLOP/s at the small shapes")
    args = parser.parse_args()
    if args.kernels:
        linear_kernels(args.threads)
        return
    names = [n for n in RATIO_CONFIGS if n.split()[0] in args.configs]
    print(f"device={args.device} torch={torch.__version__} repeats={args.repeats} ({load_average()})")
    if not args.no_train:
        sps = train_steps_per_second(args.device, args.repeats)
        print(f"tiny DiT training (ltx pairing, batch 4, latents 128x5x4x4 = 80 tokens, 16 text tokens): {sps:.1f} steps/s")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name in names:
            result, diff = forward_ratio(name, args.device, args)
            print(f"forward {name}, {threads} thread(s): {result.summary()} (max |diff| {diff:.1e}; {load_average()})")
            print(f"  {result.verdict(f'{name.split()[0]} DiT forward, {threads} thread(s)', TARGET)}")
            if args.profile and threads == args.threads[0]:
                print_profiles(*forward_pair(name, args.device)[:2])
            if args.fp64 and threads == args.threads[0]:
                mine, theirs = float64_errors(name, args.device)
                print(f"  against a float64 run of diffusers' model: ours {mine:.2e}, diffusers {theirs:.2e}")


if __name__ == "__main__":
    main()
