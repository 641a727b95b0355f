"""Affine-invariant "predictions" made from ground truth, with controlled errors, for evaluating alignment.

A real relative-depth model is right up to an affine map in its own space and wrong in two ways: pixel noise
and a smooth, spatially varying error (a tilt or bow, a region drifting in depth). make_relative reproduces
both: the GT depth is multiplied by exp(amplitude * field) with a random low-frequency field, noise is added,
then the result is normalised to [0, 1] in depth or disparity space and put through a random affine map.
Pixels without GT get a value too (a network predicts everywhere): holes take the nearest valid depth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from depth_ft_ros.errors import InputError

KINDS = ("noise", "smooth", "both")


def smooth_field(shape: tuple[int, int], rng: np.random.Generator, max_cycles: float = 2.0,
                 n_waves: int = 6) -> np.ndarray:
    """Zero-mean, unit-std random field: a sum of n_waves plane waves of at most max_cycles per image
    (along the longer side)."""
    h, w = shape
    yy, xx = np.mgrid[:h, :w] / max(h, w)
    field = np.zeros(shape)
    for _ in range(n_waves):
        kx, ky = rng.uniform(-max_cycles, max_cycles, 2)
        field += np.cos(2 * np.pi * (kx * xx + ky * yy) + rng.uniform(0, 2 * np.pi))
    field -= field.mean()
    return field / field.std()


def fill_holes(depth_m: np.ndarray) -> np.ndarray:
    """Fill NaN holes with the nearest valid depth (Euclidean distance transform), so every pixel has one.
    (cv2.inpaint was tried first: on float depth it produced values far outside the valid range.)"""
    depth = np.asarray(depth_m, dtype=np.float32)
    holes = ~np.isfinite(depth)
    if not holes.any():
        return depth.copy()
    if holes.all():
        raise InputError("depth has no valid pixel to fill from")
    _, (iy, ix) = ndimage.distance_transform_edt(holes, return_indices=True)
    return depth[iy, ix]


@dataclass
class RelativeInput:
    prediction: np.ndarray  # float32 HxW, affine-invariant in `space`
    space: str
    kind: str
    distorted_depth_m: np.ndarray  # the metric depth the prediction encodes (before the affine map)


def make_relative(
    gt_m: np.ndarray,
    kind: str,
    space: str,
    rng: np.random.Generator,
    smooth_amplitude: float = 0.12,
    noise_rel: float = 0.01,
) -> RelativeInput:
    """Relative prediction from GT: kind "noise" (pixel noise, noise_rel of the depth), "smooth" (smooth
    multiplicative distortion, std smooth_amplitude in log depth) or "both"; space "depth" or "disparity"."""
    if kind not in KINDS:
        raise InputError(f"kind must be one of {KINDS}, got {kind!r}")
    if space not in ("depth", "disparity"):
        raise InputError(f"space must be 'depth' or 'disparity', got {space!r}")
    depth = fill_holes(np.asarray(gt_m, dtype=np.float64)).astype(np.float64)
    if kind in ("smooth", "both"):
        depth = depth * np.exp(smooth_amplitude * smooth_field(depth.shape, rng))
    if kind in ("noise", "both"):
        depth = depth * (1.0 + noise_rel * rng.standard_normal(depth.shape))
    target = depth if space == "depth" else 1.0 / depth
    lo, hi = target.min(), target.max()
    normalised = (target - lo) / (hi - lo)
    scale, shift = rng.uniform(0.5, 2.0), rng.uniform(-0.5, 0.5)
    return RelativeInput((scale * normalised + shift).astype(np.float32), space, kind, depth.astype(np.float32))
