"""Shared helpers for the predictor tests: tiny checkpoints (made once per test process), cached
predictors, and independent references built straight from diffusers/transformers classes."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from depth_ft_ros.evaluation.tiny import make_tiny_model
from depth_ft_ros.model.predictor import DepthFtPredictor

_ROOT = Path(tempfile.mkdtemp(prefix="depth_ft_tiny_"))
atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)


@functools.cache
def tiny_model(family: str, seed: int = 0) -> Path:
    """A tiny checkpoint of `family`, written once per test process (treat it as read-only)."""
    return make_tiny_model(_ROOT / f"{family}-seed{seed}", family, seed=seed)


@functools.cache
def cached_predictor(family: str, processing_resolution: int = 768, **options: object) -> DepthFtPredictor:
    """A predictor on the tiny checkpoint, shared between tests that do not close or modify it."""
    return DepthFtPredictor.from_pretrained(
        tiny_model(family), device="cpu", dtype="fp32", processing_resolution=processing_resolution, **options
    )


def random_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth-ish random image (low-frequency noise upsampled), uint8 HxWx3."""
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.random((1, 3, max(2, height // 8), max(2, width // 8)), dtype=np.float32))
    fine = torch.nn.functional.interpolate(coarse, (height, width), mode="bicubic", align_corners=False)
    noise = rng.normal(0, 0.05, (3, height, width)).astype(np.float32)
    image = (fine[0].numpy() + noise).clip(0, 1)
    return (image.transpose(1, 2, 0) * 255).round().astype(np.uint8)


def rgb_to_unit_tensor(rgb: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> [1, 3, H, W] float32 in [0, 1], the unambiguous input form of diffusers' pipelines."""
    return torch.from_numpy(rgb.astype(np.float32) / 255.0).permute(2, 0, 1)[None]


def diffusers_parts(model_dir: Path) -> dict[str, object]:
    """The checkpoint's networks loaded directly with diffusers/transformers classes, float32 CPU."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    return {
        "unet": UNet2DConditionModel.from_pretrained(model_dir, subfolder="unet").eval(),
        "vae": AutoencoderKL.from_pretrained(model_dir, subfolder="vae").eval(),
        "text_encoder": CLIPTextModel.from_pretrained(model_dir / "text_encoder").eval(),
        "tokenizer": CLIPTokenizer.from_pretrained(model_dir / "tokenizer"),
    }


def weight_file_bytes(model_dir: Path, component: str) -> int:
    """Bytes of the tensors in a component's weights file, read from the file itself (the reference for what a
    loaded model should hold)."""
    from safetensors import safe_open

    total = 0
    with safe_open(str(model_dir / component / "diffusion_pytorch_model.safetensors"), framework="pt") as handle:
        for key in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
            tensor = handle.get_tensor(key)
            total += tensor.numel() * tensor.element_size()
    return total
