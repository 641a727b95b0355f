"""Optional speed paths (half precision, channels_last, attention kernel, torch.compile, CUDA) against
the plain float32 CPU path.

Normals are unit vectors of the decoded 3-vector; where a random tiny network decodes a nearly zero
vector, normalising amplifies rounding, so normals are compared by angle statistics (half precision)
or with a looser absolute bound (float32 paths) than depth.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from predictor_fixtures import cached_predictor, random_rgb, tiny_model

from depth_ft_ros.model.predictor import DepthFtPredictor

RESOLUTION = 128
DEPTH_FP32_TOL = 5e-5  # channels_last kernels sum in another order: 1.3e-5 seen (4-level tiny UNet)
NORMALS_FP32_TOL = 1e-3  # see the module docstring
# Half precision against float32 (tiny random models, 96x128 frame):
# (max abs depth error, mean abs depth error, mean normals angle in degrees)
HALF_TOLERANCES = {torch.float16: (2e-2, 2e-3, 2.0), torch.bfloat16: (1.5e-1, 1e-2, 8.0)}

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _frame() -> np.ndarray:
    return random_rgb(96, 128, seed=11)


def _angles_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.degrees(np.arccos(np.clip((a * b).sum(axis=-1), -1.0, 1.0)))


def _assert_close_to_reference(family: str, prediction, tolerances: tuple[float, float, float]) -> None:
    reference = cached_predictor(family, processing_resolution=RESOLUTION).predict(_frame())
    max_tol, mean_tol, angle_tol = tolerances
    if reference.normals is not None:
        assert prediction.normals.dtype == np.float32
        assert _angles_deg(prediction.normals, reference.normals).mean() < angle_tol
        return
    error = np.abs(prediction.relative - reference.relative)
    assert prediction.relative.dtype == np.float32  # post-processing in float32 whatever the network ran in
    assert error.max() < max_tol and error.mean() < mean_tol, (error.max(), error.mean())


@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
@pytest.mark.parametrize("family", ["e2e-ft-depth", "e2e-ft-normals", "lotus-g-disparity"])
def test_half_precision_on_cpu_is_close_to_float32(family, dtype):
    predictor = DepthFtPredictor.from_pretrained(
        tiny_model(family), device="cpu", dtype=dtype, processing_resolution=RESOLUTION
    )
    assert predictor.dtype in HALF_TOLERANCES
    _assert_close_to_reference(family, predictor.predict(_frame()), HALF_TOLERANCES[predictor.dtype])


@pytest.mark.parametrize("options", [{"channels_last": True}, {"attention": "eager"}])
@pytest.mark.parametrize("family", ["e2e-ft-depth", "e2e-ft-normals", "lotus-d-depth"])
def test_float32_speed_options_match_the_plain_path(family, options):
    plain = cached_predictor(family, processing_resolution=RESOLUTION).predict(_frame())
    fast = DepthFtPredictor.from_pretrained(tiny_model(family), processing_resolution=RESOLUTION, **options)
    result = fast.predict(_frame())
    if plain.normals is not None:
        np.testing.assert_allclose(result.normals, plain.normals, atol=NORMALS_FP32_TOL, rtol=0)
    else:
        np.testing.assert_allclose(result.relative, plain.relative, atol=DEPTH_FP32_TOL, rtol=0)


@pytest.mark.slow
def test_torch_compile_matches_the_plain_path():
    plain = cached_predictor("e2e-ft-depth", processing_resolution=RESOLUTION).predict(_frame())
    compiled = DepthFtPredictor.from_pretrained(
        tiny_model("e2e-ft-depth"), processing_resolution=RESOLUTION, compile=True
    )
    np.testing.assert_allclose(compiled.predict(_frame()).depth, plain.depth, atol=1e-4, rtol=0)


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("dtype", ["fp32", "fp16", "bf16"])
def test_cuda_matches_cpu(dtype):
    predictor = DepthFtPredictor.from_pretrained(
        tiny_model("e2e-ft-depth"), device="auto", dtype=dtype, processing_resolution=RESOLUTION
    )
    assert predictor.device.type == "cuda"
    tolerances = (1e-4, 1e-5, 0.1) if dtype == "fp32" else HALF_TOLERANCES[predictor.dtype]
    _assert_close_to_reference("e2e-ft-depth", predictor.predict(_frame()), tolerances)


@pytest.mark.cuda
@cuda
def test_cuda_auto_dtype_channels_last_and_close_frees_memory():
    before = torch.cuda.memory_allocated()
    predictor = DepthFtPredictor.from_pretrained(
        tiny_model("e2e-ft-normals"), processing_resolution=RESOLUTION, channels_last=True
    )
    assert predictor.dtype == torch.float16  # "auto" on CUDA
    prediction = predictor.predict(_frame())
    np.testing.assert_allclose(np.linalg.norm(prediction.normals, axis=-1), 1.0, atol=1e-4)
    assert prediction.timings_ms["unet"] > 0
    assert torch.cuda.memory_allocated() > before
    predictor.close()
    assert torch.cuda.memory_allocated() <= before


@pytest.mark.cuda
@cuda
def test_cuda_lotus_g_default_noise_matches_cpu():
    # The fixed Gaussian latent is drawn on a CPU generator: the same start latent on every device.
    predictor = DepthFtPredictor.from_pretrained(
        tiny_model("lotus-g-disparity"), device="cuda", dtype="fp32", processing_resolution=RESOLUTION
    )
    _assert_close_to_reference("lotus-g-disparity", predictor.predict(_frame()), (1e-4, 1e-5, 0.1))
