"""Acceptance figure: does a `tiny` text-to-video model trained on synthetic scenes on this
CPU generate the colour its caption names more often than chance?

Pipeline (every phase is resumable / cached in --work):
1. train a tiny VAE on synthetic scenes (`train_vae`; its wall time is reported separately);
2. the ceiling: oracle accuracy on the VAE's reconstructions of the held-out scenes (a
   generator cannot be read better than its decoder draws);
3. encode the training scenes (`encode_latents`);
4. per text conditioning (cross_attention, mmdit): `train_dit`, sample the held-out
   prompts (t2v and i2v), score them with `eval_gen` (oracle accuracies with 95% Wilson
   intervals vs chance, first-frame PSNR, flicker).

Run: python benchmarks/t2v_alignment.py --work /tmp/t2v_bench/run  (prints a JSON summary)
Threads are fixed with torch.set_num_threads; the machine is shared, so wall times are noisy.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, default=Path("/tmp/t2v_alignment"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--vae-kind", default="conventional")
    p.add_argument("--vae-dir", type=Path, default=None, help="use an already trained VAE folder")
    p.add_argument("--vae-steps", type=int, default=600)
    p.add_argument("--vae-batch", type=int, default=8)
    p.add_argument("--vae-lr", type=float, default=3e-4, help="2e-3 (VAETrainConfig's default) stalls at the mean colour")
    p.add_argument("--vae-scenes", type=int, default=256)
    p.add_argument("--frames", type=int, default=9)
    p.add_argument("--side", type=int, default=32, help="height = width in pixels")
    p.add_argument("--train-scenes", type=int, default=1024)
    p.add_argument("--heldout", type=int, default=96)
    p.add_argument("--dit-steps", type=int, default=1500)
    p.add_argument("--dit-batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--caption-dropout", type=float, default=0.1)
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--sample-steps", type=int, default=20)
    p.add_argument("--conditionings", nargs="+", default=["cross_attention", "mmdit"])
    p.add_argument("--skip-dit", action="store_true", help="stop after the VAE ceiling")
    return p.parse_args()


def oracle_accuracy(videos: list[np.ndarray], metas: list[dict]) -> dict[str, list[float]]:
    """{attribute: [accuracy, ci_low, ci_high]} of the oracle on uint8 videos vs scene truth."""
    from clips.synthetic import oracle
    from evaluation.generation import wilson_interval

    readings = [oracle(v) for v in videos]
    out = {}
    for key in ("color", "shape", "direction"):
        hits = sum(r[key] == m[key] for r, m in zip(readings, metas))
        out[key] = [hits / len(metas), *wilson_interval(hits, len(metas))]
    return out


def unheld_psnr(samples: Path, images: list[np.ndarray]) -> float:
    """Mean PSNR of t2v first frames against the i2v conditioning image of the same prompt: the
    first-frame fidelity when nothing is held (the comparison for i2v.first_frame_psnr)."""
    from ablations.stages.sample import read_index
    from clips.io import read_video
    from evaluation.generation import psnr

    values = [psnr(images[int(r["prompt_id"][1:])], read_video(samples / r["file"])[0][0])
              for r in read_index(samples) if r["task"] == "t2v"]
    return float(np.mean(values))


def _colour_features(video: np.ndarray) -> np.ndarray:
    """uint8 (T, H, W, 3) -> (15,): mean RGB, RGB std, and the mean RGB of the 3 horizontal thirds."""
    x = video.astype(np.float64) / 255.0
    thirds = [part.mean(axis=(0, 1, 2)) for part in np.array_split(x, 3, axis=1)]
    return np.concatenate([x.mean(axis=(0, 1, 2)), x.std(axis=(0, 1, 2)), *thirds])


def photo_accuracy(samples: Path, spec, train_clips) -> dict[str, list[float]]:
    """A second, coarser text-alignment read: does the generated background show the photo the
    caption names? Nearest-centroid classifier over colour features, centroids from the real
    training scenes of each photo (chance 1/len(photos)); reported per task with a Wilson CI."""
    from ablations.stages.sample import read_index
    from clips.io import read_video
    from evaluation.generation import wilson_interval

    photos = sorted({c.meta["photo"] for c in train_clips})
    centroids = np.stack([np.mean([_colour_features(c.frames) for c in train_clips if c.meta["photo"] == p], axis=0)
                          for p in photos])  # (P, 15)
    from clips.synthetic import PHOTOS

    phrase_to_photo = {PHOTOS[p]: p for p in photos}
    out: dict[str, list[float]] = {}
    for task in ("t2v", "i2v"):
        hits = n = 0
        for r in read_index(samples):
            if r["task"] != task:
                continue
            truth = phrase_to_photo.get(r["text"].split(" over a photo of ")[-1])
            feats = _colour_features(read_video(samples / r["file"])[0])
            guess = photos[int(np.argmin(((centroids - feats) ** 2).sum(axis=1)))]
            hits, n = hits + (guess == truth), n + 1
        out[task] = [hits / max(n, 1), *wilson_interval(hits, n), 1 / len(photos)]
    return out


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    from ablations.stages.encode_latents import encode_latents
    from ablations.stages.eval_gen import eval_gen
    from ablations.stages.eval_recon import reconstruct
    from ablations.stages.sample import SampleConfig, heldout_prompts, sample_videos
    from ablations.stages.train_dit import DiTTrainConfig, train_dit
    from ablations.stages.train_vae import VAETrainConfig, load_vae, train_vae
    from clips.dataset import DataSpec, load_clips
    from clips.io import from_model, to_model
    from models.dit import dit_config
    from models.flow import flow_config
    from models.losses.base import VAELossConfig
    from models.text import TextEncoderConfig
    from models.vae import vae_config

    work = args.work
    results: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "threads": torch.get_num_threads()}
    spec = DataSpec(source="synthetic", frames=args.frames, height=args.side, width=args.side,
                    num_scenes=args.train_scenes, num_heldout_scenes=args.heldout, seed=0)

    # 1. VAE
    vae_dir = args.vae_dir or work / f"vae_{args.vae_kind}"
    if not (vae_dir / "vae.pt").exists():
        vae_spec = DataSpec(source="synthetic", frames=args.frames, height=args.side, width=args.side,
                            num_scenes=args.vae_scenes, seed=0)
        videos = torch.stack([to_model(c.frames) for c in load_clips(vae_spec, "train")])
        summary = train_vae(vae_config(args.vae_kind, "tiny"), VAELossConfig(mse=1.0),
                            VAETrainConfig(steps=args.vae_steps, batch_size=args.vae_batch, lr=args.vae_lr, checkpoint_every=25),
                            videos, vae_dir, progress=False)
        results["vae_train"] = summary
    vae = load_vae(vae_dir, torch.device("cpu"))
    results["vae_dir"] = str(vae_dir)

    # 2. ceiling: the oracle on reconstructions of the held-out scenes
    held = load_clips(spec, "heldout")
    real = [c.frames for c in held]
    with torch.no_grad():
        recon = [from_model(reconstruct(vae, to_model(c.frames)[None])[0]) for c in held]
    metas = [c.meta for c in held]
    results["oracle_on_real_heldout"] = oracle_accuracy(real, metas)
    results["oracle_on_vae_recon_heldout"] = oracle_accuracy(recon, metas)
    results["vae_recon_mse"] = float(np.mean([(r.astype(float) - c.astype(float)) ** 2 for r, c in zip(recon, real)]) / 255**2)
    print(json.dumps({k: results[k] for k in ("oracle_on_real_heldout", "oracle_on_vae_recon_heldout", "vae_recon_mse")}),
          flush=True)
    if args.skip_dit:
        print(json.dumps(results, indent=2))
        return

    # 3. latents
    text = TextEncoderConfig(max_length=16)
    started = time.perf_counter()
    latents_dir = work / f"latents_{vae_dir.name}_{args.train_scenes}"
    encoded = encode_latents(vae_dir, spec, latents_dir, text_cfg=text)
    results["encode"] = {**encoded, "wall_time_s_this_run": time.perf_counter() - started}

    # 4. DiT per conditioning
    prompts, images = heldout_prompts(spec)
    train_clips = load_clips(spec, "train")
    flow = flow_config("tiny", caption_dropout=args.caption_dropout)
    for conditioning in args.conditionings:
        out = work / f"dit_{conditioning}_{vae_dir.name}_{args.dit_steps}"
        dit = dit_config(vae.cfg.kind, "tiny", text_conditioning=conditioning)
        train = DiTTrainConfig(steps=args.dit_steps, batch_size=args.dit_batch, lr=args.lr, warmup_steps=50,
                               checkpoint_every=250)
        t0 = time.perf_counter()
        summary = train_dit(dit, flow, text, train, latents_dir, out, progress=False,
                            on_step=lambda s, n, l: print(f"  {conditioning} step {s}/{n} loss {l['loss']:.4f}", flush=True)
                            if s % 250 == 0 else None)
        train_wall = time.perf_counter() - t0
        t0 = time.perf_counter()
        samples = out / "samples"
        sample_videos(vae_dir, out, prompts, samples, images=images,
                      cfg=SampleConfig(steps=args.sample_steps, guidance_scale=args.guidance), progress=False)
        sample_wall = time.perf_counter() - t0
        _, gen = eval_gen(samples)
        results[conditioning] = {"train": summary, "train_wall_s_this_run": train_wall, "sample_wall_s": sample_wall,
                                 "metrics": gen, "t2v_first_frame_psnr_unheld": unheld_psnr(samples, images),
                                 "photo_accuracy_ci_chance": photo_accuracy(samples, spec, train_clips)}
        print(json.dumps({conditioning: results[conditioning]}, indent=2), flush=True)
    (work / "results.json").write_text(json.dumps(results, indent=2, default=str))
    print(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
