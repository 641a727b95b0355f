"""Models.predict: the frames of several cameras through one copy of each network, batched.

The reference for every frame is the predictor run on that frame alone (`predict`), which the predictor tests hold
equal to diffusers' pipelines and the authors' read-out."""

from __future__ import annotations

import numpy as np
import pytest
from predictor_fixtures import cached_predictor, random_rgb

from depth_ft_ros.errors import InputError
from depth_ft_ros.model.networks import Models


@pytest.fixture(scope="module")
def models() -> Models:
    return Models(cached_predictor("e2e-ft-depth", processing_resolution=64),
                  cached_predictor("e2e-ft-normals", processing_resolution=64))


def test_frames_of_one_processing_size_share_a_forward_and_equal_each_frame_alone(models: Models) -> None:
    # 64x48 and 128x96 are both seen at 64x48; 40x40 at 64x64: two forwards.
    frames = [random_rgb(48, 64, seed=1), random_rgb(96, 128, seed=2), random_rgb(40, 40, seed=3),
              random_rgb(48, 64, seed=4)]
    out = models.predict(frames, [True] * 4)
    assert [o.batch_size for o in out] == [3, 3, 1, 3]
    assert models.depth is not None and models.normals is not None
    for frame, o in zip(frames, out, strict=True):
        assert o.error is None and o.relative is not None and o.normals is not None
        assert o.relative.shape == frame.shape[:2] and o.normals.shape == frame.shape
        np.testing.assert_allclose(o.relative, models.depth.predict(frame).depth, atol=1e-5)
        # Unit normals: a batch's other kernels change the last float bits, amplified where x, y ~ 0 before
        # normalisation (as in the predictor's own read-out tests).
        alone = models.normals.predict(frame).normals
        assert alone is not None
        np.testing.assert_allclose(o.normals, alone, atol=1e-3)
        assert np.mean(np.abs(o.normals - alone) <= 1e-4) > 0.999
        # Encoded once for both networks: the normals report no encode of their own.
        assert o.timings_ms["depth.encode"] > 0 and o.timings_ms["normals.encode"] == 0


def test_max_batch_and_normals_wanted_per_frame(models: Models) -> None:
    frames = [random_rgb(48, 64, seed=s) for s in range(3)]
    out = models.predict(frames, [True, False, True], max_batch=1)
    assert [o.batch_size for o in out] == [1, 1, 1]
    assert out[1].normals is None and out[0].normals is not None and out[2].normals is not None
    out = models.predict(frames, [False] * 3, max_batch=2)
    assert [o.batch_size for o in out] == [2, 2, 1]


def test_a_frame_the_network_refuses_fails_alone(models: Models) -> None:
    frames = [random_rgb(48, 64, seed=1), np.zeros((48, 64), np.uint8), random_rgb(48, 64, seed=2)]
    out = models.predict(frames, [False] * 3)
    assert isinstance(out[1].error, InputError) and "HxWx3" in str(out[1].error)
    assert models.depth is not None
    for i in (0, 2):
        assert out[i].error is None
        np.testing.assert_allclose(out[i].relative, models.depth.predict(frames[i]).depth, atol=1e-5)


def test_parameter_bytes_count_each_network_once(models: Models) -> None:
    assert models.depth is not None and models.normals is not None
    unet = sum(p.numel() * p.element_size() for p in models.depth.runner.unet.parameters())  # type: ignore[attr-defined]
    assert models.parameter_bytes() > 2 * unet  # two UNets and their VAEs
