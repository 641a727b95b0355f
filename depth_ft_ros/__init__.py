"""depth_ft_ros: single-step diffusion depth and normals, metric-aligned, for ROS 2.

Layers, lowest first: errors/enums/config; model/, geometry/, alignment/ (ROS-free runtime); frame/ (the frame
processor that owns one frame's path); msgs/ (message conversions); node/ (rclpy), replay/ (bags); beside them
training/, export/, evaluation/, bench/ and cli/. See ARCHITECTURE.md.

The public names load on first use, so `import depth_ft_ros` needs neither torch nor rclpy.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "DepthFtPredictor": "depth_ft_ros.model.predictor",
    "Prediction": "depth_ft_ros.model.predictor",
    "PinholeCamera": "depth_ft_ros.geometry.camera",
    "fit_scale_shift": "depth_ft_ros.alignment.aligner",
    "align": "depth_ft_ros.alignment.aligner",
    "MetricAligner": "depth_ft_ros.alignment.aligner",
    "AlignerSettings": "depth_ft_ros.alignment.aligner",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'depth_ft_ros' has no attribute {name!r}")
