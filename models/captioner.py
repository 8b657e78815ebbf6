"""Image-to-text captioners for curation, loaded from local Hugging Face folders only.

LTX-Video recaptions its training clips with a vision-language model (paper §4). A `Captioner`
wraps any image-to-text model the installed transformers can load from a folder written by
`save_pretrained`: BLIP / BLIP-2, GIT, Florence-style and LLaVA-style models (anything
`AutoModelForImageTextToText` knows), or a `VisionEncoderDecoderModel` (ViT + GPT-2, ...).
The tokenizer and image processor come from the same folder (`AutoProcessor`, else
`AutoImageProcessor` + `AutoTokenizer`). Everything is read with `local_files_only=True`; a relative
path is also looked up under `$LTXLAB_WEIGHTS`. `caption(frames)` returns one caption per frame,
`caption_clip(frames)` one per clip (its middle frame). `provenance` keeps the model's name, path,
class and weights hash, so a manifest can say which captioner wrote a caption.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Sequence

import numpy as np
import torch

from models.aesthetic import hf_folder, hf_offline, weights_sha256
from models.config import ConfigError
from models.registry import Registry


@dataclasses.dataclass(kw_only=True, frozen=True)
class CaptionerConfig:
    kind: str = "hf:captioner"  # 'hf:<local model folder>'; a relative folder is also looked up under $LTXLAB_WEIGHTS
    max_new_tokens: int = 40  # caption length limit in generated tokens
    num_beams: int = 1  # beam search width (1 = greedy, deterministic)
    prompt: str = ""  # optional text prefix for conditional captioners (BLIP: "a picture of"); "" = none
    batch_size: int = 16  # frames per generate() call

    @property
    def family(self) -> str:
        return self.kind.split(":", 1)[0]

    def build(self) -> "Captioner":
        if self.max_new_tokens < 1 or self.num_beams < 1 or self.batch_size < 1:
            raise ConfigError("A captioner needs max_new_tokens, num_beams and batch_size of at least 1.")
        return CAPTIONERS.get(self.family)(self)


class Captioner:
    """A frozen image-to-text model with its processor; `caption(frames)` -> one string per frame."""

    def __init__(self, cfg: CaptionerConfig, model: torch.nn.Module, image_processor: Any, tokenizer: Any,
                 processor: Any | None, provenance: dict[str, Any]) -> None:
        self.config = cfg
        self.model = model.eval().requires_grad_(False)
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.processor = processor  # a joint processor (text + image), when the folder has one
        self.provenance = provenance

    @property
    def name(self) -> str:
        return self.provenance["name"]

    def _inputs(self, images: list[np.ndarray]) -> dict[str, torch.Tensor]:
        if self.processor is not None:
            kwargs = {"text": [self.config.prompt] * len(images)} if self.config.prompt else {}
            inputs = self.processor(images=images, return_tensors="pt", **kwargs)
        else:
            inputs = self.image_processor(images=images, return_tensors="pt")
            if self.config.prompt:  # encoder-decoder: the prompt follows the decoder's start token
                ids = self.tokenizer(self.config.prompt, add_special_tokens=False)["input_ids"]
                start = self.model.config.decoder_start_token_id
                inputs["decoder_input_ids"] = torch.tensor([[start, *ids]] * len(images))
        param = next(self.model.parameters())
        return {k: (v.to(param.device, param.dtype) if v.is_floating_point() else v.to(param.device))
                for k, v in dict(inputs).items() if isinstance(v, torch.Tensor)}

    @torch.no_grad()
    def caption(self, frames: Any) -> list[str]:
        """uint8 (N, H, W, 3) frames (numpy or tensor; one (H, W, 3) image is N=1) -> N captions."""
        array = frames.cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
        if array.ndim == 3:
            array = array[None]
        if array.ndim != 4 or array.shape[-1] != 3:
            raise ValueError(f"expected uint8 (N, H, W, 3) frames, got shape {array.shape}")
        out: list[str] = []
        for start in range(0, len(array), self.config.batch_size):
            images = [np.ascontiguousarray(f, dtype=np.uint8) for f in array[start : start + self.config.batch_size]]
            inputs = self._inputs(images)
            ids = self.model.generate(**inputs, max_new_tokens=self.config.max_new_tokens, num_beams=self.config.num_beams,
                                      do_sample=False)
            decoder = self.processor if self.processor is not None and hasattr(self.processor, "batch_decode") else self.tokenizer
            texts = decoder.batch_decode(ids, skip_special_tokens=True)
            out += [self._strip_prompt(t) for t in texts]
        return out

    def caption_clip(self, clips: Sequence[Any]) -> list[str]:
        """uint8 (T, H, W, 3) clips -> one caption each, from the middle frame."""
        return self.caption(np.stack([np.asarray(c)[len(c) // 2] for c in clips])) if len(clips) else []

    def _strip_prompt(self, text: str) -> str:
        text = " ".join(text.split())
        prompt = self.config.prompt.strip()
        if prompt and text.lower().startswith(prompt.lower()):
            text = text[len(prompt) :].strip()  # decoder-only models echo their prompt
        return text


CAPTIONERS: Registry[Callable[[CaptionerConfig], Captioner]] = Registry("captioner")


def _load_processors(folder: str) -> tuple[Any, Any, Any]:
    """(joint processor or None, image processor, tokenizer) from a model folder."""
    from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer

    processor = None
    try:
        candidate = AutoProcessor.from_pretrained(folder, local_files_only=True)
        if getattr(candidate, "image_processor", None) is not None and getattr(candidate, "tokenizer", None) is not None:
            processor = candidate  # AutoProcessor of a bare tokenizer folder returns the tokenizer: not joint
    except (OSError, ValueError, KeyError, TypeError):
        pass
    if processor is not None:
        return processor, processor.image_processor, processor.tokenizer
    return None, AutoImageProcessor.from_pretrained(folder, local_files_only=True), \
        AutoTokenizer.from_pretrained(folder, local_files_only=True)


# what a captioner folder needs beside config.json and weights: (what, files of which one suffices)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "spiece.model", "tokenizer.model")
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")


def check_folder(folder: Path) -> None:
    """One ConfigError sentence naming the first part a captioner folder lacks (tokenizer, image processor)."""
    for what, files, how in (("tokenizer", TOKENIZER_FILES, "tokenizer.save_pretrained"),
                             ("image processor", PROCESSOR_FILES, "image_processor.save_pretrained")):
        if not any((folder / f).is_file() for f in files):
            raise ConfigError(f"The captioner folder {folder} has no {what} ({' or '.join(files[:2])}); save the "
                              f"model's {what} there with `{how}(folder)`.")


@CAPTIONERS.register("hf")
def build_hf(cfg: CaptionerConfig) -> Captioner:
    folder = hf_folder(cfg.kind.split(":", 1)[1] if ":" in cfg.kind else "", "captioner")
    check_folder(folder)
    hf_offline()
    from transformers import AutoConfig, AutoModelForImageTextToText, VisionEncoderDecoderModel

    try:
        hf_cfg = AutoConfig.from_pretrained(str(folder), local_files_only=True)
        loader = VisionEncoderDecoderModel if hf_cfg.model_type == "vision-encoder-decoder" else AutoModelForImageTextToText
        model = loader.from_pretrained(str(folder), local_files_only=True)
        processor, image_processor, tokenizer = _load_processors(str(folder))
    except (OSError, ValueError, KeyError) as exc:
        reason = str(exc).splitlines()[0].rstrip(".") if str(exc) else type(exc).__name__
        raise ConfigError(f"Cannot load a captioner from {folder} ({reason}); it needs an image-to-text model with its "
                          "tokenizer and image processor, saved with `save_pretrained`.") from None
    provenance = {"name": folder.name, "path": str(folder), "model_type": hf_cfg.model_type,
                  "class": type(model).__name__, "weights_sha256": weights_sha256(folder)}
    return Captioner(cfg, model, image_processor, tokenizer, processor, provenance)
