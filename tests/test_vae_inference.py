"""The VAE's CPU inference path (models/vae/blocks.py): per-tap packed oneDNN convs on
channels-last activations, weights packed once, reused pre-activation buffers.

Each test compares against the autograd path (one padded conv per call, no caches), in fp64
where the rounding of either side would hide a wrong frame or tap.
"""

from __future__ import annotations

import copy
import pickle

import pytest
import torch

from models.vae import vae_config
from models.vae.blocks import _PACKED, CausalConv3d, DepthToSpaceUpsample

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs oneDNN (CPU PyTorch build)")


def reference(conv: CausalConv3d, x: torch.Tensor) -> torch.Tensor:
    """The conv through the autograd path, in float64."""
    ref = copy.deepcopy(conv).double()
    with torch.enable_grad():
        return ref(x.double()).detach()


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("frames", [1, 2, 3, 6])
@pytest.mark.parametrize("kernel,stride", [(3, 1), (3, 2), (1, 1), ((5, 3, 3), 1)])
def test_inference_conv_matches_padded_conv(causal: bool, frames: int, kernel, stride) -> None:  # type: ignore[no-untyped-def]
    """Every output frame sees the right input frames through the right taps, replicated edge
    frames included (few frames, kt=5), batch elements kept apart; output values equal, strides may not."""
    torch.manual_seed(0)
    conv = CausalConv3d(6, 5, kernel, stride=stride, causal=causal)
    x = torch.randn(2, 6, frames, 6, 4)
    with torch.no_grad():
        fast = conv(x)
    expected = reference(conv, x)
    assert fast.shape == expected.shape
    torch.testing.assert_close(fast.double(), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("frames", [1, 2, 4])
@pytest.mark.parametrize("residual,factor", [(True, 2), (False, 1)])
def test_inference_upsample_matches_autograd_path(frames: int, residual: bool, factor: int) -> None:
    """The inference upsample computes only the kept time phase of the first frame and rearranges in place:
    every output frame, phase and tiled skip channel must still be the autograd path's."""
    torch.manual_seed(0)
    up = DepthToSpaceUpsample(8, (2, 2, 2), residual=residual, factor=factor, causal=False)
    x = torch.randn(1, 8, frames, 3, 4)
    with torch.no_grad():
        fast = up(x)
    ref = copy.deepcopy(up).double()
    with torch.enable_grad():
        expected = ref(x.double()).detach()
    assert fast.shape == expected.shape == (1, 8 // factor, 2 * frames - 1, 6, 8)
    torch.testing.assert_close(fast.double(), expected, atol=1e-5, rtol=1e-5)


def test_packed_weights_follow_weight_changes() -> None:
    """The packed weights are cached: an optimizer-style in-place update and a load_state_dict must
    both be seen by the next forward."""
    torch.manual_seed(0)
    conv = CausalConv3d(4, 4, 3)
    x = torch.randn(1, 4, 3, 5, 5)
    with torch.no_grad():
        before = conv(x).clone()
        conv.weight.mul_(-2.0)  # what an optimizer step does: same storage, bumped version
        after_update = conv(x)
        torch.testing.assert_close(after_update.double(), reference(conv, x), atol=1e-5, rtol=1e-5)
        assert not torch.allclose(after_update, before)
        conv.load_state_dict({"weight": torch.zeros_like(conv.weight), "bias": torch.ones_like(conv.bias)})
        torch.testing.assert_close(conv(x), torch.ones_like(before))


def test_weights_are_packed_for_the_thread_count_they_run_on() -> None:
    """A conv first run at 2 threads and then at 1 packs its weights again for 1 thread (oneDNN lays them out for
    its threads; the 2-thread layout slowed a 1-thread decode by 12-19%), with the same outputs."""
    torch.manual_seed(0)
    conv = CausalConv3d(4, 4, 3)
    x = torch.randn(1, 4, 3, 5, 5)
    threads = torch.get_num_threads()
    try:
        with torch.no_grad():
            outputs = []
            for n in (2, 1):
                torch.set_num_threads(n)
                outputs.append(conv(x).clone())
    finally:
        torch.set_num_threads(threads)
    assert {key[-1] for key in _PACKED[conv]} == {1, 2}
    for out in outputs:
        torch.testing.assert_close(out.double(), reference(conv, x), atol=1e-5, rtol=1e-5)


def test_vae_after_inference_copies_and_pickles() -> None:
    """The packed weights live outside the module: deepcopy (EMA) and pickling (Ray) still work."""
    torch.manual_seed(0)
    vae = vae_config("ltx", "tiny").build().eval()
    video = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    with torch.no_grad():
        out = vae(video, sample_posterior=False)[0]
        twin = pickle.loads(pickle.dumps(copy.deepcopy(vae)))
        torch.testing.assert_close(twin(video, sample_posterior=False)[0], out, atol=0, rtol=0)


def test_vae_inference_outputs_survive_the_next_forward() -> None:
    """Pre-activations go through a reused buffer and residuals are added in place: a forward's
    outputs (reconstruction and latents) must not change when the next forward runs, and must
    equal the autograd path's."""
    torch.manual_seed(0)
    vae = vae_config("ltx", "tiny").build().eval()
    videos = [torch.rand(1, 3, 9, 32, 32) * 2 - 1 for _ in range(2)]
    with torch.no_grad():
        first = vae(videos[0], sample_posterior=False)
        kept = [t.clone() for t in first]
        vae(videos[1], sample_posterior=False)
    for got, want in zip(first, kept):
        torch.testing.assert_close(got, want, atol=0, rtol=0)
    with torch.enable_grad():
        slow = vae(videos[0], sample_posterior=False)
    for got, want in zip(first, slow):
        torch.testing.assert_close(got, want.detach(), atol=1e-5, rtol=1e-5)
