"""Text encoders: offline MiniLM shapes, masks, determinism, caching, persistence; no network."""

from __future__ import annotations

import socket

import pytest
import torch

from models.config import ConfigError
from models.registry import UnknownNameError
from models.text import TEXT_ENCODERS, TextEncoderConfig, encode_to_file, load_encoded, minilm_path


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")

    def refuse(*args, **kwargs):
        raise AssertionError("the text encoder tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)


CAPTIONS = ["a small red circle moves slowly to the left over a grey photo of a sleeping cat", "blue square", ""]


def test_minilm_shapes_mask_and_determinism() -> None:
    enc = TextEncoderConfig(kind="minilm", max_length=16).build()
    emb, mask = enc.encode(CAPTIONS)
    assert emb.shape == (3, 16, 384) and emb.dtype == torch.float32 and enc.width == 384
    assert mask.dtype == torch.bool
    expected = [min(16, len(enc.tokenizer(c)["input_ids"])) for c in CAPTIONS]
    assert mask.sum(dim=1).tolist() == expected
    assert expected[0] == 16 and expected[2] == 2  # truncated; "" is [CLS] [SEP]
    assert torch.isfinite(emb).all()
    again = enc._encode(CAPTIONS)  # bypass the cache: the model itself is deterministic
    torch.testing.assert_close(again[0], emb)
    assert torch.equal(again[1], mask)
    assert (emb[0] - emb[1]).abs().max() > 1e-2


def test_cache_returns_same_tensors_and_batch_independence() -> None:
    enc = TextEncoderConfig(max_length=12).build()
    a = enc.encode(CAPTIONS)
    assert enc.encode(list(CAPTIONS))[0] is a[0]
    single, _ = enc.encode(CAPTIONS[1:2])
    torch.testing.assert_close(single[0], a[0][1], rtol=1e-4, atol=1e-4)
    null, null_mask = enc.null()
    assert null.shape == (1, 12, 384) and null_mask.sum() == 2


def test_hf_path_loads_the_same_model_offline() -> None:
    hf = TextEncoderConfig(kind=f"hf:{minilm_path()}", max_length=8).build()
    mini = TextEncoderConfig(kind="minilm", max_length=8).build()
    torch.testing.assert_close(hf.encode(["blue square"])[0], mini.encode(["blue square"])[0])


def test_errors_are_one_sentence() -> None:
    with pytest.raises(UnknownNameError, match="minilm"):
        TextEncoderConfig(kind="minlm").build()
    with pytest.raises(ConfigError, match="needs a model name"):
        TextEncoderConfig(kind="hf:").build()
    with pytest.raises(ConfigError, match="locally only"):
        TextEncoderConfig(kind="hf:nonexistent-org/nonexistent-model").build()
    assert TEXT_ENCODERS.names() == ["hf", "minilm"]


def test_encode_to_file_round_trip(tmp_path) -> None:
    enc = TextEncoderConfig(max_length=10).build()
    path = encode_to_file(enc, CAPTIONS, tmp_path / "cache" / "text.safetensors")
    data = load_encoded(path)
    assert data["captions"] == CAPTIONS and data["config"]["max_length"] == 10
    emb, mask = enc.encode(CAPTIONS)
    torch.testing.assert_close(data["embeddings"], emb)
    assert torch.equal(data["mask"], mask)
    assert not list(tmp_path.glob("cache/*.tmp"))
