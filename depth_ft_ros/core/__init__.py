"""Everything that needs no rclpy: predictor, alignment, camera, cloud.

Heavy modules (torch, diffusers) load on first use of their names, so alignment and geometry import fast.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "DepthFtPredictor": "depth_ft_ros.core.predictor",
    "Prediction": "depth_ft_ros.core.predictor",
    "PinholeCamera": "depth_ft_ros.core.camera",
    "fit_scale_shift": "depth_ft_ros.core.alignment",
    "align": "depth_ft_ros.core.alignment",
    "MetricAligner": "depth_ft_ros.core.alignment",
    "AlignerSettings": "depth_ft_ros.core.alignment",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'depth_ft_ros.core' has no attribute {name!r}")
