"""Runtime plumbing shared by every family: device and dtype resolution, input checks, stage timing."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from depth_ft_ros.errors import ConfigError, InputError

STAGES = ("preprocess", "encode", "unet", "decode", "postprocess")
_DTYPES = {
    "fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
    "fp32": torch.float32, "float32": torch.float32, "float": torch.float32,
}


def resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device {device!r} asked for, but CUDA is not available here (torch {torch.__version__}, "
            f"built with CUDA {torch.version.cuda}); use device='cpu' or 'auto'"
        )
    if resolved.type == "cuda" and (resolved.index or 0) >= torch.cuda.device_count():
        raise ConfigError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    return resolved


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        if dtype not in _DTYPES.values():
            raise ConfigError(f"dtype must be float16, bfloat16 or float32, got {dtype}")
        return dtype
    if dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise ConfigError(f"dtype must be auto, fp16/float16, bf16/bfloat16 or fp32/float32, got {dtype!r}") from None


def check_frame(rgb: Any) -> np.ndarray:
    if not isinstance(rgb, np.ndarray):
        raise InputError(f"expected an HxWx3 uint8 RGB numpy array, got {type(rgb).__name__}")
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise InputError(f"expected an HxWx3 RGB image, got an array of shape {rgb.shape}")
    if rgb.dtype != np.uint8:
        raise InputError(f"expected dtype uint8 (RGB 0-255), got {rgb.dtype}; convert the image to 8-bit RGB")
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise InputError(f"empty image of shape {rgb.shape}")
    return rgb


class StageTimer:
    """Wall time per stage; synchronises CUDA so asynchronous kernels land in their own stage."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.times_ms: dict[str, float] = {}
        self.start = self.last = self._now()

    def _now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def lap(self, stage: str) -> None:
        now = self._now()
        self.times_ms[stage] = (now - self.last) * 1e3
        self.last = now

    def add(self, stages_ms: dict[str, float]) -> None:
        """Stages measured elsewhere (a shared encoding): reported, and counted in the total."""
        self.times_ms.update(stages_ms)
        self.start -= sum(stages_ms.values()) / 1e3

    def done(self, frames: int) -> dict[str, float]:
        total = (self._now() - self.start) * 1e3
        per_frame = {stage: self.times_ms.get(stage, 0.0) / frames for stage in STAGES}
        per_frame["total"] = total / frames
        return per_frame
