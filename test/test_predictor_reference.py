"""The predictor against independent references on tiny checkpoints.

E2E-FT depth and Marigold few-step: diffusers' MarigoldDepthPipeline / MarigoldNormalsPipeline (DDPM
trailing scheduler for the 1-step E2E-FT case, the checkpoint's DDIM with trailing spacing for
few-step), the same start latent, ensemble 1, same processing resolution.
E2E-FT normals: the authors' read-out written out (no clip before normalising, antialiased resize back).
Lotus: the formulas from the Lotus paper/code written out here with the diffusers UNet and VAE.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from predictor_fixtures import cached_predictor, diffusers_parts, random_rgb, rgb_to_unit_tensor, tiny_model
from skimage.data import stereo_motorcycle

from depth_ft_ros.model.predictor import DepthFtPredictor

FP32_TOL = 1e-5
# Normals of a random tiny network: where the decoded vector is nearly zero, normalising amplifies
# float32 rounding (see test_predictor_speed_paths).
NORMALS_TOL = 1e-4
# Normals frames written out from the sources (see families/base.py), independent of the code:
# E2E-FT / Lotus: +X left, +Y up, +Z toward camera -> optical (x right, y down, z forward) negates all.
E2E_TO_OPTICAL = np.array([-1.0, -1.0, -1.0], dtype=np.float32)
# Marigold (diffusers docs): X right, Y up, Z toward viewer -> optical negates y and z.
MARIGOLD_TO_OPTICAL = np.array([1.0, -1.0, -1.0], dtype=np.float32)


@functools.cache
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


def _processing_hw(shape: tuple[int, int], processing_resolution: int) -> tuple[int, int]:
    height, width = shape
    if processing_resolution > 0:
        longest = max(height, width)
        height, width = height * processing_resolution // longest, width * processing_resolution // longest
    return height, width


def _run_diffusers(pipe, rgb: np.ndarray, processing_resolution: int, steps: int, latents=None) -> np.ndarray:
    height, width = _processing_hw(rgb.shape[:2], processing_resolution)
    if latents is None:
        latents = torch.zeros(1, 4, -(-height // 8), -(-width // 8))
    torch.manual_seed(0)  # DDPM's last step draws (1e-10-scaled) noise from the global generator
    out = pipe(
        rgb_to_unit_tensor(rgb), num_inference_steps=steps, ensemble_size=1,
        processing_resolution=processing_resolution, match_input_resolution=True, latents=latents,
        output_type="np",
    )
    return out.prediction[0]


def _frame(name: str) -> np.ndarray:
    if name == "middlebury":
        return stereo_motorcycle()[0]  # Middlebury 2014 Motorcycle, 741x500 (evaluation/middlebury.py's frame)
    width, height = (int(v) for v in name.split("x"))
    return random_rgb(height, width, seed=1)


# The proof of "package defaults == diffusers": every frame size x processing resolution. The default
# run keeps the cases that reach each path (640x480@768 the usual camera; 1280x720@768 a latent height
# of 54, not a multiple of the UNet's 8; Middlebury@384 padded rows and a latent of 33 rows); the
# others are slow (full-resolution VAE on 2 CPU cores).
_FAST = {("640x480", 768), ("1280x720", 768), ("middlebury", 384)}
_E2E_FT_DEPTH_CASES = [
    pytest.param(frame, resolution, marks=() if (frame, resolution) in _FAST else pytest.mark.slow)
    for frame in ("640x480", "1280x720", "middlebury")
    for resolution in (768, 384, 0)
]


@pytest.mark.parametrize(("frame", "resolution"), _E2E_FT_DEPTH_CASES)
def test_e2e_ft_depth_defaults_equal_diffusers_marigold_depth_pipeline(frame, resolution):
    rgb = _frame(frame)
    ours = cached_predictor("e2e-ft-depth", processing_resolution=resolution).predict(rgb)  # no options
    expected = _run_diffusers(_diffusers_pipeline("e2e-ft-depth", "ddpm"), rgb, resolution, steps=1)
    assert ours.depth.shape == rgb.shape[:2]
    np.testing.assert_allclose(ours.depth, expected[..., 0], atol=FP32_TOL, rtol=0)


def _e2e_ft_normals_reference(rgb: np.ndarray, processing_resolution: int) -> np.ndarray:
    """E2E-FT's normals inference written out from the authors' Marigold/marigold/marigold_pipeline.py
    with the diffusers modules: antialiased resize to the processing size, latent mean x scaling
    factor, zeros, UNet at t=999, x0 through a DDPM trailing scheduler (their checkpoints' scheduler),
    decode, normalise by (norm + 1e-5) without clipping, resize back bilinear with antialias=True;
    then unit length (where the authors clip; by design). Processing sizes here are multiples of 8,
    so diffusers' padding (the authors have none) does not enter."""
    from diffusers import DDPMScheduler

    model_dir = tiny_model("e2e-ft-normals")
    parts = diffusers_parts(model_dir)
    vae, unet = parts["vae"], parts["unet"]
    scheduler = DDPMScheduler.from_pretrained(model_dir, subfolder="scheduler", timestep_spacing="trailing")
    scheduler.set_timesteps(1)
    hw = _processing_hw(rgb.shape[:2], processing_resolution)
    assert hw[0] % 8 == 0 and hw[1] % 8 == 0
    tokens = parts["tokenizer"]("", padding="do_not_pad", return_tensors="pt").input_ids
    with torch.no_grad():
        text = parts["text_encoder"](tokens)[0]
        image = F.interpolate(rgb_to_unit_tensor(rgb), hw, mode="bilinear", antialias=True) * 2 - 1
        latent = vae.encode(image).latent_dist.mean * vae.config.scaling_factor
        noisy = torch.zeros_like(latent)
        (t,) = scheduler.timesteps
        assert int(t) == 999
        output = unet(torch.cat([latent, noisy], dim=1), t, encoder_hidden_states=text).sample
        x0 = scheduler.step(output, t, noisy).pred_original_sample
        decoded = vae.decode(x0 / vae.config.scaling_factor).sample
        normals = decoded / (decoded.norm(dim=1, keepdim=True) + 1e-5)
        normals = F.interpolate(normals, rgb.shape[:2], mode="bilinear", antialias=True)
    normals = normals / normals.norm(dim=1, keepdim=True)
    return normals[0].permute(1, 2, 0).numpy()


@pytest.mark.parametrize(
    ("shape", "resolution"),
    [
        ((90, 120), 128),  # enlarged for processing (96x128), shrunk back: antialiased
        ((96, 128), 64),  # shrunk for processing (48x64), enlarged back: bilinear
    ],
)
def test_e2e_ft_normals_equal_the_authors_read_out(shape, resolution):
    rgb = random_rgb(*shape, seed=1)
    ours = cached_predictor("e2e-ft-normals", processing_resolution=resolution).predict(rgb)
    expected = _e2e_ft_normals_reference(rgb, resolution) * E2E_TO_OPTICAL
    assert ours.normals.shape == (*shape, 3)
    # Float32 rounding, amplified where the random network decodes short vectors (no clip to hide it
    # here): a few components differ by up to 1e-3, 99 % by less than 1e-4.
    np.testing.assert_allclose(ours.normals, expected, atol=1e-3, rtol=0)
    assert np.quantile(np.abs(ours.normals - expected), 0.99) < NORMALS_TOL


def _fixed_gaussian(hw: tuple[int, int], seed: int = 0) -> torch.Tensor:
    """The documented default start latent: N(0, 1) of the frame's latent size from a CPU generator."""
    shape = (1, 4, -(-hw[0] // 8), -(-hw[1] // 8))
    return torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed))


@pytest.mark.parametrize(
    ("family", "shape", "resolution"),
    [
        ("marigold-depth", (60, 80), 64),
        ("marigold-normals", (60, 80), 64),  # enlarged back
        ("marigold-normals", (45, 61), 72),  # 53x72 padded to 56x72, shrunk back
    ],
)
def test_marigold_defaults_equal_diffusers(family, shape, resolution):
    """prs-eth Marigold with the package defaults (the checkpoint's default steps capped to 4, DDIM
    trailing, fixed-seed Gaussian start) against diffusers' pipeline given that start latent."""
    rgb = random_rgb(*shape, seed=2)
    predictor = cached_predictor(family, processing_resolution=resolution)
    assert predictor.num_inference_steps == 4
    ours = predictor.predict(rgb)
    latents = _fixed_gaussian(_processing_hw(shape, resolution))
    expected = _run_diffusers(_diffusers_pipeline(family, "ddim"), rgb, resolution, steps=4, latents=latents)
    if family.endswith("depth"):
        np.testing.assert_allclose(ours.depth, expected[..., 0], atol=FP32_TOL, rtol=0)
    else:
        np.testing.assert_allclose(ours.normals, expected * MARIGOLD_TO_OPTICAL, atol=1e-4, rtol=0)


@pytest.mark.parametrize("steps", [1, 2])
def test_marigold_few_step_with_zeros_equals_diffusers(steps):
    rgb = random_rgb(60, 80, seed=2)
    predictor = cached_predictor("marigold-depth", processing_resolution=64, num_inference_steps=steps, noise="zeros")
    expected = _run_diffusers(_diffusers_pipeline("marigold-depth", "ddim"), rgb, 64, steps=steps)
    np.testing.assert_allclose(predictor.predict(rgb).depth, expected[..., 0], atol=FP32_TOL, rtol=0)


def _lotus_reference(family: str, rgb: np.ndarray, noise: torch.Tensor | None) -> np.ndarray:
    """Lotus, written out: mean-encode, UNet at t=999 with class label cat(sin[1,0], cos[1,0]), the
    output is x0 (never converted by the scheduler config), decode, (x/2+0.5).clamp(0,1), channel mean
    or *2-1 normals."""
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
        ("lotus-g-disparity", None),  # default: fixed-seed (0) Gaussian latent
        ("lotus-g-normals", "zeros"),
        ("lotus-g-depth", "gaussian"),
        ("lotus-d-depth", None),
        ("lotus-d-disparity", None),  # its published scheduler config says PNDM / epsilon
        ("lotus-d-normals", None),
    ],
)
def test_lotus_equals_written_out_formula(family, noise):
    # Native 72x104: no resize, no padding, and a 9x13 latent (not a multiple of the UNet's 8).
    rgb = random_rgb(72, 104, seed=3)
    seed = 7 if noise else 0
    options = {"noise": noise, "seed": seed} if noise else {}
    predictor = DepthFtPredictor.from_pretrained(tiny_model(family), device="cpu", processing_resolution=0, **options)
    ours = predictor.predict(rgb)
    noise_latent = None
    if "-g-" in family:
        noise_latent = torch.zeros(1, 4, 9, 13) if noise == "zeros" else _fixed_gaussian((72, 104), seed)
    expected = _lotus_reference(family, rgb, noise_latent)
    if family.endswith("normals"):
        np.testing.assert_allclose(ours.normals, expected * E2E_TO_OPTICAL, atol=NORMALS_TOL, rtol=0)
    elif family.endswith("disparity"):
        assert ours.depth is None and ours.space == "disparity"
        np.testing.assert_allclose(ours.disparity, expected, atol=FP32_TOL, rtol=0)
    else:
        np.testing.assert_allclose(ours.depth, expected, atol=FP32_TOL, rtol=0)


def _with_scheduler(source, folder, scheduler_class: str, prediction_type: str):
    import json
    import shutil

    copy = shutil.copytree(source, folder)
    path = copy / "scheduler" / "scheduler_config.json"
    config = json.loads(path.read_text())
    path.write_text(json.dumps(config | {"_class_name": scheduler_class, "prediction_type": prediction_type}))
    return copy


@pytest.mark.parametrize("family", ["lotus-d-disparity", "lotus-g-depth"])
def test_lotus_output_is_x0_whatever_the_scheduler_config_says(family, tmp_path):
    """jingheya/lotus-depth-d-v2-0-disparity ships PNDMScheduler / epsilon, lotus-depth-g-v1-0 says
    sample: the authors' pipelines use the UNet output as x0 for both, and so must we."""
    rgb = random_rgb(48, 64, seed=5)
    epsilon = _with_scheduler(tiny_model(family), tmp_path / "epsilon", "PNDMScheduler", "epsilon")
    sample = _with_scheduler(tiny_model(family), tmp_path / "sample", "DDIMScheduler", "sample")
    outputs = [
        DepthFtPredictor.from_pretrained(folder, processing_resolution=0).predict(rgb).relative
        for folder in (epsilon, sample)
    ]
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_lotus_noise_kinds():
    rgb = random_rgb(32, 48, seed=4)

    def predictor(**options):
        return DepthFtPredictor.from_pretrained(tiny_model("lotus-g-depth"), processing_resolution=0, **options)

    default = predictor()
    first, second = default.predict(rgb).depth, default.predict(rgb).depth
    np.testing.assert_array_equal(first, second)  # the fixed latent is reused frame after frame
    np.testing.assert_array_equal(first, predictor(noise="gaussian", seed=0).predict(rgb).depth)
    zeros = predictor(noise="zeros").predict(rgb).depth
    assert np.abs(first - zeros).max() > 1e-4
    per_frame = predictor(noise="gaussian-per-frame", seed=1)
    frame_1, frame_2 = per_frame.predict(rgb).depth, per_frame.predict(rgb).depth
    np.testing.assert_array_equal(frame_1, predictor(noise="gaussian", seed=1).predict(rgb).depth)
    np.testing.assert_array_equal(frame_2, predictor(noise="gaussian", seed=2).predict(rgb).depth)
    # A batch gets what its frames get one by one.
    batch = predictor().predict_batch([rgb, rgb])
    np.testing.assert_allclose(batch[1].depth, first, atol=FP32_TOL)
