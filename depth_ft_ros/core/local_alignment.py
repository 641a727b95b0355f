"""Spatially varying correction of a globally aligned depth map, fitted to the sparse residuals.

Model: depth = global_depth * exp(c(x, y, log global_depth)). The correction c is the log ratio
log(z / global_depth) at the points, smoothed on a coarse bilateral grid (cells of cell_px pixels x n_bins bins
of log depth): normalized Gaussian convolution with a prior of prior_points pseudo-points of zero correction,
so c falls back to 0 (the global fit) where points are sparse, in proportion to the local point density.
Slicing the grid at each pixel's own depth keeps the correction from bleeding across depth edges of the
prediction (foreground and background of an edge fall in different bins) -- an edge-aware upsampling guided by
the prediction rather than the RGB, whose texture edges are mostly not depth edges.

Coarse to fine: n_levels spatial sigmas (sigma * 2**level); each level smooths what the coarser ones left and
shrinks toward them where its own kernel holds few points, so dense areas get detail and sparse ones stay smooth.

Outliers (and see-through points the projection filter missed) are dropped first: a point whose log ratio
differs from the leave-one-out kernel average of its neighbours (on the same grid, at twice the sigma) by more
than outlier_k robust sigmas (two passes, the second against the first pass's inliers). The base sigma follows
the point density (sigma_factor x sqrt(covered area / N)), so random points and LiDAR lines both get a kernel
that bridges their gaps. A kNN median test was measured first: scipy's cKDTree query costs 3 ms at 3k points
and 14 ms at 12k (64 lines); the grid test ~1 ms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy import ndimage

from depth_ft_ros.core.errors import InputError
from depth_ft_ros.core.scale_shift import FitResult, sample_prediction

_MAD_TO_SIGMA = 1.4826


@dataclass
class LocalResult:
    depth_m: np.ndarray | None  # None when the points cannot support a local correction (see note)
    info: dict[str, float] = field(default_factory=dict)
    note: str | None = None


def _density_sigma_px(xy: np.ndarray, width: int, block_px: int) -> float:
    """sqrt(area / N) over the blocks (block_px squared) that hold at least one point: the mean point spacing."""
    bw = math.ceil(width / block_px)
    blocks = (xy[:, 1] // block_px).astype(np.int64) * bw + (xy[:, 0] // block_px).astype(np.int64)
    area = np.unique(blocks).size * block_px * block_px
    return math.sqrt(area / xy.shape[0])


def _gauss(t: np.ndarray, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * (t / sigma) ** 2) / (math.sqrt(2 * math.pi) * sigma)


def _range_matrix(n_bins: int, sigma_bins: float) -> np.ndarray:
    """Gaussian blur along the bins as an (n_bins x n_bins) matrix (zero outside the range, 3 sigma)."""
    i = np.arange(n_bins)
    d = np.abs(i[:, None] - i[None, :]).astype(np.float64)
    m = np.where(d <= 3 * sigma_bins, _gauss(d, sigma_bins), 0.0)
    # normalise like a discrete kernel (taps sum to 1 away from the ends)
    taps = np.arange(-math.ceil(3 * sigma_bins), math.ceil(3 * sigma_bins) + 1)
    return (m / _gauss(taps.astype(np.float64), sigma_bins).sum()).astype(np.float32)


def _blur(grid: np.ndarray, sigma_cells: float, range_sigma_bins: float) -> np.ndarray:
    """Gaussian blur of a (rows, cols, bins) float32 grid, zero outside: one separable cv2 filter over all
    bins as channels, then a small matrix product along the bins."""
    k = 2 * math.ceil(3 * sigma_cells) + 1
    kernel = cv2.getGaussianKernel(k, sigma_cells, cv2.CV_32F)
    out = cv2.sepFilter2D(grid, -1, kernel, kernel, borderType=cv2.BORDER_CONSTANT)
    if out.ndim == 2:  # cv2 drops a single channel
        out = out[:, :, None]
    nb = grid.shape[2]
    if nb > 1 and range_sigma_bins > 0:
        out = (out.reshape(-1, nb) @ _range_matrix(nb, range_sigma_bins)).reshape(grid.shape)
    return out


class _Grid:
    """A bilateral grid (gh x gw x n_bins, float32) over the image and log depth, with splat/blur/slice.
    Bins are the last axis, so cv2 filters them as channels and the 2-D view (gh, gw * n_bins) used for
    slicing is free."""

    def __init__(self, shape: tuple[int, int], cell_px: int, n_bins: int, log_lo: float, log_hi: float):
        self.h, self.w = shape
        self.cell = cell_px
        self.n_bins = n_bins
        self.gh, self.gw = math.ceil(self.h / cell_px), math.ceil(self.w / cell_px)
        self.log_lo = log_lo
        self.bin_scale = (n_bins - 1) / max(log_hi - log_lo, 1e-6) if n_bins > 1 else 0.0

    def bins(self, log_d: np.ndarray) -> np.ndarray:
        b = (log_d - np.float32(self.log_lo)) * np.float32(self.bin_scale)
        np.clip(b, 0, self.n_bins - 1, out=b)
        b[np.isnan(b)] = 0
        return b

    def coords(self, xy: np.ndarray, log_d: np.ndarray) -> np.ndarray:
        """Continuous grid coordinates (row, col, bin) of points; cell centres are integer."""
        gx = (xy[:, 0] + 0.5) / self.cell - 0.5
        gy = (xy[:, 1] + 0.5) / self.cell - 0.5
        return np.stack([gy, gx, self.bins(log_d.astype(np.float64))])

    def splat(self, coords: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Nearest cell in space, linear between the two nearest bins."""
        nb = self.n_bins
        cell = (np.clip(np.floor(coords[0] + 0.5), 0, self.gh - 1).astype(np.int64) * self.gw
                + np.clip(np.floor(coords[1] + 0.5), 0, self.gw - 1).astype(np.int64))
        size = self.gh * self.gw * nb
        if nb == 1:
            acc = np.bincount(cell, values, size)
        else:
            b = coords[2]
            b0 = np.minimum(np.floor(b).astype(np.int64), nb - 2)
            fb = b - b0
            idx = cell * nb + b0
            acc = np.bincount(idx, (1 - fb) * values, size) + np.bincount(idx + 1, fb * values, size)
        return acc.astype(np.float32).reshape(self.gh, self.gw, nb)

    def self_weight(self, coords: np.ndarray, sigma_cells: float, range_sigma: float) -> np.ndarray:
        """Approximate weight a point contributes to the blurred grid at its own position (continuous
        Gaussian at its offset from the cell centre it was splatted to, and between its two bins)."""
        dy = coords[0] - np.floor(coords[0] + 0.5)
        dx = coords[1] - np.floor(coords[1] + 0.5)
        out = _gauss(dx, sigma_cells) * _gauss(dy, sigma_cells)
        if self.n_bins > 1 and range_sigma > 0:
            b = coords[2]
            fb = b - np.minimum(np.floor(b), self.n_bins - 2)
            out *= (1 - fb) * _gauss(fb, range_sigma) + fb * _gauss(1 - fb, range_sigma)
        return out

    def sample_points(self, grid: np.ndarray, coords: np.ndarray) -> np.ndarray:
        return ndimage.map_coordinates(grid, coords, order=1, mode="nearest")

    def slice(self, grid: np.ndarray, log_d: np.ndarray) -> np.ndarray:
        """Trilinear interpolation at every pixel: the grid viewed as a 2-D image (rows = grid rows, columns =
        col * n_bins + bin), so one cv2.remap interpolates row and bin at the cell column left of the pixel, a
        second one at the column to its right, and a lerp finishes the columns."""
        gh, gw, nb = grid.shape
        flat = np.ascontiguousarray(grid, dtype=np.float32).reshape(gh, gw * nb)
        b = self.bins(log_d) if nb > 1 else np.zeros_like(log_d)
        gx = np.clip((np.arange(self.w, dtype=np.float32) + 0.5) / self.cell - 0.5, 0, gw - 1)
        x0 = np.minimum(np.floor(gx), max(gw - 2, 0))
        fx = gx - x0
        gy = np.clip((np.arange(self.h, dtype=np.float32) + 0.5) / self.cell - 0.5, 0, gh - 1)
        map_y = np.broadcast_to(gy[:, None], (self.h, self.w)).astype(np.float32)
        map_x = b + (x0 * nb)[None, :]
        left: np.ndarray = cv2.remap(flat, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if gw == 1:
            return left
        map_x += np.float32(nb)
        right: np.ndarray = cv2.remap(flat, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        right -= left
        right *= fx[None, :]
        right += left
        return right


def local_refine(
    depth_global_m: np.ndarray,
    uv: np.ndarray,
    z: np.ndarray,
    fit: FitResult | None = None,
    *,
    cell_px: int = 8,
    n_bins: int = 8,
    range_sigma_bins: float = 1.0,
    sigma_px: float | None = None,
    sigma_factor: float = 1.1,
    sigma_min_px: float = 6.0,
    n_levels: int = 3,
    prior_points: float = 0.5,
    outlier_k: float = 3.0,
    outlier_floor: float = 0.01,
    max_abs_log_correction: float = 1.0,
    min_points: int = 20,
    min_depth_m: float = 1e-3,
    max_depth_m: float = np.inf,
) -> LocalResult:
    """Correct a globally aligned depth map (float32 HxW metres, NaN invalid) with the sparse points.

    Coarse to fine over n_levels spatial sigmas (sigma_px * 2**level): each level smooths what the coarser
    ones left and shrinks toward them where its own kernel holds few points. fit is used for diagnostics only
    (the outlier test here is local). Returns a new float32 map (NaN outside [min_depth_m, max_depth_m]), or
    depth_m=None with a note when fewer than min_points usable points remain: then the global map stands.
    """
    depth = np.asarray(depth_global_m, dtype=np.float32)
    if depth.ndim != 2:
        raise InputError(f"depth must be 2-D, got shape {depth.shape}")
    if cell_px < 1 or n_bins < 1 or n_levels < 1:
        raise InputError(f"cell_px, n_bins and n_levels must be >= 1 (got {cell_px}, {n_bins}, {n_levels})")
    h, w = depth.shape
    uv_arr = np.asarray(uv).astype(np.int64)
    z_arr = np.asarray(z, dtype=np.float64).ravel()
    d_pts = sample_prediction(depth, uv_arr)
    with np.errstate(invalid="ignore", divide="ignore"):
        usable = np.isfinite(d_pts) & (d_pts > 0) & np.isfinite(z_arr) & (z_arr > 0)
    if np.count_nonzero(usable) < min_points:
        return LocalResult(None, note=f"local alignment needs {min_points} points, got {np.count_nonzero(usable)}")
    xy = uv_arr[usable].astype(np.float64)
    log_dp = np.log(d_pts[usable])
    r = np.log(z_arr[usable]) - log_dp

    # Depth bins over the range of the global map (subsampled: a full-resolution min/max costs ms).
    sub = depth[::4, ::4]
    finite = sub[np.isfinite(sub)]
    lo = float(np.log(finite.min())) if finite.size else float(log_dp.min())
    hi = float(np.log(finite.max())) if finite.size else float(log_dp.max())
    grid = _Grid((h, w), cell_px, n_bins, min(lo, float(log_dp.min())), max(hi, float(log_dp.max())))
    coords = grid.coords(xy, log_dp)
    range_sigma = range_sigma_bins if n_bins > 1 else 0.0
    if sigma_px is None:
        sigma_px = max(sigma_factor * _density_sigma_px(xy, w, 4 * cell_px), sigma_min_px)

    # Outlier test against the leave-one-out kernel mean of the neighbours (twice the base sigma). The second
    # pass takes the reference from the first pass's inliers only: 10 % outliers bias a kernel mean enough to
    # hide some of their own kind.
    sig_out = 2 * sigma_px / cell_px
    w_self_all = grid.self_weight(coords, sig_out, range_sigma)
    w_peak = float(grid.self_weight(np.zeros((3, 1)), sig_out, range_sigma)[0])
    keep = np.ones_like(r, dtype=bool)
    judged = np.zeros_like(r, dtype=bool)
    for _ in range(2):
        ref = keep.astype(np.float64)
        w_all = grid.sample_points(_blur(grid.splat(coords, ref), sig_out, range_sigma), coords)
        r_all = grid.sample_points(_blur(grid.splat(coords, ref * r), sig_out, range_sigma), coords)
        w_self = np.minimum(w_self_all * ref, w_all)  # only points in the reference contributed themselves
        w_others = w_all - w_self
        judged = w_others > 0.5 * w_peak
        e = np.zeros_like(r)
        e[judged] = r[judged] - (r_all[judged] - w_self[judged] * r[judged]) / w_others[judged]
        in_ref = judged & keep
        sigma_e = _MAD_TO_SIGMA * float(np.median(np.abs(e[in_ref]))) if np.any(in_ref) else 0.0
        keep = np.abs(e) <= max(outlier_k * sigma_e, outlier_floor)
    if np.count_nonzero(keep) < min_points:
        return LocalResult(None, note="local alignment: too few points agree with their neighbours")
    r, coords = r[keep], coords[:, keep]

    w_splat = grid.splat(coords, np.ones_like(r))
    total = np.zeros_like(w_splat)
    for level in reversed(range(n_levels)):
        sig_cells = sigma_px * 2**level / cell_px
        resid = r - grid.sample_points(total, coords) if level < n_levels - 1 else r
        wsum = _blur(w_splat, sig_cells, range_sigma)
        rsum = _blur(grid.splat(coords, resid), sig_cells, range_sigma)
        # Prior in units of "points at the kernel centre": the peak one point leaves after the blur.
        peak = 1.0 / (2 * math.pi * sig_cells**2)
        if n_bins > 1:
            peak /= math.sqrt(2 * math.pi) * range_sigma
        total += rsum / (wsum + prior_points * peak)
    np.clip(total, -max_abs_log_correction, max_abs_log_correction, out=total)

    log_d = cv2.log(depth)
    factor = cv2.exp(grid.slice(total, log_d))
    out = depth * factor
    with np.errstate(invalid="ignore"):
        out[~((out >= min_depth_m) & (out <= max_depth_m))] = np.nan
    info = {
        "n_points": float(r.size),
        "n_local_outliers": float(np.count_nonzero(~keep)),
        "n_unjudged": float(np.count_nonzero(~judged)),
        "sigma_px": float(sigma_px),
    }
    if fit is not None:
        info["global_residual"] = float(fit.residual)
    return LocalResult(out, info)
