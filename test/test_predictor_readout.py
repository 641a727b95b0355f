"""Each family's read-out and normals frame, from decoded values with a known meaning; and every family
at latent sizes that are not a multiple of the UNet's down-sampling factor.

The expected normals are the authors' conventions written as directions, independent of the code:
- E2E-FT and Lotus (DSINE convention, checked in their loaders and evaluation): +x points left,
  +y up in the image, +z toward the camera.
- Marigold, prs-eth (diffusers' visualize_normals docs): +x right, +y up, +z toward the viewer.
- ROS optical frame (REP 103): x right, y down, z forward (away from the camera). So "facing the
  camera" is (0, 0, -1), "pointing up in the image" (0, -1, 0), "pointing left" (-1, 0, 0).
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from predictor_fixtures import cached_predictor, random_rgb, tiny_model

from depth_ft_ros.model.families import FAMILIES
from depth_ft_ros.model.predictor import DepthFtPredictor

FACING_CAMERA = (0.0, 0.0, -1.0)
UP_IN_IMAGE = (0.0, -1.0, 0.0)
LEFT = (-1.0, 0.0, 0.0)
RIGHT = (1.0, 0.0, 0.0)
SQRT_HALF = float(np.sqrt(0.5))


def _normals_from_constant_decode(
    family: str | DepthFtPredictor, decoded_vector: tuple[float, float, float], monkeypatch
) -> np.ndarray:
    """The predictor's normals when its VAE decodes `decoded_vector` at every pixel (48x64 frame
    processed at 32x24 and resized back, so the resize path runs too)."""
    predictor = family
    if isinstance(family, str):
        predictor = cached_predictor(family, processing_resolution=32)  # monkeypatch restores its VAE

    def decode(latent: torch.Tensor, return_dict: bool = False) -> tuple[torch.Tensor]:
        batch, _, height, width = latent.shape
        value = torch.tensor(decoded_vector, dtype=latent.dtype).view(1, 3, 1, 1)
        return (value.expand(batch, 3, height * 8, width * 8).clone(),)

    monkeypatch.setattr(predictor.vae, "decode", decode)
    normals = predictor.predict(random_rgb(48, 64)).normals
    assert normals.shape == (48, 64, 3)
    return normals


@pytest.mark.parametrize("family", ["e2e-ft-normals", "lotus-g-normals", "lotus-d-normals"])
@pytest.mark.parametrize(
    ("meaning", "decoded", "optical"),
    [
        ("toward the camera", (0.0, 0.0, 1.0), FACING_CAMERA),
        ("up in the image", (0.0, 1.0, 0.0), UP_IN_IMAGE),
        ("left in the image", (1.0, 0.0, 0.0), LEFT),
    ],
)
def test_e2e_ft_and_lotus_directions_in_the_optical_frame(family, meaning, decoded, optical, monkeypatch):
    normals = _normals_from_constant_decode(family, decoded, monkeypatch)
    np.testing.assert_allclose(normals, np.broadcast_to(optical, normals.shape), atol=1e-6, err_msg=meaning)


@pytest.mark.parametrize(
    ("meaning", "decoded", "optical"),
    [
        ("toward the viewer", (0.0, 0.0, 1.0), FACING_CAMERA),
        ("up in the image", (0.0, 1.0, 0.0), UP_IN_IMAGE),
        ("right in the image", (1.0, 0.0, 0.0), RIGHT),
    ],
)
def test_marigold_directions_in_the_optical_frame(meaning, decoded, optical, monkeypatch):
    normals = _normals_from_constant_decode("marigold-normals", decoded, monkeypatch)
    np.testing.assert_allclose(normals, np.broadcast_to(optical, normals.shape), atol=1e-6, err_msg=meaning)


@pytest.mark.parametrize(
    ("family", "optical"),
    [
        # E2E-FT authors: normalise without clipping: (0, 3, 1) / sqrt(10), up and toward the camera.
        ("e2e-ft-normals", (0.0, -3 / np.sqrt(10), -1 / np.sqrt(10))),
        # diffusers (prs-eth Marigold): clip to [-1, 1] first: (0, 1, 1) / sqrt(2).
        ("marigold-normals", (0.0, -SQRT_HALF, -SQRT_HALF)),
        # Lotus authors: (x/2 + 0.5).clamp(0, 1) * 2 - 1 clips too.
        ("lotus-g-normals", (0.0, -SQRT_HALF, -SQRT_HALF)),
    ],
)
def test_each_family_reads_out_long_vectors_as_its_authors(family, optical, monkeypatch):
    normals = _normals_from_constant_decode(family, (0.0, 3.0, 1.0), monkeypatch)
    np.testing.assert_allclose(normals, np.broadcast_to(optical, normals.shape), atol=1e-6)


@pytest.mark.parametrize("shape", [(72, 104), (50, 70)])  # latents 9x13, and 7x9 after padding to 8 px
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_runs_at_latent_sizes_that_are_not_multiples_of_the_unet_factor(family, shape):
    prediction = cached_predictor(family, processing_resolution=0).predict(random_rgb(*shape, seed=6))
    assert prediction.processing_hw == shape
    if prediction.normals is not None:
        assert prediction.normals.shape == (*shape, 3)
        np.testing.assert_allclose(np.linalg.norm(prediction.normals, axis=-1), 1.0, atol=1e-5)
    else:
        assert prediction.relative.shape == shape
        assert np.isfinite(prediction.relative).all()
        assert prediction.relative.min() >= 0 and prediction.relative.max() <= 1


def test_marigold_normals_trained_with_the_e2e_ft_code_read_out_as_e2e_ft(tmp_path, monkeypatch):
    # GonzaloMG's Marigold-normals estimator was trained with the E2E-FT code: its frame and read-out.
    folder = shutil.copytree(tiny_model("marigold-normals"), tmp_path / "gonzalomg-marigold-normals")
    predictor = DepthFtPredictor.from_pretrained(folder, processing_resolution=32)
    assert predictor.family == "marigold-normals"
    normals = _normals_from_constant_decode(predictor, (0.0, 3.0, 1.0), monkeypatch)
    expected = (0.0, -3 / np.sqrt(10), -1 / np.sqrt(10))  # up and toward the camera, not clipped
    np.testing.assert_allclose(normals, np.broadcast_to(expected, normals.shape), atol=1e-6)
