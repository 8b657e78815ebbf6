"""LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual
Metric"), v0.1, AlexNet and VGG-16 variants, from local weight files.

Follows the `lpips` package (richzhang/PerceptualSimilarity, `lpips/lpips.py` and
`pretrained_networks.py`), number for number:
- input in [-1, 1], then its ScalingLayer: (x - shift) / scale with ImageNet-derived constants;
- the backbone's `features` (torchvision's layer layout, so torchvision's state dicts load by
  key) cut after each ReLU stage: AlexNet relu1..relu5 (features[0:2], [2:5], [5:8], [8:10],
  [10:12]); VGG-16 relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 (features[0:4], [4:9], [9:16],
  [16:23], [23:30]);
- each stage's activations unit-normalised over channels (eps 1e-10 added to the norm), the
  squared difference weighted by the stage's learned 1x1 linear head (`lin{k}.model.1.weight`
  of the package's v0.1 `alex.pth` / `vgg.pth`), averaged over space, summed over stages.

We do not import the `lpips` package or torchvision: the package imports torchvision, whose
PyPI wheel is built against CUDA torch and fails beside a CPU torch; the parity test runs the
package itself (tests/test_lpips.py). Frames are scored at native resolution, per frame; a
video's value is the mean over frames. Lower is better (0 = identical).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
from torch import Tensor, nn

from evaluation.metrics import ieee_fp32
from evaluation.weights import Weights, WeightsInvalid

# lpips.ScalingLayer: the package's per-channel shift and scale for [-1, 1] input
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
NORM_EPS = 1e-10  # lpips.normalize_tensor

# torchvision's `features` layer lists ("M" = max-pool) and LPIPS's cut points (exclusive ends)
_ALEX_LAYERS: list[tuple[int, int, int, int, int] | str] = [
    (3, 64, 11, 4, 2), "R", "M3", (64, 192, 5, 1, 2), "R", "M3", (192, 384, 3, 1, 1), "R",
    (384, 256, 3, 1, 1), "R", (256, 256, 3, 1, 1), "R", "M3",
]
_VGG16_WIDTHS = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


@dataclass(frozen=True, kw_only=True)
class LPIPSNet:
    """One LPIPS variant: its backbone layout, stage cuts, channel widths and weight names."""

    name: str  # "alex" | "vgg"
    cuts: tuple[int, ...]  # exclusive end index in `features` of each stage
    channels: tuple[int, ...]  # channels of each stage's output (the linear heads' inputs)
    min_side: int  # smallest frame side whose last stage is non-empty
    backbone_weight: str  # eval.weights name of the torchvision state dict
    head_weight: str  # eval.weights name of the lpips linear heads


NETS = {
    "alex": LPIPSNet(name="alex", cuts=(2, 5, 8, 10, 12), channels=(64, 192, 384, 256, 256), min_side=31,
                     backbone_weight="lpips_alex", head_weight="lpips_alex_head"),
    "vgg": LPIPSNet(name="vgg", cuts=(4, 9, 16, 23, 30), channels=(64, 128, 256, 512, 512), min_side=16,
                    backbone_weight="lpips_vgg", head_weight="lpips_vgg_head"),
}


def backbone_features(net: str) -> nn.Sequential:
    """torchvision's `alexnet().features` / `vgg16().features` layout (same indices, so same state-dict keys)."""
    layers: list[nn.Module] = []
    if net == "alex":
        for item in _ALEX_LAYERS:
            if item == "R":
                layers.append(nn.ReLU(inplace=True))
            elif item == "M3":
                layers.append(nn.MaxPool2d(kernel_size=3, stride=2))
            else:
                c_in, c_out, k, s, p = item  # type: ignore[misc]
                layers.append(nn.Conv2d(c_in, c_out, kernel_size=k, stride=s, padding=p))
        return nn.Sequential(*layers)
    c_in = 3
    for width in _VGG16_WIDTHS:
        if width == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(c_in, int(width), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            c_in = int(width)
    return nn.Sequential(*layers)


class LPIPS(nn.Module):
    """LPIPS v0.1 on a batch of frame pairs: (B, 3, H, W) x2 in [0, 1] -> (B,) distances."""

    def __init__(self, net: str) -> None:
        super().__init__()
        self.spec = NETS[net]
        self.features = backbone_features(net)
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in self.spec.channels)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))

    def stages(self, x: Tensor) -> list[Tensor]:
        """(B, 3, H, W) in [0, 1] -> the 5 stage activations, each (B, C_k, H_k, W_k)."""
        x = ((x * 2.0 - 1.0) - self.shift) / self.scale
        out, start = [], 0
        for end in self.spec.cuts:
            x = self.features[start:end](x)
            out.append(x)
            start = end
        return out

    def forward(self, ref: Tensor, test: Tensor) -> Tensor:
        total = torch.zeros(ref.shape[0], dtype=ref.dtype, device=ref.device)
        for head, a, b in zip(self.heads, self.stages(ref), self.stages(test)):
            a = a / (a.pow(2).sum(dim=1, keepdim=True).sqrt() + NORM_EPS)
            b = b / (b.pow(2).sum(dim=1, keepdim=True).sqrt() + NORM_EPS)
            total = total + head((a - b) ** 2).mean(dim=(1, 2, 3))  # (B,)
        return total


def _state_dict(path: str) -> dict[str, Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and format errors all mean "not a state dict"
        raise WeightsInvalid(f"{path} is not a readable torch state dict ({type(exc).__name__}); "
                             "LPIPS needs .pth state dicts.") from None
    if not isinstance(state, dict):
        raise WeightsInvalid(f"{path} holds a {type(state).__name__}, not a state dict; LPIPS needs .pth state dicts.")
    return state


def load_backbone_state(path: str, net: str) -> dict[str, Tensor]:
    """`features.*` tensors of a torchvision AlexNet/VGG-16 state dict, keyed as in `backbone_features`."""
    state = _state_dict(path)
    features = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    expected = backbone_features(net).state_dict()
    wrong = [k for k, v in expected.items() if k not in features or features[k].shape != v.shape]
    if wrong:
        raise WeightsInvalid(f"{path} is not a torchvision {'AlexNet' if net == 'alex' else 'VGG-16'} state dict: "
                             f"features.{wrong[0]} is missing or has the wrong shape; eval.weights."
                             f"{NETS[net].backbone_weight} needs that model's .pth.")
    return {k: features[k] for k in expected}


def load_head_state(path: str, net: str) -> dict[str, Tensor]:
    """The lpips package's linear heads (`lin{k}.model.1.weight`, (1, C_k, 1, 1)) keyed as `heads.{k}.weight`."""
    state = _state_dict(path)
    out = {}
    for k, channels in enumerate(NETS[net].channels):
        weight = state.get(f"lin{k}.model.1.weight")
        if weight is None or tuple(weight.shape) != (1, channels, 1, 1):
            raise WeightsInvalid(f"{path} is not the lpips v0.1 {net}.pth linear-head file: lin{k}.model.1.weight is "
                                 f"missing or not (1, {channels}, 1, 1).")
        out[f"heads.{k}.weight"] = weight
    return out


@lru_cache(maxsize=4)
def _build(net: str, backbone: str, head: str, key: tuple[str, str], device: str) -> LPIPS:
    # `key` (the two sha256s) is in the cache key so replaced files are loaded again
    model = LPIPS(net)
    state = {f"features.{k}": v for k, v in load_backbone_state(backbone, net).items()}
    state.update(load_head_state(head, net))
    state.update(shift=model.shift, scale=model.scale)
    model.load_state_dict(state, strict=True)
    return model.eval().to(device)


def load_lpips(net: str, weights: Weights, device: str | torch.device = "cpu") -> tuple[LPIPS, dict[str, str]]:
    """(LPIPS model, provenance {backbone_sha256, head_sha256}); WeightsMissing / WeightsInvalid otherwise."""
    spec, metric = NETS[net], f"lpips_{net}"
    backbone, head = weights.path(spec.backbone_weight, metric), weights.path(spec.head_weight, metric)
    shas = (weights.sha256(spec.backbone_weight, metric), weights.sha256(spec.head_weight, metric))
    model = _build(net, str(backbone), str(head), shas, str(torch.device(device)))
    return model, {"backbone_sha256": shas[0], "head_sha256": shas[1]}


@torch.no_grad()
@ieee_fp32()
def lpips_per_frame(model: LPIPS, ref: Tensor, test: Tensor, batch_frames: int = 8) -> Tensor:
    """(T, H, W, 3) x2 in [0, 1] -> (T,) float64 LPIPS per frame, `batch_frames` frames per forward."""
    device = model.shift.device
    out = []
    for start in range(0, ref.shape[0], batch_frames):
        a = ref[start:start + batch_frames].to(device).permute(0, 3, 1, 2)  # (t, 3, H, W)
        b = test[start:start + batch_frames].to(device).permute(0, 3, 1, 2)
        out.append(model(a, b).double().cpu())
    return torch.cat(out)


def too_small_reason(net: str, height: int, width: int) -> str | None:
    """Why frames of this size cannot be scored (the last stage would be empty), or None."""
    side = NETS[net].min_side
    if min(height, width) >= side:
        return None
    return f"lpips_{net} needs frames of at least {side}x{side} pixels; these are {width}x{height} (W x H)"


def describe(net: str) -> dict[str, Any]:
    """The protocol an LPIPS value is stated with."""
    return {"version": "lpips v0.1", "backbone": "torchvision " + ("AlexNet" if net == "alex" else "VGG-16"),
            "resolution": "native (no resize)", "aggregation": "mean over frames"}
