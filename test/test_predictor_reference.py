"""The predictor against independent references on tiny checkpoints.

E2E-FT and Marigold few-step: diffusers' MarigoldDepthPipeline / MarigoldNormalsPipeline (DDPM
trailing scheduler for the 1-step E2E-FT case, the checkpoint's DDIM with trailing spacing for
few-step), zero latents, ensemble 1, same processing resolution.
Lotus: the formulas from the Lotus paper/code written out here with the diffusers UNet and VAE.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from predictor_fixtures import cached_predictor, diffusers_parts, random_rgb, rgb_to_unit_tensor, tiny_model

from depth_ft_ros.core.predictor import DepthFtPredictor

FP32_TOL = 1e-5
# Normals frames written out from the sources (see families/base.py), independent of the code:
# E2E-FT / Lotus: +X left, +Y up, +Z toward camera -> optical (x right, y down, z forward) negates all.
E2E_TO_OPTICAL = np.array([-1.0, -1.0, -1.0], dtype=np.float32)
# Marigold (diffusers docs): X right, Y up, Z toward viewer -> optical negates y and z.
MARIGOLD_TO_OPTICAL = np.array([1.0, -1.0, -1.0], dtype=np.float32)


def _diffusers_pipeline(family: str, scheduler_kind: str):
    from diffusers import DDIMScheduler, DDPMScheduler, MarigoldDepthPipeline, MarigoldNormalsPipeline

    model_dir = tiny_model(family)
    parts = diffusers_parts(model_dir)
    scheduler_cls = DDPMScheduler if scheduler_kind == "ddpm" else DDIMScheduler
    scheduler = scheduler_cls.from_pretrained(model_dir, subfolder="scheduler", timestep_spacing="trailing")
    cls = MarigoldNormalsPipeline if family.endswith("normals") else MarigoldDepthPipeline
    pipe = cls(scheduler=scheduler, **parts)  # computes its own empty-text embedding
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _run_diffusers(pipe, rgb: np.ndarray, processing_resolution: int, steps: int) -> np.ndarray:
    height, width = rgb.shape[:2]
    if processing_resolution > 0:
        longest = max(height, width)
        height, width = height * processing_resolution // longest, width * processing_resolution // longest
    latents = torch.zeros(1, 4, -(-height // 8), -(-width // 8))
    torch.manual_seed(0)  # DDPM's last step draws (1e-10-scaled) noise from the global generator
    out = pipe(
        rgb_to_unit_tensor(rgb), num_inference_steps=steps, ensemble_size=1,
        processing_resolution=processing_resolution, match_input_resolution=True, latents=latents,
        output_type="np",
    )
    return out.prediction[0]


@pytest.mark.parametrize(
    ("family", "shape", "resolution", "pad_multiple"),
    [
        ("e2e-ft-depth", (90, 120), 128, None),  # downscale, 96x128 needs no padding
        ("e2e-ft-depth", (50, 70), 0, 8),  # native, padded 50x70 -> 56x72 like diffusers
        ("e2e-ft-normals", (90, 120), 128, None),
        ("e2e-ft-normals", (45, 61), 56, 8),  # upscale and pad, odd sizes
    ],
)
def test_e2e_ft_equals_diffusers_marigold_pipeline(family, shape, resolution, pad_multiple):
    rgb = random_rgb(*shape, seed=1)
    options = {"pad_multiple": pad_multiple} if pad_multiple else {}
    predictor = cached_predictor(family, processing_resolution=resolution, **options)
    ours = predictor.predict(rgb)
    expected = _run_diffusers(_diffusers_pipeline(family, "ddpm"), rgb, resolution, steps=1)
    if family.endswith("depth"):
        assert ours.depth.shape == shape
        np.testing.assert_allclose(ours.depth, expected[..., 0], atol=FP32_TOL, rtol=0)
    else:
        assert ours.normals.shape == (*shape, 3)
        np.testing.assert_allclose(ours.normals, expected * E2E_TO_OPTICAL, atol=FP32_TOL, rtol=0)


@pytest.mark.parametrize("steps", [2, 4])
@pytest.mark.parametrize("family", ["marigold-depth", "marigold-normals"])
def test_marigold_few_step_equals_diffusers(family, steps):
    rgb = random_rgb(60, 80, seed=2)
    predictor = cached_predictor(family, processing_resolution=64, num_inference_steps=steps)
    ours = predictor.predict(rgb)
    expected = _run_diffusers(_diffusers_pipeline(family, "ddim"), rgb, 64, steps=steps)
    if family.endswith("depth"):
        np.testing.assert_allclose(ours.depth, expected[..., 0], atol=FP32_TOL, rtol=0)
    else:
        np.testing.assert_allclose(ours.normals, expected * MARIGOLD_TO_OPTICAL, atol=FP32_TOL, rtol=0)


def _lotus_reference(family: str, rgb: np.ndarray, noise: torch.Tensor | None) -> np.ndarray:
    """Lotus, written out: mean-encode, UNet at t=999 with class label cat(sin[1,0], cos[1,0]), the
    output is x0 ("sample"), decode, (x/2+0.5).clamp(0,1), channel mean or *2-1 normals."""
    parts = diffusers_parts(tiny_model(family))
    tokens = parts["tokenizer"]("", padding="do_not_pad", return_tensors="pt").input_ids
    vae, unet = parts["vae"], parts["unet"]
    with torch.no_grad():
        text = parts["text_encoder"](tokens)[0]
        image = rgb_to_unit_tensor(rgb) * 2 - 1
        latent = vae.encode(image).latent_dist.mean * vae.config.scaling_factor
        unet_input = torch.cat([latent, noise], dim=1) if noise is not None else latent
        task = torch.tensor([[1.0, 0.0]])  # as the Lotus authors build it (float32 torch sin/cos)
        label = torch.cat([torch.sin(task), torch.cos(task)], dim=-1)
        x0 = unet(unet_input, 999, encoder_hidden_states=text, class_labels=label).sample
        decoded = vae.decode(x0 / vae.config.scaling_factor).sample
    image01 = (decoded / 2 + 0.5).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    if family.endswith("normals"):
        normals = image01 * 2 - 1
        return normals / np.maximum(np.linalg.norm(normals, axis=-1, keepdims=True), 1e-6)
    return image01.mean(axis=-1)


@pytest.mark.parametrize(
    ("family", "noise"),
    [
        ("lotus-g-disparity", "zeros"),
        ("lotus-g-normals", "zeros"),
        ("lotus-d-depth", "zeros"),
        ("lotus-d-normals", "zeros"),
        ("lotus-g-depth", "gaussian"),
    ],
)
def test_lotus_equals_written_out_formula(family, noise):
    rgb = random_rgb(64, 96, seed=3)  # native resolution, a multiple of 16: no resize, no padding
    seed = 7
    predictor = DepthFtPredictor.from_pretrained(
        tiny_model(family), device="cpu", processing_resolution=0, noise=noise, seed=seed
    )
    ours = predictor.predict(rgb)
    noise_latent = None
    if "-g-" in family:
        shape = (1, 4, 64 // 8, 96 // 8)
        noise_latent = (
            torch.zeros(shape) if noise == "zeros"
            else torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed))
        )
    expected = _lotus_reference(family, rgb, noise_latent)
    if family.endswith("normals"):
        np.testing.assert_allclose(ours.normals, expected * E2E_TO_OPTICAL, atol=FP32_TOL, rtol=0)
    elif family.endswith("disparity"):
        assert ours.depth is None and ours.space == "disparity"
        np.testing.assert_allclose(ours.disparity, expected, atol=FP32_TOL, rtol=0)
    else:
        np.testing.assert_allclose(ours.depth, expected, atol=FP32_TOL, rtol=0)


def test_lotus_gaussian_noise_changes_the_output_and_is_seeded():
    rgb = random_rgb(32, 48, seed=4)
    zeros = cached_predictor("lotus-g-depth", processing_resolution=0).predict(rgb).depth
    gauss_a = cached_predictor("lotus-g-depth", processing_resolution=0, noise="gaussian", seed=1).predict(rgb)
    gauss_b = cached_predictor("lotus-g-depth", processing_resolution=0, noise="gaussian", seed=1).predict(rgb)
    assert np.abs(gauss_a.depth - zeros).max() > 1e-4
    np.testing.assert_array_equal(gauss_a.depth, gauss_b.depth)
