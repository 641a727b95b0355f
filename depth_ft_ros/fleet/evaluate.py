"""Per-frame evaluation columns of the fleet table: the node's depth against LiDAR points it did not see.

The published depth must stay the node's (aligned to all of the frame's points), so the evaluation makes a fit of
its own: the frame's points (projected as the node projects them) are split in two halves with a seed from the
stamp (training.samples.split_points, as `finetune`'s held-out validation), a fresh MetricAligner with the
node's alignment settings (no temporal filter: one frame's own fit) aligns the same relative prediction to the
first half, and evaluation.metrics scores it against the second. With dense ground truth in the bag, the published
depth is scored against it as the replay summary does (AbsRel, RMSE, delta1, coverage, and the split between the
pixels the cloud kept and those its filters dropped).

Every row has every column (NaN where a value does not exist), so the tables of all bags share one schema.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from depth_ft_ros.alignment.aligner import MetricAligner
from depth_ft_ros.config import NodeConfig
from depth_ft_ros.evaluation.metrics import cloud_split_metrics, depth_metrics
from depth_ft_ros.frame.processor import aligner_settings
from depth_ft_ros.geometry.rectify import needs_rectification
from depth_ft_ros.geometry.sparse import (
    SparsePoints,
    project_sparse_points,
    sparse_from_depth_image,
    transform_points,
)
from depth_ft_ros.training.samples import sparse_image, split_points

if TYPE_CHECKING:
    from depth_ft_ros.frame.processor import CameraFrame, FrameResult

HELDOUT_METRICS = ("absrel", "rmse_m", "delta1")
GT_METRICS = ("absrel", "rmse_m", "delta1", "coverage", "absrel_cloud_kept", "absrel_cloud_dropped",
              "cloud_kept_fraction")
COLUMNS: tuple[str, ...] = (
    *(f"heldout_{m}" for m in HELDOUT_METRICS), "heldout_points", "heldout_fit_points",
    *(f"gt_{m}" for m in GT_METRICS),
)
NAN = float("nan")


def evaluation_columns(result: FrameResult, frame: CameraFrame, config: NodeConfig | None = None,
                       gt_depth_m: np.ndarray | None = None) -> dict[str, float | int]:
    """The evaluation columns (COLUMNS) of one output frame.

    config: the parameters the frame went through (the node's defaults when None); gt_depth_m: the bag's dense
    ground truth for this frame in the outputs' geometry (same size as result.depth_m), if it has one.
    heldout_*: metrics of the half-points fit against the other half (NaN when the frame has no relative
    prediction, too few points for a fit, or a sparse depth image with rectified outputs); heldout_points /
    heldout_fit_points: points scored / given to that fit.
    """
    cfg = config or NodeConfig()
    columns: dict[str, float | int] = {name: NAN for name in COLUMNS}
    columns["heldout_points"] = columns["heldout_fit_points"] = 0
    columns.update(_heldout(result, frame, cfg))
    # A ground truth of another size (the replay warns and does not score those frames either) stays NaN.
    if gt_depth_m is not None and result.depth_m is not None and gt_depth_m.shape == result.depth_m.shape:
        columns.update(_ground_truth(result, gt_depth_m, cfg))
    return columns


def output_points(result: FrameResult, frame: CameraFrame, cfg: NodeConfig) -> SparsePoints | None:
    """The frame's sparse points in the geometry of the outputs: as the node projects them when the outputs
    keep the input's geometry; rotated into the rectified frame and projected with P when they are rectified."""
    # As the frame path decides it: raw input, rectify_outputs on, and a camera that needs it.
    rectified_outputs = cfg.rectify_outputs and not cfg.image_rectified and needs_rectification(frame.camera)
    if frame.points_m is not None:
        points = frame.points_m
        if frame.T_camera_points is not None:
            points = transform_points(points, frame.T_camera_points)
        camera, with_p = frame.camera, cfg.image_rectified
        if rectified_outputs:  # raw optical frame -> rectified frame (R), then P
            points = np.asarray(points, dtype=np.float64) @ frame.camera.r.T
            camera, with_p = result.camera, True
        return project_sparse_points(points, camera, rectified=with_p, min_depth_m=cfg.min_depth,
                                     max_depth_m=cfg.max_depth, filter_see_through=cfg.see_through_margin > 0,
                                     see_through_margin_m=cfg.see_through_margin)
    if frame.sparse_depth_m is not None and not rectified_outputs:
        return sparse_from_depth_image(frame.sparse_depth_m, "32FC1", target_size=frame.rgb.shape[1::-1])
    return None


def _heldout(result: FrameResult, frame: CameraFrame, cfg: NodeConfig) -> dict[str, float | int]:
    if result.relative is None or result.space is None:
        return {}
    points = output_points(result, frame, cfg)
    if points is None or points.n < 2:
        return {}
    fit, held = split_points(points, seed=frame.stamp_ns)
    # One frame's own fit: a fresh aligner has no history to smooth with or hold.
    settings = dataclasses.replace(aligner_settings(cfg), smoothing_seconds=0.0, hold=False)
    aligned = MetricAligner(settings).align(result.relative, result.space, fit.uv, fit.z_m, frame.stamp_ns)
    out: dict[str, float | int] = {"heldout_fit_points": fit.n}
    if aligned.depth_m is None:
        return out
    metrics = depth_metrics(aligned.depth_m, sparse_image(held), min_depth_m=cfg.min_depth,
                            max_depth_m=cfg.max_depth)
    out.update({f"heldout_{m}": metrics[m] for m in HELDOUT_METRICS})
    out["heldout_points"] = int(metrics["n"])
    return out


def _ground_truth(result: FrameResult, gt_depth_m: np.ndarray, cfg: NodeConfig) -> dict[str, float | int]:
    assert result.depth_m is not None
    metrics = depth_metrics(result.depth_m, gt_depth_m)
    out: dict[str, float | int] = {f"gt_{m}": float(metrics[m]) for m in ("absrel", "rmse_m", "delta1", "coverage")}
    if result.cloud_kept is not None and cfg.cloud_stride == 1:  # a strided cloud has no per-pixel split
        # The cloud keeps a pixel when its filters do and its depth is within the cloud's range (as the replay
        # reads it off the published cloud: finite z).
        max_range_m = cfg.cloud_max_range or cfg.max_depth
        with np.errstate(invalid="ignore"):
            kept = result.cloud_kept & np.isfinite(result.depth_m) & (result.depth_m <= max_range_m)
        split = cloud_split_metrics(result.depth_m, gt_depth_m, kept)
        out.update({f"gt_{k}": v for k, v in split.items()})
    return out
