"""CLIP text-video similarity and frame consistency from local Hugging Face folders saved with random weights."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from evaluation.clip_similarity import load_clip, score_video  # noqa: E402
from evaluation.generation import GenerationSample, missing_weights, score_sample  # noqa: E402
from evaluation.weights import WeightsInvalid, resolve_weights  # noqa: E402
from models.tiny_hf import write_vision_model  # noqa: E402
from tests._metric_models import save_clip  # noqa: E402

CAPTION = "a red circle moves left"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    return save_clip(root / "clip"), write_vision_model(root / "dino", "vit")


def _video(seed: int, frames: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((frames, 40, 48, 3)) * 255).astype(np.uint8)


def test_clip_similarity_equals_clipmodels_own_logits(folders):
    from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

    clip_dir, _ = folders
    video = _video(1)
    outcome = score_video(video, CAPTION, resolve_weights({"clip": str(clip_dir)}, environ={}), device="cpu")
    sim = outcome["clip_similarity"]
    # independent path: CLIPModel.forward's logits_per_image = exp(logit_scale) * cosine
    model = CLIPModel.from_pretrained(clip_dir, local_files_only=True).eval()
    pixels = AutoImageProcessor.from_pretrained(clip_dir, local_files_only=True)(images=list(video), return_tensors="pt")
    tokens = AutoTokenizer.from_pretrained(clip_dir, local_files_only=True)([CAPTION], return_tensors="pt")
    with torch.no_grad():
        logits = model(input_ids=tokens["input_ids"], pixel_values=pixels["pixel_values"]).logits_per_image[:, 0]
        expected = (logits / model.logit_scale.exp()).double()
    np.testing.assert_allclose(sim.per_frame, expected.numpy(), atol=1e-5)
    assert sim.value == pytest.approx(float(expected.mean()), abs=1e-5)
    assert "CLIPModel" in sim.model and len(sim.per_frame) == 5


def test_frame_consistency_uses_dino_when_given_and_clip_otherwise(folders):
    from transformers import AutoImageProcessor, ViTModel

    clip_dir, dino_dir = folders
    still = np.repeat(_video(2, 1), 4, axis=0)
    moving = _video(3, 4)
    clip_only = resolve_weights({"clip": str(clip_dir)}, environ={})
    assert score_video(still, CAPTION, clip_only, "cpu")["frame_consistency"].value == pytest.approx(1.0, abs=1e-5)
    both = resolve_weights({"clip": str(clip_dir), "dino": str(dino_dir)}, environ={})
    outcome = score_video(moving, CAPTION, both, "cpu")["frame_consistency"]
    assert "ViTModel" in outcome.model and len(outcome.per_frame) == 3
    model = ViTModel.from_pretrained(dino_dir, local_files_only=True).eval()
    pixels = AutoImageProcessor.from_pretrained(dino_dir, local_files_only=True)(images=list(moving), return_tensors="pt")
    with torch.no_grad():
        cls = torch.nn.functional.normalize(model(**pixels).last_hidden_state[:, 0], dim=-1)
    np.testing.assert_allclose(outcome.per_frame, (cls[1:] @ cls[0]).numpy(), atol=1e-5)


def test_missing_caption_and_weights_give_reasons(folders):
    clip_dir, _ = folders
    nothing = resolve_weights({}, environ={})
    outcome = score_video(_video(4), CAPTION, nothing, "cpu")
    assert outcome["clip_similarity"].value is None
    assert outcome["clip_similarity"].not_applicable.startswith("clip_similarity needs clip")
    assert "eval.weights.clip" in outcome["clip_similarity"].not_applicable
    assert "eval.weights.dino" in outcome["frame_consistency"].not_applicable
    no_caption = score_video(_video(4), None, resolve_weights({"clip": str(clip_dir)}, environ={}), "cpu")
    assert "needs a caption" in no_caption["clip_similarity"].not_applicable
    assert no_caption["frame_consistency"].value is not None


def test_a_vision_only_folder_is_not_a_clip_model(folders):
    _, dino_dir = folders
    with pytest.raises(WeightsInvalid, match="not a CLIP model"):
        load_clip(resolve_weights({"clip": str(dino_dir)}, environ={}))


def test_generation_registry_scores_with_weights_and_names_the_missing_file(folders):
    clip_dir, _ = folders
    video = _video(5).astype(np.float32) / 255.0
    plain = GenerationSample(video=video, task="t2v", text=CAPTION)
    assert "clip_similarity" not in score_sample(plain)  # no weights resolved: the existing metrics only
    weighted = GenerationSample(video=video, task="t2v", text=CAPTION,
                                weights=resolve_weights({"clip": str(clip_dir)}, environ={}))
    values = score_sample(weighted, ["clip_similarity", "frame_consistency", "temporal_flicker"])
    assert set(values) == {"clip_similarity", "frame_consistency", "temporal_flicker"}
    assert -1 <= values["clip_similarity"] <= 1
    reasons = missing_weights(None, resolve_weights({}, environ={}))
    assert set(reasons) == {"clip_similarity", "frame_consistency"} and "eval.weights.clip" in reasons["clip_similarity"]
    assert missing_weights(None, resolve_weights({"clip": str(clip_dir)}, environ={})) == {}
