"""Tiny random Hugging Face model folders, written with `save_pretrained` in the real formats.

Tests, benchmarks and a first try of the curation tools need a vision backbone and a captioner
without downloading anything. These builders write the same files a published model has
(`config.json`, `model.safetensors`, `preprocessor_config.json`, tokenizer files), from random
weights seeded by `seed`, so `AestheticConfig(kind="hf:<folder>")` and
`CaptionerConfig(kind="hf:<folder>")` load them through exactly the code path a real model takes.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from models.aesthetic import hf_offline

VISION_KINDS = ("clip_vision", "clip", "vit")  # CLIPVisionModel, full CLIPModel (vision tower used), ViTModel
CAPTION_WORDS = ("<pad>", "<s>", "</s>", "<unk>", "a", "red", "blue", "green", "shape", "moves", "left", "right",
                 "over", "texture", "photo", "of", "cat", "rocket")


def write_vision_model(folder: str | os.PathLike, kind: str = "clip_vision", *, image_size: int = 32,
                       seed: int = 0) -> Path:
    """A random 2-layer, 32-wide vision transformer (8-pixel patches) and its image processor in `folder`."""
    hf_offline()
    from transformers import (CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTextConfig, CLIPVisionConfig,
                              CLIPVisionModel, ViTConfig, ViTImageProcessor, ViTModel)

    if kind not in VISION_KINDS:
        raise ValueError(f"kind must be one of {VISION_KINDS}, got {kind!r}")
    torch.manual_seed(seed)
    width = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    vision = dict(width, image_size=image_size, patch_size=8)
    if kind == "vit":
        model = ViTModel(ViTConfig(**vision))
        processor = ViTImageProcessor(size={"height": image_size, "width": image_size})
    else:
        if kind == "clip":
            text = CLIPTextConfig(**width, vocab_size=64, max_position_embeddings=16, pad_token_id=0, bos_token_id=1,
                                  eos_token_id=2)
            model = CLIPModel(CLIPConfig(text_config=text.to_dict(), vision_config=CLIPVisionConfig(**vision).to_dict(),
                                         projection_dim=16))
        else:
            model = CLIPVisionModel(CLIPVisionConfig(**vision))
        processor = CLIPImageProcessor(size={"shortest_edge": image_size},
                                       crop_size={"height": image_size, "width": image_size})
    folder = Path(folder)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def write_captioner(folder: str | os.PathLike, *, image_size: int = 32, seed: int = 0,
                    words: tuple[str, ...] = CAPTION_WORDS) -> Path:
    """A random ViT encoder + GPT-2 decoder (VisionEncoderDecoderModel), a word-level tokenizer and a ViT processor.

    The tokenizer is built offline with the `tokenizers` package (WordLevel over `words`; the first
    four are pad, bos, eos, unk) and wrapped in `PreTrainedTokenizerFast`, as a trained one would be.
    """
    hf_offline()
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (GPT2Config, PreTrainedTokenizerFast, ViTConfig, ViTImageProcessor,
                              VisionEncoderDecoderConfig, VisionEncoderDecoderModel)

    torch.manual_seed(seed)
    pad, bos, eos, unk = words[:4]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=pad,
                                        unk_token=unk)
    encoder = ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                        image_size=image_size, patch_size=8)
    decoder = GPT2Config(vocab_size=len(words), n_embd=16, n_layer=1, n_head=2, n_positions=64, bos_token_id=1,
                         eos_token_id=2, add_cross_attention=True, is_decoder=True)
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id, config.pad_token_id, config.eos_token_id = 1, 0, 2
    model = VisionEncoderDecoderModel(config=config)
    with torch.no_grad():  # pad, bos and unk never win the (tied) output layer, so the random decoder emits words
        model.decoder.get_input_embeddings().weight[[0, 1, 3]] = 0.0
    for name, value in (("decoder_start_token_id", 1), ("pad_token_id", 0), ("eos_token_id", 2)):
        setattr(model.generation_config, name, value)  # generate() reads these, not the model config
    folder = Path(folder)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    ViTImageProcessor(size={"height": image_size, "width": image_size}).save_pretrained(folder)
    return folder
