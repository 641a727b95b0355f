"""Depth metrics per the usual protocol (alignment.md): AbsRel, RMSE (m), delta1, over valid GT pixels."""

from __future__ import annotations

import numpy as np

from depth_ft_ros.errors import InputError


def depth_metrics(
    pred_m: np.ndarray,
    gt_m: np.ndarray,
    valid: np.ndarray | None = None,
    min_depth_m: float = 1e-3,
    max_depth_m: float = np.inf,
) -> dict[str, float]:
    """Metrics of one image over valid GT pixels (finite, within [min_depth_m, max_depth_m], and `valid`).

    AbsRel = mean |p - g| / g; rmse_m = sqrt(mean (p - g)^2); delta1 = share with max(p/g, g/p) < 1.25.
    Pixels where the prediction is invalid (NaN / <= 0) are left out of these three and reported through
    coverage = share of valid GT pixels that have a valid prediction; n = pixels scored.
    """
    pred = np.asarray(pred_m, dtype=np.float64)
    gt = np.asarray(gt_m, dtype=np.float64)
    if pred.shape != gt.shape:
        raise InputError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    with np.errstate(invalid="ignore"):
        gt_ok = np.isfinite(gt) & (gt >= min_depth_m) & (gt <= max_depth_m)
        if valid is not None:
            valid_arr = np.asarray(valid, dtype=bool)
            if valid_arr.shape != gt.shape:
                raise InputError(f"valid mask {valid_arr.shape} does not match the image {gt.shape}")
            gt_ok &= valid_arr
        both = gt_ok & np.isfinite(pred) & (pred > 0)
    n_gt = int(np.count_nonzero(gt_ok))
    n = int(np.count_nonzero(both))
    if n == 0:
        nan = float("nan")
        return {"absrel": nan, "rmse_m": nan, "delta1": nan, "n": 0, "coverage": 0.0 if n_gt else nan}
    p, g = pred[both], gt[both]
    ratio = np.maximum(p / g, g / p)
    return {
        "absrel": float(np.mean(np.abs(p - g) / g)),
        "rmse_m": float(np.sqrt(np.mean((p - g) ** 2))),
        "delta1": float(np.mean(ratio < 1.25)),
        "n": n,
        "coverage": n / n_gt,
    }


def cloud_split_metrics(depth_m: np.ndarray, gt_m: np.ndarray, kept: np.ndarray) -> dict[str, float]:
    """AbsRel vs ground truth of the pixels a cloud kept and of those its filters dropped (flying pixels, low
    confidence): absrel_cloud_kept, absrel_cloud_dropped (NaN when none), cloud_kept_fraction of the pixels with
    a valid depth and ground truth."""
    kept = np.asarray(kept, dtype=bool).reshape(depth_m.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        valid = np.isfinite(depth_m) & np.isfinite(gt_m) & (gt_m > 0)
        rel = np.abs(depth_m - gt_m) / gt_m
    out = {f"absrel_{key}": float(rel[mask].mean()) if mask.any() else float("nan")
           for key, mask in (("cloud_kept", valid & kept), ("cloud_dropped", valid & ~kept))}
    out["cloud_kept_fraction"] = float((valid & kept).sum() / max(int(valid.sum()), 1))
    return out
