"""LPIPS: parity with the `lpips` package at the same weights, weight files in the real formats, the registry entry.

The package imports torchvision, whose PyPI wheel is built against CUDA torch: beside this CPU
torch its `__init__` fails (it registers C++ operators its `_C.so` could not load), and an
installed-but-broken torchvision also breaks transformers' image processors. So the reference
runs in a subprocess, from the lpips and torchvision wheels the Makefile downloads into
`<venv>/reference-wheels` (pure-Python files only; where torchvision's package `__init__` fails,
it is skipped and its model definitions are imported as they are), else from installed lpips
and torchvision packages.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from evaluation import lpips as ours
from evaluation.metrics import evaluate_pair
from evaluation.weights import WeightsInvalid, resolve_weights
from tests._metric_models import save_lpips

WHEELS = Path(sys.prefix) / "reference-wheels"

# Runs in the subprocess: the lpips package's LPIPS with its shipped v0.1 heads and a random
# torchvision backbone (pnet_rand=True: no download), on frames saved by the test.
_REFERENCE = textwrap.dedent("""
    import importlib.util, json, socket, sys, types
    import numpy as np, torch

    def no_network(*args, **kwargs):
        raise RuntimeError("the lpips reference tried to reach the network")
    socket.socket.connect = no_network  # a download attempt fails at once instead of hanging

    try:
        import torchvision  # noqa: F401  (a CUDA torch: the real package imports)
    except Exception:
        sys.modules.pop("torchvision", None)
        spec = importlib.util.find_spec("torchvision")
        shell = types.ModuleType("torchvision")  # the package without its C++ operator registration
        shell.__path__, shell.__file__ = list(spec.submodule_search_locations), spec.origin
        sys.modules["torchvision"] = shell
        import torchvision.models
        shell.models = torchvision.models

    import lpips
    net, work = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    model = lpips.LPIPS(pretrained=True, net=net, pnet_rand=True, verbose=False).eval()
    backbone = {}
    for key, value in model.net.state_dict().items():  # "slice2.3.weight" -> "features.3.weight"
        backbone["features." + key.split(".", 1)[1]] = value
    torch.save(backbone, f"{work}/backbone.pth")
    frames = np.load(f"{work}/frames.npz")
    ref, test = (torch.from_numpy(frames[k]).permute(0, 3, 1, 2) for k in ("ref", "test"))
    with torch.no_grad():
        values = model(ref, test, normalize=True).flatten().double().tolist()
    heads = str(__import__("pathlib").Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth")
    json.dump({"values": values, "heads": heads}, open(f"{work}/reference.json", "w"))
""")


def _reference_pythonpath(work: Path) -> str | None:
    """PYTHONPATH for the reference: the wheels' Python files, else "" for installed packages, else None.

    Nothing is imported here: a torchvision that fails half-way through its import would stay
    in this process's sys.modules and break transformers for the tests that follow.
    """
    wheels = {name: sorted(WHEELS.glob(f"{name}-*.whl")) for name in ("lpips", "torchvision")}
    if all(wheels.values()):
        site = work / "site"
        for files in wheels.values():
            with zipfile.ZipFile(files[-1]) as archive:
                archive.extractall(site, [n for n in archive.namelist() if not n.endswith(".so")])
        return str(site)
    if importlib.util.find_spec("lpips") and importlib.util.find_spec("torchvision"):
        return ""
    return None


@pytest.mark.parametrize("net", ["alex", pytest.param("vgg", marks=pytest.mark.slow)])  # vgg: ~30 s (lpips builds all of VGG-16)
def test_lpips_equals_the_lpips_package_at_the_same_weights(tmp_path, net):
    pythonpath = _reference_pythonpath(tmp_path)
    if pythonpath is None:
        pytest.skip(f"the lpips reference needs the lpips and torchvision wheels in {WHEELS} (`make test` downloads them)")
    rng = np.random.default_rng(1)
    ref = rng.random((3, 64, 48, 3), dtype=np.float32)
    test = np.clip(ref + rng.normal(0, 0.1, ref.shape), 0, 1).astype(np.float32)
    np.savez(tmp_path / "frames.npz", ref=ref, test=test)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (pythonpath, os.environ.get("PYTHONPATH", "")) if p)}
    subprocess.run([sys.executable, "-c", _REFERENCE, net, str(tmp_path)], check=True, env=env, timeout=300)
    reference = json.loads((tmp_path / "reference.json").read_text())

    weights = resolve_weights({f"lpips_{net}": str(tmp_path / "backbone.pth"), f"lpips_{net}_head": reference["heads"]})
    result = evaluate_pair(ref, test, [f"lpips_{net}"], weights=weights)[f"lpips_{net}"]
    np.testing.assert_allclose(result.per_frame, reference["values"], rtol=0, atol=1e-6)
    assert result.value == pytest.approx(np.mean(reference["values"]), abs=1e-6)
    assert min(reference["values"]) > 1e-4  # the frames differ: the comparison is not 0 == 0


def _weights(tmp_path: Path, net: str):
    backbone, heads = save_lpips(tmp_path, net)
    return resolve_weights({f"lpips_{net}": str(backbone), f"lpips_{net}_head": str(heads)}, environ={})


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_is_zero_for_identical_frames_and_grows_with_damage(tmp_path, net):
    weights = _weights(tmp_path, net)
    rng = np.random.default_rng(2)
    ref = rng.random((2, 40, 40, 3), dtype=np.float32)
    mild = np.clip(ref + rng.normal(0, 0.02, ref.shape), 0, 1)
    strong = np.clip(ref + rng.normal(0, 0.3, ref.shape), 0, 1)
    name = f"lpips_{net}"
    same, good, bad = (evaluate_pair(ref, x, [name], weights=weights)[name] for x in (ref, mild, strong))
    assert same.value == pytest.approx(0.0, abs=1e-7) and len(same.per_frame) == 2
    assert 0 < good.value < bad.value


def test_batching_frames_does_not_change_values(tmp_path):
    model, provenance = ours.load_lpips("alex", _weights(tmp_path, "alex"))
    rng = np.random.default_rng(3)
    ref, test = (torch.from_numpy(rng.random((5, 48, 40, 3), dtype=np.float32)) for _ in range(2))
    one = ours.lpips_per_frame(model, ref, test, batch_frames=1)
    five = ours.lpips_per_frame(model, ref, test, batch_frames=5)
    torch.testing.assert_close(one, five, rtol=0, atol=1e-6)
    assert len(provenance["backbone_sha256"]) == 64 and len(provenance["head_sha256"]) == 64


def test_missing_small_and_wrong_weights(tmp_path):
    rng = np.random.default_rng(4)
    video = rng.random((2, 40, 40, 3), dtype=np.float32)
    missing = evaluate_pair(video, video, ["lpips_vgg"], weights=resolve_weights({}, environ={}))["lpips_vgg"]
    assert missing.value is None
    assert missing.not_applicable.startswith("lpips_vgg needs vgg16-397923af.pth") and "eval.weights.lpips_vgg" in missing.not_applicable
    weights = _weights(tmp_path, "alex")
    tiny = evaluate_pair(video[:, :20, :20], video[:, :20, :20], ["lpips_alex"], weights=weights)["lpips_alex"]
    assert tiny.value is None and "at least 31x31" in tiny.not_applicable
    torch.save({"features.0.weight": torch.zeros(2, 2)}, tmp_path / "bad.pth")
    with pytest.raises(WeightsInvalid, match="features.0.weight"):
        evaluate_pair(video, video, ["lpips_alex"], weights=resolve_weights(
            {"lpips_alex": str(tmp_path / "bad.pth"), "lpips_alex_head": str(tmp_path / "alex_heads.pth")}, environ={}))


def test_weights_resolve_from_the_ltxlab_weights_folder(tmp_path):
    backbone, heads = save_lpips(tmp_path, "alex")
    backbone.rename(tmp_path / "alexnet-owt-7be5be79.pth")
    heads.rename(tmp_path / "lpips_v0.1_alex.pth")
    weights = resolve_weights(None, environ={"LTXLAB_WEIGHTS": str(tmp_path)})
    video = np.random.default_rng(5).random((1, 32, 32, 3), dtype=np.float32)
    assert evaluate_pair(video, video, ["lpips_alex"], weights=weights)["lpips_alex"].value == pytest.approx(0, abs=1e-7)


def test_heads_default_to_the_installed_lpips_package_file_without_importing_it(tmp_path, monkeypatch):
    package = tmp_path / "site" / "lpips"
    (package / "weights" / "v0.1").mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('importing lpips would import torchvision')\n")
    _, heads = save_lpips(tmp_path, "alex")
    heads.rename(package / "weights" / "v0.1" / "alex.pth")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    weights = resolve_weights(None, environ={})
    assert weights.find("lpips_alex_head") == package / "weights" / "v0.1" / "alex.pth"
    assert weights.find("lpips_alex") is None  # the backbone never has a default: it is the user's file
