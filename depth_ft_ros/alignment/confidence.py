"""Per-pixel confidence of an aligned metric depth map, and the flying-pixel (depth edge) mask for the cloud.

What goes in, all measured by the node on the frame itself (no learned uncertainty):

- agreement of nearby sparse points with the aligned map: the relative residual |depth_m(uv) - z| / z of each
  point, averaged over the points around a pixel (normalised Gaussian convolution, falling back to the frame's
  median residual where no point is near). Where the LiDAR disagrees with the map, the map is wrong there.
- distance in the image to the nearest sparse point (as a fraction of the image width): between LiDAR lines and
  beyond the scanned field of view the alignment interpolates or extrapolates.
- distance in depth to that nearest point, |log(depth_m / z_nearest)|: a point on another surface says little
  about this one (the local correction does not carry across depth), and neither does the global fit far from
  the depths it saw.
- range: how far the pixel's depth lies outside the depth range the sparse points cover (log ratio): there the
  affine fit is extrapolated in depth.
- depth discontinuities (depth_edges): a network's output is low-resolution and upsampled, so foreground and
  background are smeared into each other along depth edges ("flying pixels"): a fixed extra expected error
  (weight_edge). The cloud drops these pixels outright (depth_edges); in the confidence, measured, a small
  penalty orders pixels better than a zero: many edge pixels of a well aligned map are still good.

The terms add up to an expected relative error e (linear non-negative weights, chosen by measurement on the Middlebury
simulation, see BENCHMARKS.md "Confidence"), and confidence = 1 / (1 + e / error_at_half): 0.5 where the
expected relative depth error is error_at_half, 1 where nothing speaks against the pixel. NaN depth -> 0.
Without any sparse point the map is not supported by a measurement of this frame: confidence is 0 everywhere.

For the node: depth_edges (the cloud's flying-pixel filter), confidence_map (depth/confidence; pass it the
same edges mask), cloud_keep_mask (edges + ConfidenceSettings.cloud_min_confidence -> the pixels the cloud keeps),
error_split (error at the sparse points on kept vs dropped pixels, for the replay summary).

Cost: everything but the edge test runs on a grid of cell_px x cell_px cells (the terms vary slowly) and is
upsampled bilinearly once; the edge test is one 3x3 morphological gradient (max - min) at full resolution.
The full-resolution work is kept to a few dense passes (no masked numpy writes, no per-pixel Python).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import cv2
import numpy as np

from depth_ft_ros.errors import ConfigError, InputError


@dataclass(frozen=True)
class ConfidenceSettings:
    """Defaults measured on the Middlebury simulation (eval: depth_ft_ros.evaluation.confidence_eval)."""

    # Flying pixels: a pixel is on a depth edge when max - min of the metric depth within a window of
    # (2 * edge_radius_px + 1) pixels exceeds edge_threshold_rel x its own depth, and so is every pixel within
    # edge_dilate_px of one. Measured on the metric map: the relative map's shift is unknown, so its jumps
    # are not relative depth jumps. 4 % over 2 px also flags surfaces seen within ~5 deg of grazing at
    # f ~ 500 px (e.g. the floor beyond ~10 camera heights): raise it where the floor must stay in the cloud.
    # A wider window or a dilation catches more of a strongly smeared edge but removes 2-3x more good points.
    edge_threshold_rel: float = 0.04
    edge_radius_px: int = 1
    edge_dilate_px: int = 0
    # Grid of the slowly varying terms, px per cell at the depth image's resolution.
    cell_px: int = 4
    # Spread of the residuals: Gaussian sigma (px) and the weight of the frame's median residual (in points).
    residual_sigma_px: float = 16.0
    residual_prior_points: float = 0.5
    # Weights of the terms in the expected relative error.
    weight_residual: float = 1.0
    weight_distance: float = 0.25
    weight_depth_gap: float = 0.25
    weight_range: float = 1.0
    weight_edge: float = 0.02
    # Expected relative error at which confidence is 0.5.
    error_at_half: float = 0.05
    # The cloud keeps pixels with confidence >= this (0 keeps all): 0.3 = expected error up to ~12 %.
    # Measured (BENCHMARKS.md "Confidence"): with a global fit it drops ~40 % of the points, whose error is ~3x
    # that of the kept ones; with the local correction it drops ~1 %.
    cloud_min_confidence: float = 0.3

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not (isinstance(value, (int, float)) and math.isfinite(value)):
                raise ConfigError(f"confidence setting {f.name} must be a finite number, got {value!r}")
        if not self.edge_threshold_rel > 0:
            raise ConfigError(f"edge_threshold_rel must be > 0, got {self.edge_threshold_rel}")
        for name in ("edge_radius_px", "cell_px"):
            value = getattr(self, name)
            if int(value) != value or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value}")
        if int(self.edge_dilate_px) != self.edge_dilate_px or self.edge_dilate_px < 0:
            raise ConfigError(f"edge_dilate_px must be an integer >= 0, got {self.edge_dilate_px}")
        if not 0 <= self.cloud_min_confidence <= 1:
            raise ConfigError(f"cloud_min_confidence must be within [0, 1], got {self.cloud_min_confidence}")
        for name in ("residual_sigma_px", "error_at_half"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("residual_prior_points", "weight_residual", "weight_distance", "weight_depth_gap",
                     "weight_range", "weight_edge"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")


def _check_depth(depth_m: np.ndarray) -> np.ndarray:
    depth = np.asarray(depth_m)
    if depth.ndim != 2:
        raise InputError(f"depth must be a 2-D (H, W) image, got shape {depth.shape}")
    return depth.astype(np.float32, copy=False)


def _square(size: int) -> np.ndarray:
    return np.ones((size, size), np.uint8)


def depth_edges(depth_m: np.ndarray, threshold_rel: float = ConfidenceSettings.edge_threshold_rel,
                radius_px: int = ConfidenceSettings.edge_radius_px,
                dilate_px: int = ConfidenceSettings.edge_dilate_px) -> np.ndarray:
    """Bool HxW mask of pixels on depth discontinuities of a metric depth map (float HxW metres, NaN invalid).

    A pixel is on an edge when the depth span (max - min) of its (2 radius_px + 1)^2 window exceeds threshold_rel
    times its own depth, like a depth camera's edge filter; both sides of a jump are marked (the smeared ramp
    between them belongs to neither surface). Valid pixels next to invalid depth are edges too: a hole or the
    end of the valid range (sky, beyond max_depth) borders them, so what lies there is unknown. Then the mask
    is dilated by dilate_px (an upsampled map smears an edge over more pixels than the window sees).
    Invalid pixels (NaN, <= 0) are False: they are NaN in the cloud already.
    """
    depth = _check_depth(depth_m)
    d0 = depth.copy()
    cv2.patchNaNs(d0, 0.0)  # invalid -> 0: never the max; as the min it marks the hole's border
    # max - min of the window in one pass (morphological gradient = dilate - erode)
    span = cv2.morphologyEx(d0, cv2.MORPH_GRADIENT, _square(2 * radius_px + 1), borderType=cv2.BORDER_REPLICATE)
    edges = span > d0 * np.float32(threshold_rel)
    if dilate_px > 0:
        edges = cv2.dilate(edges.view(np.uint8), _square(2 * dilate_px + 1)).view(bool)
    edges &= d0 > 0  # invalid pixels themselves are not edges (NaN in the cloud already)
    return edges


@dataclass
class ConfidenceTerms:
    """The terms on the cell grid (float32 gh x gw), each a relative error estimate, before weighting."""

    residual: np.ndarray  # spread relative residual of the sparse points
    distance: np.ndarray  # image distance to the nearest point / image width
    depth_gap: np.ndarray  # |log(depth / z of the nearest point)|
    range: np.ndarray  # log distance of the depth outside [min z, max z] of the points


def _check_sparse(uv: np.ndarray, z_m: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    uv_arr = np.asarray(uv)
    z_arr = np.asarray(z_m, dtype=np.float64).ravel()
    if uv_arr.ndim != 2 or uv_arr.shape[1] != 2:
        raise InputError(f"sparse uv must be (N, 2) pixel coordinates (column, row), got shape {uv_arr.shape}")
    if uv_arr.shape[0] != z_arr.shape[0]:
        raise InputError(f"sparse uv has {uv_arr.shape[0]} points but z_m has {z_arr.shape[0]}")
    uv_int = np.floor(uv_arr + 0.5).astype(np.int64) if uv_arr.dtype.kind == "f" else uv_arr.astype(np.int64)
    h, w = shape
    if uv_int.shape[0] and ((uv_int < 0).any() or (uv_int[:, 0] >= w).any() or (uv_int[:, 1] >= h).any()):
        raise InputError(f"sparse uv has pixels outside the {w}x{h} depth image: project at the depth's size")
    return uv_int, z_arr


def confidence_terms(depth_m: np.ndarray, uv: np.ndarray, z_m: np.ndarray,
                     settings: ConfidenceSettings | None = None) -> ConfidenceTerms | None:
    """The four slowly varying terms on the cell grid, or None when no sparse point is usable."""
    s = settings or ConfidenceSettings()
    depth = _check_depth(depth_m)
    h, w = depth.shape
    uv_int, z = _check_sparse(uv, z_m, (h, w))
    d_pts = depth[uv_int[:, 1], uv_int[:, 0]].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        usable = np.isfinite(z) & (z > 0) & np.isfinite(d_pts) & (d_pts > 0)
    if not usable.all():  # usually all are: the node's projection keeps only valid points
        uv_int, z, d_pts = uv_int[usable], z[usable], d_pts[usable]
    if z.size == 0:
        return None
    resid = np.abs(d_pts - z) / z

    c = s.cell_px
    gh, gw = -(-h // c), -(-w // c)
    cell = (uv_int[:, 1] // c) * gw + uv_int[:, 0] // c
    n_cells = gh * gw
    log_z = np.log(z)
    count = np.bincount(cell, minlength=n_cells).astype(np.float32).reshape(gh, gw)
    r_sum = np.bincount(cell, resid, n_cells).astype(np.float32).reshape(gh, gw)
    logz_sum = np.bincount(cell, log_z, n_cells).astype(np.float32).reshape(gh, gw)

    # Residuals spread by a normalised Gaussian convolution, shrunk toward the frame's median residual.
    sigma = s.residual_sigma_px / c
    ksize = 2 * math.ceil(3 * sigma) + 1
    w_blur = cv2.GaussianBlur(count, (ksize, ksize), sigma, borderType=cv2.BORDER_CONSTANT)
    r_blur = cv2.GaussianBlur(r_sum, (ksize, ksize), sigma, borderType=cv2.BORDER_CONSTANT)
    prior = np.float32(s.residual_prior_points / (2 * math.pi * sigma * sigma))  # a point's peak after the blur
    r_blur += prior * np.float32(np.median(resid))
    w_blur += prior
    residual = np.divide(r_blur, w_blur, out=r_blur)

    # Nearest occupied cell: distance (cells) and, through the label of that cell, its mean log z. With labels
    # OpenCV has only the 5x5-mask approximation (DIST_MASK_PRECISE falls back to it): within 0.16 cell of exact.
    has = count > 0
    dist, labels = cv2.distanceTransformWithLabels((~has).view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_5,
                                                   labelType=cv2.DIST_LABEL_PIXEL)
    lut = np.zeros(int(labels.max()) + 1, np.float32)
    lut[labels[has]] = logz_sum[has] / count[has]
    logz_near = lut.take(np.asarray(labels, np.int32))
    distance = np.multiply(dist, np.float32(c / w), out=dist)

    d_low = cv2.resize(depth, (gw, gh), interpolation=cv2.INTER_NEAREST)
    d_low[~(d_low > 0)] = np.nan  # invalid (NaN or <= 0): no gap or range term (the pixel's confidence is 0)
    log_d = np.log(d_low, out=d_low)
    lo, hi = np.float32(log_z.min()), np.float32(log_z.max())
    # fmax(NaN, 0) = 0: no term at invalid cells
    depth_gap = np.fmax(np.abs(np.subtract(log_d, logz_near, out=logz_near), out=logz_near), 0, out=logz_near)
    out_range = np.fmax(log_d - hi, 0)
    out_range += np.fmax(lo - log_d, 0)
    return ConfidenceTerms(residual, distance, depth_gap, out_range)


def expected_error(terms: ConfidenceTerms, settings: ConfidenceSettings | None = None) -> np.ndarray:
    """Weighted sum of the terms: the expected relative depth error on the cell grid (float32)."""
    s = settings or ConfidenceSettings()
    e = np.float32(s.weight_residual) * terms.residual
    e += np.float32(s.weight_distance) * terms.distance
    e += np.float32(s.weight_depth_gap) * terms.depth_gap
    e += np.float32(s.weight_range) * terms.range
    return e


def confidence_map(depth_m: np.ndarray, uv: np.ndarray, z_m: np.ndarray,
                   settings: ConfidenceSettings | None = None, edges: np.ndarray | None = None) -> np.ndarray:
    """Confidence (float32 HxW in [0, 1]) of a metric depth map (float HxW metres, NaN invalid) given the sparse
    points it was aligned to (uv (N, 2) int column/row at the depth's size, z_m (N,) metres).

    edges: a precomputed depth_edges mask (the cloud filter's), else computed here with the settings' edge test.
    0 at invalid depth and everywhere when no sparse point is usable (see the module docstring).
    """
    s = settings or ConfidenceSettings()
    depth = _check_depth(depth_m)
    h, w = depth.shape
    terms = confidence_terms(depth, uv, z_m, s)
    if terms is None:
        return np.zeros((h, w), np.float32)
    half = np.float32(s.error_at_half)
    e_low = expected_error(terms, s) + half
    err = cv2.resize(e_low, (w, h), interpolation=cv2.INTER_LINEAR)
    if s.weight_edge > 0:
        if edges is None:
            edges = depth_edges(depth, s.edge_threshold_rel, s.edge_radius_px, s.edge_dilate_px)
        elif edges.shape != (h, w):
            raise InputError(f"edges mask {edges.shape} does not match the depth image {(h, w)}")
        cv2.add(err, float(s.weight_edge), dst=err, mask=edges.view(np.uint8))  # ~3x faster than numpy's
    # numerator: error_at_half where the depth is valid, 0 where not (NaN, <= 0: threshold maps NaN to 0)
    numerator = cv2.threshold(depth, 0.0, float(half), cv2.THRESH_BINARY)[1]
    return np.divide(numerator, err, out=err)


def cloud_keep_mask(depth_m: np.ndarray, edges: np.ndarray | None = None, confidence: np.ndarray | None = None,
                    min_confidence: float = 0.0) -> np.ndarray:
    """Bool HxW: pixels that go into the cloud: valid depth, not on a depth edge (when edges is given) and
    confidence >= min_confidence (when confidence is given and min_confidence > 0). depth/image itself stays
    complete; the cloud sets the other pixels to NaN."""
    depth = _check_depth(depth_m)
    keep = depth > 0
    if edges is not None:
        if edges.shape != depth.shape:
            raise InputError(f"edges mask {edges.shape} does not match the depth image {depth.shape}")
        keep &= ~edges
    if confidence is not None and min_confidence > 0:
        if confidence.shape != depth.shape:
            raise InputError(f"confidence {confidence.shape} does not match the depth image {depth.shape}")
        keep &= confidence >= np.float32(min_confidence)
    return keep


@dataclass
class ErrorSplit:
    """AbsRel of the depth at the sparse points that fall on kept vs dropped pixels (NaN where none)."""

    kept_absrel: float
    dropped_absrel: float
    n_kept: int
    n_dropped: int


def error_split(depth_m: np.ndarray, uv: np.ndarray, z_m: np.ndarray, keep: np.ndarray) -> ErrorSplit:
    """How wrong the kept and the dropped pixels are, measured against the sparse points (the only reference a
    running node has): mean |depth_m(uv) - z| / z over the points with valid depth, split by keep at their pixel.
    For the replay summary; with the local correction the points were also fitted, so both numbers are low."""
    depth = _check_depth(depth_m)
    uv_int, z = _check_sparse(uv, z_m, depth.shape)
    keep_arr = np.asarray(keep, dtype=bool)
    if keep_arr.shape != depth.shape:
        raise InputError(f"keep mask {keep_arr.shape} does not match the depth image {depth.shape}")
    d = depth[uv_int[:, 1], uv_int[:, 0]].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        usable = np.isfinite(z) & (z > 0) & (d > 0)
        rel = np.abs(d - z) / z
    kept = usable & keep_arr[uv_int[:, 1], uv_int[:, 0]]
    dropped = usable & ~kept
    nan = float("nan")
    return ErrorSplit(float(rel[kept].mean()) if kept.any() else nan,
                      float(rel[dropped].mean()) if dropped.any() else nan,
                      int(kept.sum()), int(dropped.sum()))
