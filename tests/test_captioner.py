"""Captioner: a random ViT + GPT-2 VisionEncoderDecoder saved as a local HF folder, loaded as a real one is."""

from __future__ import annotations

import os
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from models.aesthetic import weights_sha256  # noqa: E402
from models.captioner import CaptionerConfig  # noqa: E402
from models.config import ConfigError  # noqa: E402
from models.tiny_hf import CAPTION_WORDS, write_captioner  # noqa: E402


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_captioner(tmp_path_factory.mktemp("hf") / "tiny-captioner")


def _frames(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 40, 56, 3), dtype=np.uint8)  # (N, H, W, 3)


def _reference(folder, frames: np.ndarray, max_new_tokens: int) -> list[str]:
    """The plain transformers path, with none of the Captioner's code: processor -> generate -> decode."""
    from transformers import AutoImageProcessor, AutoTokenizer, VisionEncoderDecoderModel

    model = VisionEncoderDecoderModel.from_pretrained(folder, local_files_only=True).eval()
    processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    with torch.no_grad():
        ids = model.generate(pixel_values=processor(images=list(frames), return_tensors="pt")["pixel_values"],
                             max_new_tokens=max_new_tokens, num_beams=1, do_sample=False)
    return [" ".join(t.split()) for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]


def test_captions_are_the_models_own_deterministic_and_batch_independent(folder):
    frames = _frames(5)
    captioner = CaptionerConfig(kind=f"hf:{folder}", max_new_tokens=6, batch_size=2).build()
    captions = captioner.caption(frames)
    assert len(captions) == 5 and all(isinstance(c, str) and c for c in captions)
    assert all(set(c.split()) <= set(CAPTION_WORDS[4:]) for c in captions)  # words of the vocabulary, no specials
    assert captions == _reference(folder, frames, 6)  # batches of 2 give what one plain generate call gives
    again = CaptionerConfig(kind=f"hf:{folder}", max_new_tokens=6, batch_size=16).build()
    assert again.caption(frames) == captions  # a fresh load, another batch size: the same strings
    assert captioner.caption(frames[0]) == captions[:1]  # one (H, W, 3) image


def test_caption_clip_uses_the_middle_frame(folder):
    captioner = CaptionerConfig(kind=f"hf:{folder}", max_new_tokens=4).build()
    clip_a, clip_b = _frames(5, seed=1), _frames(3, seed=2)
    assert captioner.caption_clip([clip_a, clip_b]) == captioner.caption(np.stack([clip_a[2], clip_b[1]]))
    assert captioner.caption_clip([]) == []
    with pytest.raises(ValueError, match="expected uint8"):
        captioner.caption(np.zeros((2, 8, 8), dtype=np.uint8))


def test_provenance_names_the_folder_class_and_weights(folder):
    captioner = CaptionerConfig(kind=f"hf:{folder}").build()
    prov = captioner.provenance
    assert prov["name"] == "tiny-captioner" == captioner.name
    assert prov["path"] == str(folder.resolve())
    assert prov["class"] == "VisionEncoderDecoderModel" and prov["model_type"] == "vision-encoder-decoder"
    assert prov["weights_sha256"] == weights_sha256(folder) and len(prov["weights_sha256"]) == 64
    assert not any(p.requires_grad for p in captioner.model.parameters())


def test_relative_path_is_found_under_ltxlab_weights(folder, monkeypatch, tmp_path):
    monkeypatch.setenv("LTXLAB_WEIGHTS", str(folder.parent))
    monkeypatch.chdir(tmp_path)  # the relative name does not exist under the working directory
    captioner = CaptionerConfig(kind=f"hf:{folder.name}", max_new_tokens=3).build()
    assert captioner.provenance["path"] == str(folder.resolve())


@pytest.mark.parametrize("remove, names", [
    ("all", "config.json"),
    (("tokenizer.json", "tokenizer_config.json"), "no tokenizer (tokenizer.json or tokenizer_config.json)"),
    (("preprocessor_config.json",), "no image processor (preprocessor_config.json"),
    (("model.safetensors",), "no weights file (model.safetensors"),
])
def test_an_incomplete_folder_is_one_sentence_naming_the_missing_file(folder, tmp_path, remove, names):
    broken = tmp_path / "broken"
    if remove != "all":
        shutil.copytree(folder, broken)
        for name in remove:
            (broken / name).unlink()
    with pytest.raises(ConfigError) as err:
        CaptionerConfig(kind=f"hf:{broken}").build()
    message = str(err.value)
    assert names in message and str(broken) in message
    assert message.count(". ") == 0 and "\n" not in message  # one sentence


def test_bad_settings_and_empty_kind_are_refused():
    with pytest.raises(ConfigError, match="max_new_tokens"):
        CaptionerConfig(kind="hf:x", max_new_tokens=0).build()
    with pytest.raises(ConfigError, match="needs a local model folder"):
        CaptionerConfig(kind="hf").build()
