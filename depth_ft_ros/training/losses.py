"""Task losses after the VAE decoder (the E2E-FT recipe) and the targets they compare against.

- Depth / disparity: scale-and-shift-invariant L1 in the model's own space over the pixels with a metric
  target. Per image: targets clamped to their 2 % / 98 % quantiles and mapped to [-1, 1] by them (as the
  E2E-FT loader normalises depth; an affine map of the target leaves the fit unchanged and makes the loss
  independent of the scene's metric range), then the least-squares scale s and shift t of the prediction
  onto those targets in closed form, and the mean |s p + t - y|. The gradient flows through s and t, as in
  the authors' ScaleAndShiftInvariantLoss.
- Normals: mean angular error (radians) over the pixels with a ground-truth normal.
"""

from __future__ import annotations

import numpy as np
import torch

from depth_ft_ros.geometry.camera import PinholeCamera

QUANTILES = (0.02, 0.98)
MIN_TARGET_PIXELS = 8  # fewer metric pixels: the image gives no depth loss


def metric_to_model_space(depth_m: torch.Tensor, space: str) -> torch.Tensor:
    """Metric depth -> the quantity the model predicts up to scale and shift (depth, or 1/depth)."""
    if space == "disparity":
        return 1.0 / depth_m
    return depth_m


def ssi_l1_loss(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Masked scale-and-shift-invariant L1 (see module doc).

    prediction, target: [B, 1, H, W] in the model's space; mask: [B, 1, H, W] bool (pixels with a target).
    Returns (mean loss over the images that have >= MIN_TARGET_PIXELS targets and a spread, number of such
    images); the loss is 0 with no gradient when there are none.
    """
    losses = []
    for p_img, y_img, m_img in zip(prediction, target, mask, strict=True):
        p, y = p_img[m_img], y_img[m_img].detach().float()
        if y.numel() < MIN_TARGET_PIXELS:
            continue
        low, high = torch.quantile(y, torch.tensor(QUANTILES, dtype=y.dtype, device=y.device))
        if not bool(high > low):
            continue
        y = (y.clamp(low, high) - low) / (high - low) * 2.0 - 1.0
        p = p.float()
        n = torch.tensor(float(p.numel()), device=p.device)
        a00, a01, b0, b1 = (p * p).sum(), p.sum(), (p * y).sum(), y.sum()
        det = a00 * n - a01 * a01
        if not bool(det.abs() > 1e-12):  # a constant prediction: only the shift can be fitted
            scale, shift = torch.zeros_like(a00), b1 / n
        else:
            scale = (n * b0 - a01 * b1) / det
            shift = (a00 * b1 - a01 * b0) / det
        losses.append((scale * p + shift - y).abs().mean())
    if not losses:
        return prediction.sum() * 0.0, 0
    return torch.stack(losses).mean(), len(losses)


def angular_loss(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Mean angle (radians) between [B,3,H,W] unit normals over mask [B,1,H,W]; (loss, images used)."""
    valid = mask[:, 0]
    if not bool(valid.any()):
        return prediction.sum() * 0.0, 0
    cos = (prediction.float() * target.float()).sum(dim=1)[valid]
    # acos' gradient is infinite at +-1: clamp just inside.
    angle = torch.acos(cos.clamp(-1.0 + 1e-6, 1.0 - 1e-6))
    return angle.mean(), int(valid.flatten(1).any(dim=1).sum())


def normals_from_depth(depth_m: np.ndarray, camera: PinholeCamera) -> np.ndarray:
    """HxWx3 unit normals in the ROS optical frame (x right, y down, z forward) from a depth image, facing the
    camera; NaN where a pixel or one of its 4 neighbours has no depth. Central differences of the
    back-projected points (REP 118 depth, the camera's own back-projection)."""
    points = camera.backproject(np.asarray(depth_m, dtype=np.float64))  # HxWx3, NaN where depth is invalid
    du = np.full_like(points, np.nan)
    dv = np.full_like(points, np.nan)
    du[:, 1:-1] = points[:, 2:] - points[:, :-2]
    dv[1:-1] = points[2:] - points[:-2]
    normals = np.cross(du, dv)
    with np.errstate(invalid="ignore", divide="ignore"):
        normals /= np.linalg.norm(normals, axis=2, keepdims=True)
        facing_away = np.sum(normals * points, axis=2) > 0
    normals[facing_away] *= -1.0
    return normals.astype(np.float32)


def flip_horizontal(image: torch.Tensor, *, normals: bool = False) -> torch.Tensor:
    """Mirror [..., C, H, W] left-right; normals (x, y, z) along C also get their x negated (a mirrored scene's
    normals point the other way horizontally, in every frame whose x axis is horizontal)."""
    flipped = image.flip(-1)
    if normals:
        flipped = torch.cat([-flipped[..., :1, :, :], flipped[..., 1:, :, :]], dim=-3)
    return flipped
