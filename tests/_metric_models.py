"""Random-weight networks saved in the real file formats of the metrics' pretrained weights.

Tests and `benchmarks/metrics_speed.py` load these through the same code as the real files:
- `save_i3d`: a TorchScript file (`torch.jit.save`) whose forward has StyleGAN-V's I3D
  signature `detector(videos, rescale=..., resize=..., return_features=...)`; the network is
  the Inception-v1 I3D layout (Carreira & Zisserman 2017; piergiaj/pytorch-i3d's
  InceptionI3d), channel widths divided by `width_div` (1 = the real widths, for timing);
- `save_lpips`: a torchvision-keyed AlexNet/VGG-16 `features.*` state dict and lpips-keyed
  linear heads (`lin{k}.model.1.weight`), both `.pth`;
- `save_clip`: a Hugging Face folder via `save_pretrained` (a tiny CLIPModel with a byte-level
  CLIP tokenizer built offline and a CLIP image processor); a tiny ViT/DINO folder is
  `models.tiny_hf.write_vision_model(folder, "vit")`.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.aesthetic import hf_offline

# Mixed_3b ... Mixed_5c: (1x1, 3x3 reduce, 3x3, 3x3 reduce, 3x3, pool proj) as in InceptionI3d
_MIXED = [
    ("3b", [64, 96, 128, 16, 32, 32]), ("3c", [128, 128, 192, 32, 96, 64]), ("pool4", []),
    ("4b", [192, 96, 208, 16, 48, 64]), ("4c", [160, 112, 224, 24, 64, 64]), ("4d", [128, 128, 256, 24, 64, 64]),
    ("4e", [112, 144, 288, 32, 64, 64]), ("4f", [256, 160, 320, 32, 128, 128]), ("pool5", []),
    ("5b", [256, 160, 320, 32, 128, 128]), ("5c", [384, 192, 384, 48, 128, 128]),
]  # fmt: skip


class Unit3D(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int = 1, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv3d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm3d(c_out, eps=1e-3)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


class Inception(nn.Module):
    def __init__(self, c_in: int, widths: list[int]) -> None:
        super().__init__()
        self.b0 = Unit3D(c_in, widths[0])
        self.b1 = nn.Sequential(Unit3D(c_in, widths[1]), Unit3D(widths[1], widths[2], 3))
        self.b2 = nn.Sequential(Unit3D(c_in, widths[3]), Unit3D(widths[3], widths[4], 3))
        self.b3 = Unit3D(c_in, widths[5])

    def forward(self, x: Tensor) -> Tensor:
        pooled = F.max_pool3d(x, 3, stride=1, padding=1)
        return torch.cat([self.b0(x), self.b1(x), self.b2(x), self.b3(pooled)], dim=1)


class I3DStandIn(nn.Module):
    """Inception-v1 I3D with random weights and StyleGAN-V's detector signature; 400 features."""

    def __init__(self, width_div: int = 1, classes: int = 400) -> None:
        super().__init__()
        w = lambda c: max(1, c // width_div)  # noqa: E731
        self.stem = nn.Sequential(Unit3D(3, w(64), 7, stride=2))
        self.stem2 = nn.Sequential(Unit3D(w(64), w(64)), Unit3D(w(64), w(192), 3))
        blocks: list[nn.Module] = []
        c = w(192)
        for name, widths in _MIXED:
            if not widths:
                blocks.append(nn.MaxPool3d(3 if name == "pool4" else 2, stride=2, padding=1 if name == "pool4" else 0))
                continue
            scaled = [w(v) for v in widths]
            blocks.append(Inception(c, scaled))
            c = scaled[0] + scaled[2] + scaled[4] + scaled[5]
        self.mixed = nn.Sequential(*blocks)
        self.logits = nn.Conv3d(c, classes, 1)

    def forward(self, x: Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False) -> Tensor:
        if rescale:
            x = x.float() / 127.5 - 1.0  # uint8 [0, 255] -> [-1, 1]
        if resize:
            x = F.interpolate(x, size=[x.shape[2], 224, 224], mode="trilinear", align_corners=False)
        x = self.stem(x)
        x = F.max_pool3d(x, [1, 3, 3], stride=[1, 2, 2], padding=[0, 1, 1])
        x = self.stem2(x)
        x = F.max_pool3d(x, [1, 3, 3], stride=[1, 2, 2], padding=[0, 1, 1])
        x = self.mixed(x)
        x = F.adaptive_avg_pool3d(x, [x.shape[2], 1, 1])  # average over space
        logits = self.logits(x).mean(dim=(2, 3, 4))  # (B, 400): mean over time
        return logits if return_features else torch.softmax(logits, dim=1)


def save_i3d(path: str | os.PathLike, width_div: int = 16, seed: int = 0) -> Path:
    """A random I3D-shaped detector, scripted and saved with torch.jit.save (as i3d_torchscript.pt is)."""
    torch.manual_seed(seed)
    model = I3DStandIn(width_div).eval()
    for module in model.modules():  # non-trivial BatchNorm statistics, as a trained model has
        if isinstance(module, nn.BatchNorm3d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    torch.jit.save(torch.jit.script(model), str(path))
    return Path(path)


def save_lpips(folder: str | os.PathLike, net: str, seed: int = 0) -> tuple[Path, Path]:
    """(backbone .pth with torchvision's `features.*` keys, heads .pth with lpips' `lin{k}.model.1.weight` keys)."""
    from evaluation.lpips import NETS, backbone_features

    torch.manual_seed(seed)
    folder = Path(folder)
    features = backbone_features(net)
    backbone = folder / f"{net}_backbone.pth"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, backbone)
    heads = folder / f"{net}_heads.pth"
    torch.save({f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) for k, c in enumerate(NETS[net].channels)}, heads)
    return backbone, heads


def clip_tokenizer():
    """A byte-level CLIP tokenizer (every byte a token, no merges), built offline."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    chars = sorted(ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = len(vocab), len(vocab) + 1
    return CLIPTokenizer(vocab=vocab, merges=[])


def clip_config(tokenizer, text: dict | None = None, vision: dict | None = None, **kwargs):
    """A CLIPConfig whose text tower matches `tokenizer` (vocabulary size and special-token ids); sizes as given."""
    from transformers import CLIPConfig

    special = {k: tokenizer.convert_tokens_to_ids(t) for k, t in
               (("bos_token_id", "<|startoftext|>"), ("eos_token_id", "<|endoftext|>"), ("pad_token_id", "<|endoftext|>"))}
    return CLIPConfig(text_config=dict(vocab_size=len(tokenizer), max_position_embeddings=77, **special, **(text or {})),
                      vision_config=dict(vision or {}), **kwargs)


def save_clip(folder: str | os.PathLike, seed: int = 0, image_size: int = 32) -> Path:
    """A tiny random CLIPModel + tokenizer + CLIPImageProcessor, written with save_pretrained."""
    hf_offline()
    from transformers import CLIPImageProcessor, CLIPModel

    torch.manual_seed(seed)
    tokenizer = clip_tokenizer()
    config = clip_config(
        tokenizer,
        text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),
        vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                    image_size=image_size, patch_size=8),
        projection_dim=16,
    )
    folder = Path(folder)
    CLIPModel(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
                       ).save_pretrained(folder)
    return folder


def save_lpips_weights_folder(folder: str | os.PathLike, seed: int = 0) -> Path:
    """A $LTXLAB_WEIGHTS-style folder with random LPIPS backbones and heads under their default file names."""
    from evaluation.weights import WEIGHT_FILES

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for net in ("alex", "vgg"):
        backbone, heads = save_lpips(folder, net, seed)
        backbone.rename(folder / WEIGHT_FILES[f"lpips_{net}"].file)
        heads.rename(folder / WEIGHT_FILES[f"lpips_{net}_head"].file)
    return folder
