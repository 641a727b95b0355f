"""False-colour pictures of depth and normals for people (RViz, previews); never used for geometry."""

from __future__ import annotations

import cv2
import numpy as np


def colorize_depth(depth: np.ndarray, lo: float | None = None, hi: float | None = None,
                   inverse: bool = True) -> np.ndarray:
    """HxW depth (any units, NaN invalid) -> HxWx3 uint8 BGR, TURBO colour map, invalid black.

    Range defaults to the 2nd..98th percentile of the valid values; `inverse` makes near warm and far cool.
    """
    depth = np.asarray(depth, dtype=np.float32)
    valid = np.isfinite(depth)
    if lo is None or hi is None:
        # The range from every 4th pixel of every 4th row: the same percentiles to a few per mille, 16x less work
        # (this runs per frame in the node while someone watches depth/colorized).
        sample = depth[::4, ::4]
        sample = sample[np.isfinite(sample)]
        if sample.size == 0:
            sample = depth[valid]
        if sample.size == 0:
            return np.zeros((*depth.shape, 3), dtype=np.uint8)
        lo_pct, hi_pct = np.percentile(sample, [2, 98])
        lo = float(lo_pct) if lo is None else lo
        hi = float(hi_pct) if hi is None else hi
    span = max(hi - lo, 1e-9)
    # 8-bit index: 255 * (d - lo) / span, saturated (NaN -> 0); inverse flips it so near is warm.
    alpha, beta = (-255.0 / span, 255.0 * hi / span) if inverse else (255.0 / span, -255.0 * lo / span)
    with np.errstate(invalid="ignore"):  # NaN pixels: any index, painted black below
        scaled = depth * np.float32(alpha) + np.float32(beta)
        np.clip(scaled, 0, 255, out=scaled)
        index = scaled.astype(np.uint8)
    out = cv2.applyColorMap(index, cv2.COLORMAP_TURBO)
    out[~valid] = 0
    return out


def colorize_normals(normals: np.ndarray) -> np.ndarray:
    """HxWx3 unit normals (optical frame) -> HxWx3 uint8 BGR: the usual (n + 1) / 2 picture, x->R, y->G, z->B."""
    # saturate((n + 1) * 127.5) in one OpenCV pass (NaN -> 0), then RGB -> BGR.
    rgb = cv2.convertScaleAbs(np.nan_to_num(np.asarray(normals, dtype=np.float32), copy=False), alpha=127.5,
                              beta=127.5)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
