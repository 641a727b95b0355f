"""False-colour pictures of depth and normals for people (RViz, previews); never used for geometry."""

from __future__ import annotations

import cv2
import numpy as np


def colorize_depth(depth: np.ndarray, lo: float | None = None, hi: float | None = None,
                   inverse: bool = True) -> np.ndarray:
    """HxW depth (any units, NaN invalid) -> HxWx3 uint8 BGR, TURBO colour map, invalid black.

    Range defaults to the 2nd..98th percentile of the valid values; `inverse` makes near warm and far cool.
    """
    valid = np.isfinite(depth)
    out = np.zeros((*depth.shape, 3), dtype=np.uint8)
    if not valid.any():
        return out
    values = depth[valid]
    lo = float(np.percentile(values, 2)) if lo is None else lo
    hi = float(np.percentile(values, 98)) if hi is None else hi
    scaled = np.clip((np.where(valid, depth, lo) - lo) / max(hi - lo, 1e-9), 0.0, 1.0)
    if inverse:
        scaled = 1.0 - scaled
    out[:] = cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_TURBO)
    out[~valid] = 0
    return out


def colorize_normals(normals: np.ndarray) -> np.ndarray:
    """HxWx3 unit normals (optical frame) -> HxWx3 uint8 BGR: the usual (n + 1) / 2 picture, x->R, y->G, z->B."""
    rgb = ((np.nan_to_num(normals) + 1.0) * 127.5).clip(0, 255).astype(np.uint8)
    return np.ascontiguousarray(rgb[..., ::-1])
