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

The same leave-one-out averages decide whether the correction is used at all (model selection by held-out
error): unless they predict the points better than the global fit does, by max_heldout_ratio in RMS and in
median, there is no local error to correct and the global map stands (LocalResult.depth_m None, with a note).
Measured on the Middlebury ground truth (BENCHMARKS.md, "Confidence"): noise-only predictions 1.01-1.54, smooth
model-like distortions 0.10-0.73.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import cv2
import numpy as np

from depth_ft_ros.alignment.scale_shift import FitResult, sample_prediction
from depth_ft_ros.errors import InputError

_MAD_TO_SIGMA = 1.4826
_MAX_SIGMA_CELLS = 6.0


@dataclass
class LocalResult:
    depth_m: np.ndarray | None  # None when the points cannot support a local correction (see note)
    info: dict[str, float] = field(default_factory=dict)
    note: str | None = None


def _density_sigma_px(xy: np.ndarray, width: int, block_px: int) -> float:
    """sqrt(area / N) over the blocks (block_px squared) that hold at least one point: the mean point spacing."""
    bw = math.ceil(width / block_px)
    blocks = (xy[:, 1] // block_px).astype(np.int64) * bw + (xy[:, 0] // block_px).astype(np.int64)
    area = np.count_nonzero(np.bincount(blocks)) * block_px * block_px
    return math.sqrt(area / xy.shape[0])


def _gauss(t: np.ndarray, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * (t / sigma) ** 2) / (math.sqrt(2 * math.pi) * sigma)


@functools.lru_cache(maxsize=16)
def _range_matrix(n_bins: int, sigma_bins: float) -> np.ndarray:
    """Gaussian blur along the bins as an (n_bins x n_bins) matrix (zero outside the range, 3 sigma)."""
    i = np.arange(n_bins)
    d = np.abs(i[:, None] - i[None, :]).astype(np.float64)
    m = np.where(d <= 3 * sigma_bins, _gauss(d, sigma_bins), 0.0)
    # normalise like a discrete kernel (taps sum to 1 away from the ends)
    taps = np.arange(-math.ceil(3 * sigma_bins), math.ceil(3 * sigma_bins) + 1)
    out = (m / _gauss(taps.astype(np.float64), sigma_bins).sum()).astype(np.float32)
    out.flags.writeable = False  # shared by the cache
    return out


@functools.lru_cache(maxsize=16)
def _kernel(sigma_cells: float) -> np.ndarray:
    out: np.ndarray = cv2.getGaussianKernel(2 * math.ceil(3 * sigma_cells) + 1, sigma_cells, cv2.CV_32F)
    out.flags.writeable = False
    return out


def _blur(grid: np.ndarray, sigma_cells: float, range_sigma_bins: float) -> np.ndarray:
    """Gaussian blur of a (rows, cols, bins) float32 grid, zero outside: one separable cv2 filter over all
    bins as channels, then a small matrix product along the bins. A kernel wider than _MAX_SIGMA_CELLS runs on
    the grid averaged over 2x2 (4x4, ...) blocks and is resized back: the coarse levels of sparse points (a
    few hundred) otherwise spend most of the refinement's time on kernels wider than the grid."""
    gh, gw = grid.shape[:2]
    factor = 1
    while sigma_cells / factor > _MAX_SIGMA_CELLS:
        factor *= 2
    small = grid
    if factor > 1:  # zero-padded to whole blocks (zero outside, as the filter's border), averaged per block
        sh, sw = math.ceil(gh / factor), math.ceil(gw / factor)
        padded = np.zeros((sh * factor, sw * factor, grid.shape[2]), np.float32)
        padded[:gh, :gw] = grid
        small = padded.reshape(sh, factor, sw, factor, -1).mean(axis=(1, 3), dtype=np.float32)
    kernel = _kernel(sigma_cells / factor)
    out = cv2.sepFilter2D(small, -1, kernel, kernel, borderType=cv2.BORDER_CONSTANT)
    if factor > 1:  # cv2.resize's linear mapping puts each block's value at the block's centre
        out = cv2.resize(out, (out.shape[1] * factor, out.shape[0] * factor), interpolation=cv2.INTER_LINEAR)
        out = np.ascontiguousarray(out[:gh, :gw])
    if out.ndim == 2:  # cv2 drops a single channel
        out = out[:, :, None]
    nb = grid.shape[2]
    if nb > 1 and range_sigma_bins > 0:
        out = (out.reshape(-1, nb) @ _range_matrix(nb, range_sigma_bins)).reshape(grid.shape)
    return out


@dataclass(frozen=True)
class _Points:
    """The points' places on a grid of `shape`, computed once: the spatial cell and bin pair each is splatted to,
    and the eight corners and weights that sample the grid trilinearly at it (clamped at the borders, as
    ndimage.map_coordinates' mode="nearest"), so that each splat and sample is one bincount or one gather."""

    shape: tuple[int, int, int]
    splat_idx: np.ndarray  # flat index of the lower of the two bins each point is splatted to
    splat_frac: np.ndarray  # its share of the upper bin
    sample_idx: np.ndarray  # (8, N) flat indices of the trilinear corners
    sample_w: np.ndarray  # (8, N) float32 weights

    @classmethod
    def on_grid(cls, coords: np.ndarray, shape: tuple[int, int, int]) -> _Points:
        """coords: (3, N) continuous (row, col, bin) grid coordinates, cell centres at integers."""
        gh, gw, nb = shape
        sizes = np.array([[gh], [gw], [nb]])
        # All three axes at once (a few (3, N) passes instead of a dozen (N,) ones per axis).
        cell = np.clip(np.floor(coords[:2] + 0.5), 0, sizes[:2] - 1).astype(np.int64)
        b0 = np.minimum(np.floor(coords[2]).astype(np.int64), max(nb - 2, 0))
        fb = coords[2] - b0 if nb > 1 else np.zeros_like(coords[2])
        c = np.clip(coords, 0, sizes - 1)
        lo = np.minimum(np.floor(c), np.maximum(sizes - 2, 0)).astype(np.int64)
        f = c - lo
        hi = np.minimum(lo + 1, sizes - 1)
        strides = np.array([[gw * nb], [nb], [1]])
        idx = np.stack([lo * strides, hi * strides])  # (2 corners, 3 axes, N)
        wts = np.stack([1 - f, f]).astype(np.float32)
        # corner (i, j, k): row corner i, column corner j, bin corner k
        sample_idx = (idx[:, None, None, 0] + idx[None, :, None, 1] + idx[None, None, :, 2]).reshape(8, -1)
        sample_w = (wts[:, None, None, 0] * wts[None, :, None, 1] * wts[None, None, :, 2]).reshape(8, -1)
        return cls(shape, (cell[0] * gw + cell[1]) * nb + b0, fb, sample_idx, sample_w)

    def subset(self, keep: np.ndarray) -> _Points:
        return _Points(self.shape, self.splat_idx[keep], self.splat_frac[keep], self.sample_idx[:, keep],
                       self.sample_w[:, keep])

    def splat(self, values: np.ndarray) -> np.ndarray:
        """Nearest cell in space, linear between the two nearest bins."""
        size = math.prod(self.shape)
        fb = self.splat_frac
        if self.shape[2] > 1:
            upper = fb * values
            acc = np.bincount(self.splat_idx, values - upper, size)
            acc += np.bincount(self.splat_idx + 1, upper, size)
        else:
            acc = np.bincount(self.splat_idx, values, size)
        return acc.astype(np.float32).reshape(self.shape)

    def sample(self, grid: np.ndarray) -> np.ndarray:
        values = grid.reshape(-1)[self.sample_idx]
        values *= self.sample_w
        return values.sum(axis=0, dtype=np.float64)


class _Grid:
    """A bilateral grid (gh x gw x n_bins, float32) over the image and log depth, with blur and slice.
    Bins are the last axis, so cv2 filters them as channels."""

    def __init__(self, shape: tuple[int, int], cell_px: int, n_bins: int, log_lo: float, log_hi: float):
        self.h, self.w = shape
        self.cell = cell_px
        self.n_bins = n_bins
        self.gh, self.gw = math.ceil(self.h / cell_px), math.ceil(self.w / cell_px)
        self.shape = (self.gh, self.gw, n_bins)
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

    def slice(self, grid: np.ndarray, log_d: np.ndarray) -> np.ndarray:
        """Trilinear interpolation at every pixel. The grid is first resized along its columns to the image's
        width (the bins as channels: linear, cell centres at (c + 0.5) * cell_px - 0.5), so that viewed as a
        2-D image (rows = grid rows, columns = x * n_bins + bin) one cv2.remap interpolates row and bin at
        each pixel's own column. log_d (float32 HxW) is overwritten (it becomes the remap's column map)."""
        gh, gw, nb = grid.shape
        wide = cv2.resize(grid, (gw * self.cell, gh), interpolation=cv2.INTER_LINEAR)
        flat = np.ascontiguousarray(wide[:, :self.w]).reshape(gh, self.w * nb)
        map_x = log_d
        if nb > 1:  # the bin coordinate, in place; NaN depth stays NaN (remap reads the border, the pixel is NaN)
            np.multiply(map_x, np.float32(self.bin_scale), out=map_x)
            np.subtract(map_x, np.float32(self.log_lo * self.bin_scale), out=map_x)
            np.clip(map_x, 0, nb - 1, out=map_x)
        else:
            map_x[...] = 0
        map_x += _column_offsets(self.w, nb)
        out: np.ndarray = cv2.remap(flat, map_x, _row_map(self.h, self.w, self.cell, gh), cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REPLICATE)
        return out


@functools.lru_cache(maxsize=8)
def _column_offsets(width: int, n_bins: int) -> np.ndarray:
    out = (np.arange(width, dtype=np.float32) * n_bins)[None, :]
    out.flags.writeable = False
    return out


@functools.lru_cache(maxsize=8)
def _row_map(height: int, width: int, cell_px: int, grid_rows: int) -> np.ndarray:
    """Each pixel's continuous grid row (cell centres at integers), as a full map for cv2.remap."""
    gy = np.clip((np.arange(height, dtype=np.float32) + 0.5) / cell_px - 0.5, 0, grid_rows - 1)
    out = np.ascontiguousarray(np.broadcast_to(gy[:, None], (height, width)))
    out.flags.writeable = False
    return out


@dataclass(frozen=True)
class LocalOptions:
    """How local_refine corrects the global map (AlignerSettings.local_options; the node sets max_heldout_ratio
    from local_heldout_ratio, the rest are these defaults)."""

    cell_px: int = 8  # spatial cell of the bilateral grid, px
    n_bins: int = 8  # log-depth bins of the grid (1: no edge awareness)
    range_sigma_bins: float = 1.0  # Gaussian sigma along the bins
    sigma_px: float | None = None  # base spatial sigma, px; None: from the point density (sigma_factor x spacing)
    sigma_factor: float = 1.1
    sigma_min_px: float = 6.0
    n_levels: int = 3  # coarse-to-fine levels, sigma_px * 2**level
    prior_points: float = 0.5  # pseudo-points of zero correction at each kernel centre
    outlier_k: float = 3.0  # robust sigmas from the leave-one-out neighbour mean that make a point an outlier
    outlier_floor: float = 0.01  # smallest outlier band, log ratio
    max_heldout_ratio: float = 0.9  # the correction is used when its held-out error is at most this x global's
    max_abs_log_correction: float = 1.0
    min_points: int = 20

    def __post_init__(self) -> None:
        for name in ("cell_px", "n_bins", "n_levels", "min_points"):
            value = getattr(self, name)
            if int(value) != value or value < 1:
                raise InputError(f"local alignment option {name} must be an integer >= 1, got {value!r}")
        for name in ("range_sigma_bins", "sigma_factor", "sigma_min_px", "prior_points", "outlier_k",
                     "outlier_floor", "max_heldout_ratio", "max_abs_log_correction"):
            value = getattr(self, name)
            if not value >= 0:  # also refuses NaN
                raise InputError(f"local alignment option {name} must be >= 0, got {value!r}")
        if self.sigma_px is not None and not self.sigma_px > 0:
            raise InputError(f"local alignment option sigma_px must be > 0 or None, got {self.sigma_px!r}")

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> LocalOptions:
        """From keyword values (align_detailed's local_kwargs); unknown names are refused by name."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise InputError(f"unknown local alignment option(s) {unknown}; known: {sorted(known)}")
        return cls(**options)


def local_refine(
    depth_global_m: np.ndarray,
    uv: np.ndarray,
    z: np.ndarray,
    fit: FitResult | None = None,
    options: LocalOptions | None = None,
    *,
    min_depth_m: float = 1e-3,
    max_depth_m: float = np.inf,
) -> LocalResult:
    """Correct a globally aligned depth map (float32 HxW metres, NaN invalid) with the sparse points.

    Coarse to fine over n_levels spatial sigmas (sigma_px * 2**level): each level smooths what the coarser
    ones left and shrinks toward them where its own kernel holds few points. fit is used for diagnostics only
    (the outlier test here is local). Returns a new float32 map (NaN outside [min_depth_m, max_depth_m]), or
    depth_m=None with a note when fewer than min_points usable points remain, or when the held-out test finds
    no local error (info["heldout_ratio"] > max_heldout_ratio): then the global map stands.
    """
    o = options or LocalOptions()
    cell_px, n_bins, range_sigma_bins, sigma_px = o.cell_px, o.n_bins, o.range_sigma_bins, o.sigma_px
    n_levels, prior_points, outlier_k, outlier_floor = o.n_levels, o.prior_points, o.outlier_k, o.outlier_floor
    max_heldout_ratio, max_abs_log_correction, min_points = o.max_heldout_ratio, o.max_abs_log_correction, o.min_points
    depth = np.asarray(depth_global_m, dtype=np.float32)
    if depth.ndim != 2:
        raise InputError(f"depth must be 2-D, got shape {depth.shape}")
    h, w = depth.shape
    uv_arr = np.asarray(uv).astype(np.int64)
    z_arr = np.asarray(z, dtype=np.float64).ravel()
    d_pts = sample_prediction(depth, uv_arr)
    with np.errstate(invalid="ignore", divide="ignore"):
        usable = np.isfinite(d_pts) & (d_pts > 0) & np.isfinite(z_arr) & (z_arr > 0)
    if np.count_nonzero(usable) < min_points:
        return LocalResult(None, note=f"local alignment needs {min_points} points, got {np.count_nonzero(usable)}")
    if not usable.all():  # usually all are: the node's projection keeps only valid points
        uv_arr, d_pts, z_arr = uv_arr[usable], d_pts[usable], z_arr[usable]
    xy = uv_arr  # int (column, row)
    log_dp = np.log(d_pts)
    r = np.log(z_arr) - log_dp

    # Depth bins over the range of the global map (subsampled: a full-resolution min/max costs ms).
    sub = depth[::4, ::4]
    finite = sub[np.isfinite(sub)]
    lo = float(np.log(finite.min())) if finite.size else float(log_dp.min())
    hi = float(np.log(finite.max())) if finite.size else float(log_dp.max())
    grid = _Grid((h, w), cell_px, n_bins, min(lo, float(log_dp.min())), max(hi, float(log_dp.max())))
    coords = grid.coords(xy, log_dp)
    pts = _Points.on_grid(coords, grid.shape)
    range_sigma = range_sigma_bins if n_bins > 1 else 0.0
    if sigma_px is None:
        sigma_px = max(o.sigma_factor * _density_sigma_px(xy, w, 4 * cell_px), o.sigma_min_px)

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
        w_all = pts.sample(_blur(pts.splat(ref), sig_out, range_sigma))
        r_all = pts.sample(_blur(pts.splat(ref * r), sig_out, range_sigma))
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
    # Model selection by held-out error: each point's leave-one-out prediction from its neighbours (e) against
    # the global fit's prediction (r, the residual itself), over the points both judge. Where the residuals are
    # noise around the global fit, the neighbours' mean only adds their noise (ratio >= 1), and the local
    # correction would too: the global map stands. The ratio must drop both in RMS (with 50-100 points the
    # median is too noisy alone) and in median absolute error (errors in a few clusters, as at depth edges the
    # projection could not clean, lower the RMS alone, and a correction spreads them over whole surfaces).
    judged_kept = judged & keep
    if np.count_nonzero(judged_kept) < min_points:
        return LocalResult(None, note="local alignment not used: too few points have neighbours to check it")
    r_ref = r[judged_kept] - np.median(r[judged_kept])
    e_ref = e[judged_kept]
    rms_ratio = math.sqrt(float(np.mean(e_ref**2)) / max(float(np.mean(r_ref**2)), 1e-30))
    mad_ratio = float(np.median(np.abs(e_ref))) / max(float(np.median(np.abs(r_ref))), 1e-15)
    heldout_ratio = max(rms_ratio, mad_ratio)
    if heldout_ratio > max_heldout_ratio:
        return LocalResult(None, info={"heldout_ratio": heldout_ratio},
                           note=f"local alignment not used: its held-out error is {heldout_ratio:.2f} of the "
                                f"global fit's (limit {max_heldout_ratio:g}): no local error to correct")
    # The outliers stay in the arrays with weight 0 (adding 0.0 to a bincount sum changes nothing): cheaper
    # than taking the subset of the eight sample corners.
    keep_w = keep.astype(np.float64)
    r_kept = r * keep_w
    w_splat = pts.splat(keep_w)
    total = np.zeros_like(w_splat)
    for level in reversed(range(n_levels)):
        sig_cells = sigma_px * 2**level / cell_px
        resid = (r - pts.sample(total)) * keep_w if level < n_levels - 1 else r_kept
        wsum = _blur(w_splat, sig_cells, range_sigma)
        rsum = _blur(pts.splat(resid), sig_cells, range_sigma)
        # Prior in units of "points at the kernel centre": the peak one point leaves after the blur.
        peak = 1.0 / (2 * math.pi * sig_cells**2)
        if n_bins > 1:
            peak /= math.sqrt(2 * math.pi) * range_sigma
        total += rsum / (wsum + prior_points * peak)
    np.clip(total, -max_abs_log_correction, max_abs_log_correction, out=total)

    correction = grid.slice(total, cv2.log(depth))
    out = cv2.multiply(depth, cv2.exp(correction, dst=correction), dst=correction)  # in place: 1.2 MB fewer
    with np.errstate(invalid="ignore"):  # NaN stays NaN
        out[out < min_depth_m] = np.nan
        if math.isfinite(max_depth_m):
            out[out > max_depth_m] = np.nan
    info = {
        "n_points": float(np.count_nonzero(keep)),
        "n_local_outliers": float(np.count_nonzero(~keep)),
        "n_unjudged": float(np.count_nonzero(~judged)),
        "sigma_px": float(sigma_px),
        "heldout_ratio": heldout_ratio,
    }
    if fit is not None:
        info["global_residual"] = float(fit.residual)
    return LocalResult(out, info)
