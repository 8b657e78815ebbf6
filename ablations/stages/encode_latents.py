"""The `encode_latents` stage: encode a DataSpec's training clips once per VAE, in shards.

The DiT never sees pixels during training: each clip's posterior mean is encoded once,
standardised with the VAE's per-channel latent statistics (`normalize_latents`, as
LTX-Video's trainer does with `latents_mean` / `latents_std`), and saved with everything
the DiT stage needs (captions, clip ids, fps, the first frames for image-to-video) and
the captions' text embeddings. A folder with a `DONE` marker is reused as is.

Latents are written in shards of at most `shard_size` consecutive clips of one shape (a
new shard starts where the clips' bucket changes), so a dataset of any size is encoded
and read a shard at a time, and a killed encode keeps what it finished:
- each shard is `shards/shard-KKKKK.safetensors` (`models.tensor_file`: no pickle), written
  under a temporary name and renamed, then its record `shards/shard-KKKKK.json` (clip range
  and ids, captions, fps, shapes, size in bytes and sha256 of the shard file), also atomically;
- a rerun reuses a shard only if its record matches the planned clips and the file's size
  and sha256 match the record; a shard that fails is encoded again and the stage log says
  so (`shards_redone` in the summary); the rest is encoded from where it stopped;
- shard boundaries depend on the clips only, never on the worker count: rank r of W
  encodes the shards `shards.shard_slice(n_shards, r, W)` (`ablations/stages/sharded.py`),
  so one worker and N workers write the same shards.

Files written to `out_dir`:
- `shards/shard-KKKKK.safetensors`: tensors latents (n, Cz, t, h, w) float32 normalised, fps (n,),
  first_frames (n, H, W, 3) uint8; header {format, captions, clip_ids, video_shape (T, H, W), start, stop}
- `shards/shard-KKKKK.json` (the record) and `shards/index.json`: {format, clips, shard_size,
  shards [records], vae_dir, vae_kind, data_spec}, written by the merge after it verified
  every shard
- `text.safetensors`: `models.text.encode_to_file` of the captions; `null_text.safetensors` of "" (the CFG
  null caption, as diffusers' LTX pipeline encodes its default negative prompt)
- `summary.json`, then `DONE`.

`load_latents` opens the shards memory-mapped (`LatentShards`): training reads only the
rows of each step's batch. A folder in the older pickle format (`ltxlab-latents/1`, `.pt`
shards) is not reused: `encode_latents` encodes it again and says so.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ablations.stages.common import atomic_write_json, pick_device
from ablations.store import file_sha256  # noqa: F401  (one sha256 helper: the stage DONE records use it too)
from models import tensor_file

log = logging.getLogger(__name__)

SHARDS = "shards"  # the shard folder inside the stage folder
INDEX = "index.json"  # shards/index.json: every shard's record, written once all are verified
FORMAT = "ltxlab-latents/2"  # /1 wrote pickle (.pt) shards
SHARD_CLIPS = 256  # default clips per shard: ~1 GB of 17x64x64 frames decoded at most, 256 records to verify
SHARD_SUFFIX = ".safetensors"
TEXT = "text.safetensors"
NULL_TEXT = "null_text.safetensors"
DONE = "DONE"
SHARD_TENSORS = ("latents", "fps", "first_frames")  # a shard's tensors; its other fields go in the header


@torch.no_grad()
def encode_videos(vae: torch.nn.Module, videos: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
    """(N, 3, T, H, W) in [-1, 1] -> normalised posterior means (N, Cz, t, h, w), float32 on CPU."""
    device = next(vae.parameters()).device
    out = []
    for i in range(0, len(videos), batch_size):
        mean, _ = vae.encode(videos[i : i + batch_size].to(device))  # (b, Cz, t, h, w)
        out.append(vae.normalize_latents(mean.float()).cpu())
    return torch.cat(out)


def _encode_clips(vae: torch.nn.Module, clips: Sequence[Any], batch_size: int) -> dict[str, Any]:
    """The per-clip fields of a shard for `clips` (decoded `batch_size` at a time), in order.

    Nothing random: posterior means, so the latents do not depend on how the clips are split.
    """
    from clips.io import to_model

    latents, first_frames, meta = [], [], []
    for i in range(0, len(clips), batch_size):
        batch = [clips[j] for j in range(i, min(i + batch_size, len(clips)))]  # a lazy sequence decodes here
        videos = torch.stack([to_model(c.frames) for c in batch])  # (b, 3, T, H, W)
        latents.append(encode_videos(vae, videos, batch_size))
        first_frames += [c.frames[0] for c in batch]
        meta += [(c.caption or "", c.clip_id, c.fps) for c in batch]
    return {
        "latents": torch.cat(latents),
        "captions": [m[0] for m in meta],
        "clip_ids": [m[1] for m in meta],
        "fps": torch.tensor([m[2] for m in meta], dtype=torch.float64),
        "first_frames": torch.from_numpy(np.stack(first_frames)),  # (n, H, W, 3)
        "video_shape": tuple(videos.shape[2:]),
    }


# --------------------------------------------------------------------------- shard plan and records


def _clip_ids(clips: Sequence[Any], start: int, stop: int) -> list[str]:
    """The ids of clips [start, stop), without decoding a lazy (manifest) sequence."""
    part = clips[start:stop]
    return part.clip_ids() if hasattr(part, "clip_ids") else [c.clip_id for c in part]


def _shapes(clips: Sequence[Any]) -> list[tuple[int, ...]]:
    return list(clips.shapes()) if hasattr(clips, "shapes") else [tuple(c.frames.shape[:3]) for c in clips]


def shard_ranges(shapes: Sequence[tuple[int, ...]], shard_size: int) -> list[tuple[int, int]]:
    """(start, stop) of each shard: runs of consecutive clips of one shape, cut every `shard_size`."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be at least 1, got {shard_size}.")
    ranges, start = [], 0
    for i in range(1, len(shapes) + 1):
        if i == len(shapes) or shapes[i] != shapes[start] or i - start == shard_size:
            ranges.append((start, i))
            start = i
    return ranges


def shard_name(k: int) -> str:
    return f"shard-{k:05d}"


def check_shard(folder: Path, k: int, start: int, stop: int, clip_ids: Sequence[str]) -> tuple[dict | None, str | None]:
    """(record, None) when shard k is complete and intact for clips [start, stop) with these ids;
    (None, None) when it was never finished; (None, why) when it is there but corrupt or stale."""
    root = Path(folder) / SHARDS
    record_path, data_path = root / f"{shard_name(k)}.json", root / f"{shard_name(k)}{SHARD_SUFFIX}"
    if not record_path.exists():
        return None, None  # never finished (a shard file without its record is a write cut short)
    try:
        record = json.loads(record_path.read_text())
    except (OSError, json.JSONDecodeError):
        return None, f"its record {record_path.name} is not valid JSON"
    if (record.get("start"), record.get("stop"), record.get("clip_ids")) != (start, stop, list(clip_ids)):
        return None, "it holds other clips than the data spec now gives"
    if not data_path.exists():
        return None, f"{data_path.name} is missing"
    if data_path.stat().st_size != record.get("bytes"):
        return None, f"{data_path.name} is {data_path.stat().st_size} bytes, its record says {record.get('bytes')}"
    if file_sha256(data_path) != record.get("sha256"):
        return None, f"the sha256 of {data_path.name} differs from its record"
    return record, None


def _write_shard(folder: Path, k: int, start: int, stop: int, clips: Sequence[Any], vae: torch.nn.Module,
                 batch_size: int) -> dict[str, Any]:
    """Encode clips [start, stop) into shard k (the shard file, then its record; both atomic); its record."""
    blob = _encode_clips(vae, clips[start:stop], batch_size)
    root = Path(folder) / SHARDS
    data_path = root / f"{shard_name(k)}{SHARD_SUFFIX}"
    tensor_file.save(data_path, {name: blob[name] for name in SHARD_TENSORS},
                     {"format": FORMAT, "captions": blob["captions"], "clip_ids": blob["clip_ids"],
                      "video_shape": list(blob["video_shape"]), "start": start, "stop": stop})
    record = {"shard": k, "file": f"{SHARDS}/{data_path.name}", "start": start, "stop": stop, "clips": stop - start,
              "bytes": data_path.stat().st_size, "sha256": file_sha256(data_path), "clip_ids": blob["clip_ids"],
              "captions": blob["captions"], "fps": blob["fps"].tolist(),
              "latent_shape": list(blob["latents"].shape[1:]), "video_shape": list(blob["video_shape"])}
    atomic_write_json(root / f"{shard_name(k)}.json", record)
    return record


def _ensure_shard(folder: Path, k: int, start: int, stop: int, clips: Sequence[Any], vae_factory: Any,
                  batch_size: int) -> tuple[dict[str, Any], str]:
    """Shard k verified or (re)encoded: (record, "reused" | "encoded" | "redone")."""
    record, why = check_shard(folder, k, start, stop, _clip_ids(clips, start, stop))
    if record is not None:
        return record, "reused"
    if why is not None:
        message = f"Shard {shard_name(k)} of {Path(folder) / SHARDS} is not usable ({why}); encoding it again."
        log.warning(message)
        print(message, flush=True)  # the stage log (the executor redirects stdout there)
    return _write_shard(folder, k, start, stop, clips, vae_factory(), batch_size), "encoded" if why is None else "redone"


# --------------------------------------------------------------------------- stage entry points


def cached_summary(out_dir: Path) -> dict[str, Any] | None:
    """The summary of a complete (DONE) latents folder, marked cached; None if it is not complete."""
    out_dir = Path(out_dir)
    if not (out_dir / DONE).exists():
        return None
    if _index_format(out_dir) != FORMAT:
        _drop_pickle_format(out_dir)
        return None
    return {**json.loads((out_dir / "summary.json").read_text()), "cached": True}


def _index_format(folder: Path) -> str | None:
    try:
        return json.loads((folder / SHARDS / INDEX).read_text()).get("format")
    except (OSError, ValueError, AttributeError):
        return None


def _drop_pickle_format(folder: Path) -> None:
    """Unmark a latents folder an older ltxlab wrote (pickle shards) and delete its .pt files: it is encoded again."""
    message = (f"Latents in {folder} are in the old pickle format ({_index_format(folder)}); "
               f"encoding them again as {FORMAT}.")
    log.warning(message)
    print(message, flush=True)
    (folder / DONE).unlink(missing_ok=True)
    for old in [*folder.glob("*.pt"), *(folder / SHARDS).glob("*.pt")]:
        old.unlink(missing_ok=True)


def encode_latents(
    vae_dir: Path,
    data_spec: Any,
    out_dir: Path,
    *,
    text_cfg: Any | None = None,
    split: str = "train",
    batch_size: int = 8,
    shard_size: int = SHARD_CLIPS,
) -> dict[str, Any]:
    """Encode `data_spec`'s `split` clips with the VAE in `vae_dir`; cached by a DONE marker.

    `text_cfg` (models.text.TextEncoderConfig, default minilm) encodes the captions; a
    clip without a caption gets "" (the null caption). Returns the summary also written
    to `summary.json`. One shard-worker's `encode_latents_part` + `merge_latent_parts`,
    which the sharded stage runs on N workers.
    """
    cached = cached_summary(out_dir)
    if cached is not None:
        return cached
    started = time.perf_counter()
    encode_latents_part(vae_dir, data_spec, Path(out_dir), split=split, batch_size=batch_size, shard_size=shard_size)
    return merge_latent_parts(vae_dir, data_spec, Path(out_dir), 1, text_cfg=text_cfg, started=started, split=split,
                              shard_size=shard_size)


def encode_latents_part(
    vae_dir: Path,
    data_spec: Any,
    folder: Path,
    *,
    split: str = "train",
    batch_size: int = 8,
    shard: tuple[int, int] = (0, 1),
    shard_size: int = SHARD_CLIPS,
) -> dict[str, Any]:
    """Make rank's shards (`shards.shard_slice` of all shards) in `folder/shards/`; its part's DONE record.

    Finished shards are verified and reused, corrupt ones redone. A complete part whose
    shards no longer verify is redone too (its good shards are still reused).
    """
    from ablations.stages.shards import build_part, part_dir, read_part, shard_slice
    from ablations.stages.train_vae import load_vae
    from clips.dataset import open_clips

    rank, world = shard
    folder = Path(folder)
    clips = open_clips(data_spec, split)  # lazy for the manifest source: only this rank's shards are decoded
    ranges = shard_ranges(_shapes(clips), shard_size)
    mine = range(len(ranges))[shard_slice(len(ranges), rank, world)]
    done = read_part(part_dir(folder, rank, world))
    if done is not None and any(check_shard(folder, k, *ranges[k], _clip_ids(clips, *ranges[k]))[0] is None
                                for k in mine):
        shutil.rmtree(part_dir(folder, rank, world), ignore_errors=True)  # verify on reuse: redo what broke
    (folder / SHARDS).mkdir(parents=True, exist_ok=True)
    vae: list[torch.nn.Module] = []

    def vae_factory() -> torch.nn.Module:  # loaded once, and only if a shard has to be encoded
        if not vae:
            vae.append(load_vae(vae_dir, pick_device()))
        return vae[0]

    def work(tmp: Path, items: slice) -> dict[str, Any]:
        outcome: dict[str, list[int]] = {"reused": [], "encoded": [], "redone": []}
        for k in range(len(ranges))[items]:
            _, how = _ensure_shard(folder, k, *ranges[k], clips, vae_factory, batch_size)
            outcome[how].append(k)
        return {"shards": list(range(len(ranges))[items]), **outcome,
                "vae_kind": vae[0].cfg.kind if vae else None}

    return build_part(folder, rank, world, len(ranges), work)


def merge_latent_parts(
    vae_dir: Path,
    data_spec: Any,
    folder: Path,
    world: int,
    *,
    text_cfg: Any | None = None,
    started: float | None = None,
    split: str = "train",
    shard_size: int = SHARD_CLIPS,
) -> dict[str, Any]:
    """Check the N parts, verify every shard, write shards/index.json, the caption embeddings,
    summary.json and DONE (last); the summary. Captions are encoded here, all at once."""
    from ablations.stages.shards import IncompletePartsError, clean_stale, complete_parts
    from ablations.stages.train_vae import load_vae
    from clips.dataset import open_clips
    from models.config import to_dict
    from models.text import TextEncoderConfig, encode_to_file

    folder = Path(folder)
    started = time.perf_counter() if started is None else started
    parts = complete_parts(folder, world)
    clips = open_clips(data_spec, split)
    if not len(clips):
        raise ValueError(f"No clips to encode in {folder}: the data spec's split is empty.")
    ranges = shard_ranges(_shapes(clips), shard_size)
    records = []
    for k, (start, stop) in enumerate(ranges):
        record, why = check_shard(folder, k, start, stop, _clip_ids(clips, start, stop))
        if record is None:
            raise IncompletePartsError(f"Shard {shard_name(k)} of {folder / SHARDS} is not usable "
                                       f"({why or 'it was never written'}); rerun the stage to encode it again.")
        records.append(record)
    kinds = [p[1]["info"].get("vae_kind") for p in parts if p[1]["info"].get("vae_kind")]
    vae_kind = kinds[0] if kinds else load_vae(vae_dir, torch.device("cpu")).cfg.kind
    atomic_write_json(folder / SHARDS / INDEX, {
        "format": FORMAT, "clips": len(clips), "shard_size": shard_size, "shards": records,
        "vae_dir": str(Path(vae_dir).resolve()), "vae_kind": vae_kind, "data_spec": to_dict(data_spec)})
    captions = [c for r in records for c in r["captions"]]
    encoder = (text_cfg or TextEncoderConfig()).build()
    encode_to_file(encoder, captions, folder / TEXT)
    encode_to_file(encoder, [""], folder / NULL_TEXT)
    outcome = {how: sum(len(p[1]["info"].get(how, [])) for p in parts) for how in ("reused", "encoded", "redone")}
    latent_std = _latent_std(folder, records)
    summary = {
        "clips": len(clips),
        "shards": len(records),
        "shards_reused": outcome["reused"], "shards_redone": outcome["redone"],
        "latent_shape": records[0]["latent_shape"],
        "video_shape": records[0]["video_shape"],
        "latent_std": latent_std,
        "text_encoder": to_dict(text_cfg or TextEncoderConfig()),
        "vae_dir": str(Path(vae_dir).resolve()),
        "wall_time_s": time.perf_counter() - started,
    }
    atomic_write_json(folder / "summary.json", summary)
    (folder / DONE).write_text("ok\n")
    clean_stale(folder)
    return {**summary, "cached": False}


def _latent_std(folder: Path, records: Sequence[dict[str, Any]]) -> float:
    """Std of all latent values, one shard in memory at a time (float64 sums)."""
    total, total_sq, count = 0.0, 0.0, 0
    for record in records:
        x = tensor_file.load(Path(folder) / record["file"])[0]["latents"].double()
        total, total_sq, count = total + float(x.sum()), total_sq + float((x * x).sum()), count + x.numel()
    mean = total / count
    return float(max(0.0, (total_sq - count * mean * mean) / max(1, count - 1)) ** 0.5)


# --------------------------------------------------------------------------- reading


class LatentShards(torch.utils.data.Dataset):
    """The encoded latents as a dataset: item i is clip i's (Cz, t, h, w) latents.

    Shard files are opened memory-mapped on first use in each process (DataLoader workers
    open their own), so only the rows a step reads are paged in.
    """

    def __init__(self, folder: Path, records: Sequence[dict[str, Any]]):
        self.folder = Path(folder)
        self.records = list(records)
        self.starts = [r["start"] for r in self.records]
        self._open: dict[int, dict[str, Any]] = {}

    def __len__(self) -> int:
        return self.records[-1]["stop"] if self.records else 0

    def _shard(self, k: int) -> dict[str, Any]:
        if k not in self._open:
            self._open[k] = tensor_file.load(self.folder / self.records[k]["file"])[0]
        return self._open[k]

    def _locate(self, index: int) -> tuple[int, int]:
        import bisect

        if not 0 <= index < len(self):
            raise IndexError(f"latent {index} is outside 0..{len(self) - 1}")
        k = bisect.bisect_right(self.starts, index) - 1
        return k, index - self.starts[k]

    def __getitem__(self, index: int) -> torch.Tensor:
        k, row = self._locate(int(index))
        return self._shard(k)["latents"][row].clone()  # (Cz, t, h, w), detached from the mapped file

    def first_frame(self, index: int) -> torch.Tensor:
        k, row = self._locate(int(index))
        return self._shard(k)["first_frames"][row].clone()  # (H, W, 3) uint8

    def shapes(self) -> list[tuple[int, ...]]:
        return [tuple(r["latent_shape"]) for r in self.records for _ in range(r["clips"])]

    @property
    def buckets(self) -> list[list[int]] | None:
        from clips.manifest_source import bucket_groups

        groups = bucket_groups(self.shapes())
        return groups if len(groups) > 1 else None

    def stack(self) -> torch.Tensor:
        """Every latent in one tensor (N, Cz, t, h, w): for tests and small datasets of one shape."""
        return torch.cat([self._shard(k)["latents"] for k in range(len(self.records))])

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_open": {}}  # mapped files are reopened in each process


def load_latents(latents_dir: Path) -> dict[str, Any]:
    """What `encode_latents` wrote: {latents (LatentShards), captions, clip_ids, fps (N,), video_shape,
    vae_dir, vae_kind, shapes, text, null_text} (`text`/`null_text`: models.text.load_encoded dicts)."""
    from models.text import load_encoded

    latents_dir = Path(latents_dir)
    if not (latents_dir / DONE).exists():
        raise FileNotFoundError(f"No encoded latents in {latents_dir} (no DONE marker); run encode_latents first.")
    index = json.loads((latents_dir / SHARDS / INDEX).read_text())
    if index.get("format") != FORMAT:
        raise ValueError(f"Latents in {latents_dir} are in an older format ({index.get('format')}, pickle shards); "
                         f"delete {latents_dir / DONE} and rerun the stage to encode them again as {FORMAT}.")
    records = index["shards"]
    for record in records:  # anything reused from disk is verified first
        found, why = check_shard(latents_dir, record["shard"], record["start"], record["stop"], record["clip_ids"])
        if found is None:
            raise ValueError(f"Shard {shard_name(record['shard'])} of {latents_dir / SHARDS} is corrupt "
                             f"({why or 'its record is missing'}); delete {latents_dir / DONE} and rerun the stage: "
                             "intact shards are reused, this one is encoded again.")
    return {
        "latents": LatentShards(latents_dir, records),
        "captions": [c for r in records for c in r["captions"]],
        "clip_ids": [c for r in records for c in r["clip_ids"]],
        "fps": torch.tensor([f for r in records for f in r["fps"]], dtype=torch.float64),
        "video_shape": tuple(records[0]["video_shape"]),
        "latent_shape": tuple(records[0]["latent_shape"]),
        "vae_dir": index["vae_dir"],
        "vae_kind": index["vae_kind"],
        # memory-mapped like the shards: a step reads only its batch's caption rows
        "text": load_encoded(latents_dir / TEXT),
        "null_text": load_encoded(latents_dir / NULL_TEXT),
    }
