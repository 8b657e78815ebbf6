"""End-to-end generation time: ours (`ltxlab generate`'s pipeline) vs diffusers' `LTXPipeline`.

    python benchmarks/generate_speed.py [--sizes tiny small] [--steps 8] [--repeats 7] [--threads 1 2]
    python benchmarks/generate_speed.py --meta      # 121x512x768 at full size: shapes, FLOPs, FLOP-bound time
    python benchmarks/generate_speed.py --cuda      # on a GPU: full size, 20 steps, CFG 3, bf16

CPU mode. Both pipelines are built from the same random weights: a diffusers
`LTXVideoTransformer3DModel` and `AutoencoderKLLTXVideo` (random latent statistics too),
converted into ours with `models/dit/convert.py` and `models/vae/convert.py`; the
scheduler is `FlowMatchEulerDiscreteScheduler` with our `flow_config(size)` shift line
(the same sigmas, tests/test_flow.py). Same steps, CFG scale, shape, caption embeddings
(random, fixed: no text encoder on either side, so text time is ~0 for both), the same
initial noise (drawn from one generator, which then draws the decode noise on both
sides), the same decode timestep and noise scale. Outputs are checked first: the videos
agree within 1/255 (uint8 rounding). Then the two run back to back, alternating who goes
first, `--repeats` times per thread count; printed: the median paired ratio with its
quartiles and min-max, the load average, ours' phase split, and a PASS/UNCLEAR/MISS line
against TARGET from the 95% intervals of the wall and CPU-time median ratios
(`_paired.Paired.verdict`). `--max-repeats` adds pairs until the ratios'
quartile interval is `--tight` wide.

--meta. The full LTX-Video config (DiT `full`, 28 layers x 2048 = 1.92B parameters; VAE
0.9.1) on the meta device: token count, FLOPs per DiT forward, for 20 steps with CFG
(40 forwards) plus the decode, and the FLOP-bound time at 800 TFLOP/s bf16.

--cuda. The same full config with random weights on the GPU in bf16 (SDPA cuDNN / flash /
memory-efficient, `--compile` for regional torch.compile), 121x512x768, 20 steps, CFG 3:
wall, text / per-step / decode, peak memory, MFU against 989 TFLOP/s (H100 dense bf16)
and the ratio to the FLOP-bound time and the paper's 2 s. The text phase encodes nothing
(fixed random T5-width embeddings): T5-XXL is not part of the timed model.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _paired import Paired, add_repeat_options, load_average, paired  # noqa: E402

FULL_SHAPE = (121, 512, 768)
FLOP_BOUND_TFLOPS = 800.0  # the bf16 throughput for the FLOP-bound time
H100_PEAK_TFLOPS = 989.0  # dense bf16, for MFU
PAPER_S = 2.0  # LTX-Video: 121x768x512, 20 steps, about 2 s on one H100
TARGET = 0.85  # issue 16: our end-to-end generation takes at most 0.85 of LTXPipeline's time on CPU
SIZES = {  # size: (DiT heads, head dim, layers, caption channels, text tokens, shape)
    "tiny": (4, 16, 2, 384, 16, (17, 64, 64)),
    "small": (8, 64, 8, 384, 32, (17, 128, 128)),
    "full": (32, 64, 28, 4096, 128, FULL_SHAPE),
}


class FixedText:
    """A text encoder stand-in returning fixed caption and null-caption embeddings (both pipelines get these)."""

    def __init__(self, text: torch.Tensor, mask: torch.Tensor, null: torch.Tensor, null_mask: torch.Tensor) -> None:
        self.text, self.mask, self.null_text, self.null_mask = text, mask, null, null_mask

    def encode(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """The null caption for [""] (as models.text.TextEncoder.null encodes it), else the caption."""
        return (self.null_text, self.null_mask) if list(captions) == [""] else (self.text, self.mask)

    def null(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.null_text, self.null_mask


def fixed_text(tokens: int, caption: int, device: str | torch.device) -> FixedText:
    """The benchmark's caption and null-caption embeddings (seeded), half of the caption's tokens masked."""
    g = torch.Generator().manual_seed(1)
    text, null = torch.randn(1, tokens, caption, generator=g), torch.randn(1, tokens, caption, generator=g)
    mask, null_mask = torch.ones(1, tokens, dtype=torch.bool), torch.zeros(1, tokens, dtype=torch.bool)
    mask[:, tokens // 2 :] = False
    null_mask[:, :2] = True
    return FixedText(text.to(device), mask.to(device), null.to(device), null_mask.to(device))


def build(size: str, device: str = "cpu", dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """Diffusers' pipeline and ours from the same random weights, and the shared inputs."""
    from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXPipeline, LTXVideoTransformer3DModel

    from ablations.stages.train_dit import TrainedDiT
    from models.dit.convert import config_from_diffusers, convert_diffusers_ltx
    from models.flow import flow_config
    from models.vae import vae_config
    from models.vae.convert import from_diffusers_state_dict, to_diffusers_config

    heads, head_dim, layers, caption, tokens, shape = SIZES[size]
    torch.manual_seed(0)
    transformer = LTXVideoTransformer3DModel(in_channels=128, out_channels=128, num_attention_heads=heads,
                                             attention_head_dim=head_dim, num_layers=layers,
                                             cross_attention_dim=heads * head_dim, caption_channels=caption)
    vae_cfg = vae_config("ltx", "0.9.1" if size == "full" else size)
    vae = AutoencoderKLLTXVideo(**to_diffusers_config(vae_cfg))
    vae.latents_mean.normal_(0, 0.2)
    vae.latents_std.uniform_(0.5, 1.5)
    flow = flow_config("full" if size == "full" else size)
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=flow.shift_min, max_shift=flow.shift_max,
                                                base_image_seq_len=flow.shift_min_tokens, max_image_seq_len=flow.shift_max_tokens,
                                                shift_terminal=flow.shift_terminal)
    ours_dit = config_from_diffusers(transformer.config).build()
    ours_dit.load_state_dict(convert_diffusers_ltx(transformer.state_dict()))
    ours_vae = vae_cfg.build()
    ours_vae.load_state_dict(from_diffusers_state_dict(vae.state_dict()))
    transformer, vae = transformer.to(device).eval(), vae.to(device).eval()
    if dtype != torch.float32:  # (a cast of fp32 modules makes diffusers warn even when it is a no-op)
        transformer, vae = transformer.to(dtype), vae.to(dtype)
    pipe = LTXPipeline(scheduler=scheduler, vae=vae, text_encoder=None, tokenizer=None, transformer=transformer)
    pipe.set_progress_bar_config(disable=True)
    dit = TrainedDiT(model=ours_dit.eval(), flow=flow, text=None, vae_dir=Path("."), latent_shape=(128, 1, 1, 1),
                     video_shape=shape, fps=24.0)
    return {"pipe": pipe, "dit": dit, "vae": ours_vae.eval(), "flow": flow, "shape": shape,
            "text": fixed_text(tokens, caption, device)}


def build_ours(size: str, device: torch.device) -> dict[str, Any]:
    """Ours alone, with random weights made on `device` (no diffusers; `--cuda` needs nothing else
    on a GPU machine, and a 1.92B DiT is not first built on the host)."""
    from ablations.stages.train_dit import TrainedDiT
    from models.dit import dit_config
    from models.flow import flow_config
    from models.vae import vae_config

    heads, head_dim, layers, caption, tokens, shape = SIZES[size]
    torch.manual_seed(0)
    with torch.device(device):
        model = dataclasses.replace(dit_config("ltx", "full"), num_heads=heads, head_dim=head_dim, num_layers=layers,
                                    caption_channels=caption).build()
        vae = vae_config("ltx", "0.9.1" if size == "full" else size).build()
        vae.latents_mean.normal_(0, 0.2)  # per-channel latent statistics, as a trained VAE has
        vae.latents_std.uniform_(0.5, 1.5)
    flow = flow_config("full" if size == "full" else size)
    dit = TrainedDiT(model=model.eval(), flow=flow, text=None, vae_dir=Path("."), latent_shape=(128, 1, 1, 1),
                     video_shape=shape, fps=24.0)
    return {"dit": dit, "vae": vae.eval(), "flow": flow, "shape": shape, "text": fixed_text(tokens, caption, device)}


def run_ours(parts: dict[str, Any], steps: int, scale: float, seed: int, **kw: Any):  # type: ignore[no-untyped-def]
    from ablations.stages.speed import timed_generate

    return timed_generate(parts["dit"], parts["vae"], parts["text"], "the benchmark caption", parts["shape"], steps=steps,
                          guidance_scale=scale, seed=seed, **kw)


def run_theirs(parts: dict[str, Any], steps: int, scale: float, seed: int) -> np.ndarray:
    """Diffusers' pipeline on the same embeddings, initial noise and decode-noise stream -> uint8 (T, H, W, 3)."""
    from models.dit.patch import latent_shape_of

    pipe, text, flow, (frames, height, width) = parts["pipe"], parts["text"], parts["flow"], parts["shape"]
    latent = latent_shape_of(frames, height, width, temporal_compression=8, spatial_compression=32)
    device = pipe.transformer.device
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(1, 128, *latent, generator=generator)  # ours draws the same, first, from the same seed
    packed = noise.flatten(2).transpose(1, 2).to(device)  # (1, N, C), diffusers' packing of a 1x1x1 patch
    video = pipe(prompt_embeds=text.text, prompt_attention_mask=text.mask, negative_prompt_embeds=text.null_text,
                 negative_prompt_attention_mask=text.null_mask, height=height, width=width, num_frames=frames,
                 frame_rate=24, num_inference_steps=steps, guidance_scale=scale, generator=generator, latents=packed,
                 decode_timestep=flow.decode_timestep, decode_noise_scale=flow.decode_noise_scale,
                 output_type="pt", return_dict=False)[0]  # (1, T, 3, H, W) in [0, 1]
    return (video[0].permute(0, 2, 3, 1).float().cpu().numpy() * 255).round().astype(np.uint8)


def cpu_comparison(sizes: list[str], steps: int, scale: float, args: argparse.Namespace) -> None:
    for size in sizes:
        parts = build(size)
        with torch.no_grad():
            ours, timing = run_ours(parts, steps, scale, seed=3)
            theirs = run_theirs(parts, steps, scale, seed=3)
        diff = np.abs(ours.astype(int) - theirs.astype(int)).max()
        shape = "x".join(map(str, parts["shape"]))
        print(f"[{size}] {shape}, {steps} steps, CFG {scale:g}: max |ours - diffusers| = {diff} / 255 on the video")
        for n in args.threads:
            torch.set_num_threads(n)
            with torch.no_grad():
                result: Paired = paired(lambda: run_ours(parts, steps, scale, seed=3),
                                        lambda: run_theirs(parts, steps, scale, seed=3), args.repeats,
                                        max_repeats=args.max_repeats, tight=args.tight)
                _, split = run_ours(parts, steps, scale, seed=3)
            print(f"  {n} thread(s): {result.summary()} ({load_average()})")
            print(f"    ours' split: text {split.text_s * 1e3:.1f} ms, DiT {sum(split.step_s) * 1e3:.1f} ms "
                  f"({steps} steps), decode {split.decode_s * 1e3:.1f} ms")
            print(f"  {result.verdict(f'{size} generation, {n} thread(s)', TARGET)}; videos within 1/255: "
                  f"{'yes' if diff <= 1 else 'NO'}")


def meta_report(steps: int, scale: float) -> dict[str, float]:
    """Full-size shapes and FLOPs on the meta device, and the FLOP-bound time."""
    from evaluation.cost import dit_forwards, generation_flops
    from models.dit import describe_dit, dit_config
    from models.vae import vae_config

    dit_cfg, vae_cfg = dit_config("ltx", "full"), vae_config("ltx", "0.9.1")
    info = describe_dit(dit_cfg, *FULL_SHAPE, fps=24.0)
    flops = generation_flops(vae_cfg, dit_cfg, FULL_SHAPE, steps=steps, guidance_scale=scale, fps=24.0)
    bound = flops["total"] / (FLOP_BOUND_TFLOPS * 1e12)
    print(f"full size {'x'.join(map(str, FULL_SHAPE))} (meta device): DiT {info['params'] / 1e9:.2f}B parameters, "
          f"latent {info['latent_shape']}, {info['tokens']} tokens")
    print(f"  FLOPs per DiT forward (batch 1): {flops['dit_forward']:.3e}; {dit_forwards(steps, scale)} forwards "
          f"({steps} steps{', CFG' if scale != 1 else ''}): {flops['dit']:.3e}; VAE decode: {flops['decode']:.3e}; "
          f"total {flops['total']:.3e}")
    print(f"  FLOP-bound time at {FLOP_BOUND_TFLOPS:.0f} TFLOP/s: {bound:.3f} s (paper: about {PAPER_S:.0f} s on one H100; "
          f"target <= 1.5x the bound = {1.5 * bound:.3f} s)")
    return {"flops": float(flops["total"]), "bound_s": bound}


def cuda_report(steps: int, scale: float, repeats: int, compile_blocks: bool, decode_chunk: int,
                dry_run: bool = False) -> None:
    """Full size on the GPU, bf16: wall, phases, peak memory, MFU (needs a CUDA GPU). `dry_run`
    takes the same path at `tiny` size on the CPU, to check a device script before device time."""
    from ablations.stages.speed import prepare

    if not dry_run and not torch.cuda.is_available():
        raise SystemExit("--cuda needs a CUDA GPU; none here, so the GPU figure is missing (run --meta for the FLOP bound, "
                         "--cuda --dry-run to check this path on the CPU).")
    meta = meta_report(steps, scale)
    device = torch.device("cpu" if dry_run else "cuda")
    parts = build_ours("tiny" if dry_run else "full", device)
    prepare(parts["dit"], parts["vae"], device, torch.bfloat16, compile_blocks=compile_blocks)
    with torch.no_grad():
        run_ours(parts, steps, scale, seed=0, decode_chunk=decode_chunk)  # warm-up (and compile)
        timings = [run_ours(parts, steps, scale, seed=0, decode_chunk=decode_chunk)[1] for _ in range(repeats)]
    wall = statistics.median(t.wall_s for t in timings)
    if dry_run:
        print(f"dry run (tiny, CPU, bf16): wall median {wall:.3f} s; the GPU figure is missing")
        return
    print(f"ours on {torch.cuda.get_device_name()} (bf16{', compiled blocks' if compile_blocks else ''}), "
          f"{repeats} repeats: wall median {wall:.3f} s [min {min(t.wall_s for t in timings):.3f}, "
          f"max {max(t.wall_s for t in timings):.3f}]")
    best = min(timings, key=lambda t: abs(t.wall_s - wall))
    for line in best.lines():
        print(f"  {line}")
    print(f"  MFU {meta['flops'] / wall / (H100_PEAK_TFLOPS * 1e12):.1%} of {H100_PEAK_TFLOPS:.0f} TFLOP/s; "
          f"{wall / meta['bound_s']:.2f}x the FLOP-bound time (target <= 1.5x); {wall / PAPER_S:.2f}x the paper's 2 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["tiny", "small"], choices=["tiny", "small"])
    parser.add_argument("--steps", type=int, default=None, help="Euler steps (default: 8 on CPU, 20 for --meta/--cuda)")
    parser.add_argument("--cfg", type=float, default=3.0, help="guidance scale")
    add_repeat_options(parser, default=7)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--meta", action="store_true", help="full size on the meta device: FLOPs and the FLOP-bound time")
    parser.add_argument("--cuda", action="store_true", help="full size on the GPU in bf16 (needs CUDA)")
    parser.add_argument("--compile", action="store_true", help="--cuda: torch.compile each DiT block")
    parser.add_argument("--dry-run", action="store_true", help="--cuda: the same path at tiny size on the CPU")
    parser.add_argument("--decode-chunk", type=int, default=0, help="--cuda: latent frames per decode chunk (0: whole)")
    args = parser.parse_args()
    print(f"torch {torch.__version__} ({load_average()})")
    if args.meta:
        meta_report(args.steps or 20, args.cfg)
    elif args.cuda:
        cuda_report(args.steps or 20, args.cfg, min(args.repeats, 5), args.compile, args.decode_chunk, args.dry_run)
    else:
        cpu_comparison(args.sizes, args.steps or 8, args.cfg, args)


if __name__ == "__main__":
    main()
