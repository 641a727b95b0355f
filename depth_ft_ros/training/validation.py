"""Held-out validation as the node would be judged: the prediction globally aligned to half of the frame's LiDAR
points (MetricAligner with the node's default settings, one fit per frame), scored against the other half
and, when the bag has one, the dense ground truth (evaluation.metrics: AbsRel, RMSE, delta1). Normals models
are scored by the mean angle to the normals of the dense ground truth.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

import numpy as np

from depth_ft_ros.alignment.aligner import AlignmentMethod, MetricAligner
from depth_ft_ros.config import NodeConfig
from depth_ft_ros.evaluation.metrics import depth_metrics
from depth_ft_ros.frame.processor import aligner_settings
from depth_ft_ros.training.bag_frames import BagFrame
from depth_ft_ros.training.losses import normals_from_depth
from depth_ft_ros.training.samples import sparse_image, split_points

if TYPE_CHECKING:
    from depth_ft_ros.model.predictor import DepthFtPredictor

METRICS = ("absrel", "rmse_m", "delta1")


def _mean(rows: list[dict[str, float]], key: str) -> float:
    values = [r[key] for r in rows if math.isfinite(r[key])]
    return float(np.mean(values)) if values else float("nan")


def validate(predictor: DepthFtPredictor, frames: list[BagFrame], config: NodeConfig | None = None) -> dict[str, float]:
    """Mean per-frame metrics over `frames`: lidar_absrel, lidar_rmse_m, lidar_delta1 (held-out points),
    gt_* (dense ground truth, frames that have it), frames, no_fit (frames without a usable fit); for
    normals models gt_mean_angle_deg."""
    if predictor.task == "normals":
        return _validate_normals(predictor, frames)
    settings = dataclasses.replace(aligner_settings(config or NodeConfig()), method=AlignmentMethod.GLOBAL,
                                   smoothing_seconds=0.0)
    lidar_rows: list[dict[str, float]] = []
    gt_rows: list[dict[str, float]] = []
    no_fit = 0
    for index, frame in enumerate(frames):
        relative = predictor.predict(frame.rgb).relative
        assert relative is not None and predictor.space is not None
        fit, held = split_points(frame.lidar, seed=index)
        aligned = MetricAligner(settings).align(relative, predictor.space, fit.uv, fit.z_m, frame.stamp_ns)
        if aligned.depth_m is None:
            no_fit += 1
            continue
        lidar_rows.append(depth_metrics(aligned.depth_m, sparse_image(held)))
        if frame.gt_depth_m is not None:
            gt_rows.append(depth_metrics(aligned.depth_m, frame.gt_depth_m))
    out: dict[str, float] = {"frames": float(len(frames)), "no_fit": float(no_fit)}
    for key in METRICS:
        out[f"lidar_{key}"] = _mean(lidar_rows, key)
        if gt_rows:
            out[f"gt_{key}"] = _mean(gt_rows, key)
    return out


def _validate_normals(predictor: DepthFtPredictor, frames: list[BagFrame]) -> dict[str, float]:
    angles = []
    for frame in frames:
        if frame.gt_depth_m is None:
            continue
        normals = predictor.predict(frame.rgb).normals
        assert normals is not None
        gt = normals_from_depth(frame.gt_depth_m, frame.camera)  # optical frame, as the prediction
        valid = np.isfinite(gt).all(axis=2)
        cos = np.clip(np.sum(normals[valid] * gt[valid], axis=1), -1.0, 1.0)
        angles.append(float(np.degrees(np.arccos(cos)).mean()))
    return {"frames": float(len(angles)), "gt_mean_angle_deg": float(np.mean(angles)) if angles else float("nan")}
