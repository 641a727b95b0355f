"""The global scale/shift fit of an affine-invariant prediction to sparse metric points, and its application.

MetricAligner (core.alignment) is the one place that combines this fit with the temporal filter, the hold
policy and the local refinement; this module is the fit alone, so local_alignment and temporal can use its
FitResult without importing the aligner.

The fit happens in the prediction's own space (alignment.md): depth models (Marigold, E2E-FT) z ~ s*p + t;
disparity models (Lotus-disparity, MiDaS, Depth Anything) 1/z ~ s*p + t. Fitting in the wrong space leaves an
error no pair (s, t) removes.

Residuals are relative by default, (s*p + t - y) / y with y = z or 1/z: plain squared error in depth space is
dominated by far points and in disparity space by near ones; relative residuals weigh every point like AbsRel
does. relative=False with robust=False is exactly np.linalg.lstsq on [p, 1] (Marigold's evaluation).

Robust fit (default "irls"): Huber IRLS (scale from the MAD), then points within inlier_k robust sigmas are
the inliers and a plain least-squares fit uses only them (repeated with the inliers' own sigma until the set
is stable). "lmeds" (least median of squares over random
point pairs, then the same refit) tolerates up to ~50 % outliers but is slower with many points (measured by
eval-alignment, "Robust fit" table in BENCHMARKS.md: both exact at 30 % outliers; 5000 points IRLS ~2-4 ms,
LMedS ~17 ms), hence IRLS by default.

Pixel coordinates uv are (column, row) integers of the *prediction*: project the points with the camera
scaled to the prediction size (PinholeCamera.scaled).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from depth_ft_ros.enums import Space
from depth_ft_ros.errors import InputError

SPACES = tuple(m.value for m in Space)
ROBUST_METHODS = ("irls", "lmeds")
_MAD_TO_SIGMA = 1.4826
_REPORT_SAMPLES = 2048  # residual_m and pred_range from at most ~this many inliers


@dataclass
class FitResult:
    """One scale/shift fit. residual: RMS of the relative fit-space residual over inliers (dimensionless,
    ~ relative depth error); residual_m: median |aligned depth - z| over inliers, metres."""

    ok: bool
    scale: float
    shift: float
    space: Space
    inliers: np.ndarray  # bool over the input points (False for points that could not be used)
    n_points: int  # usable points (finite prediction and depth)
    n_inliers: int
    residual: float
    residual_m: float
    reason: str | None = None
    pred_range: tuple[float, float] = (float("nan"), float("nan"))  # 10th/90th pct prediction at inliers
    robust_method: str = "none"
    extra: dict[str, float] = field(default_factory=dict)

    @classmethod
    def refused(cls, space: Space | str, n_points: int, reason: str, n_input: int | None = None) -> FitResult:
        """A refusal made by the caller (e.g. too few points to try)."""
        nan = float("nan")
        inliers = np.zeros(n_points if n_input is None else n_input, dtype=bool)
        return cls(False, nan, nan, Space.parse(space), inliers, n_points, 0, nan, nan, reason)


def sample_prediction(prediction: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Prediction values at integer pixels uv (N, 2) = (column, row); InputError if any lies outside."""
    pred = np.asarray(prediction)
    if pred.ndim != 2:
        raise InputError(f"prediction must be a 2-D (H, W) array, got shape {pred.shape}")
    uv_arr = np.asarray(uv)
    if uv_arr.ndim != 2 or uv_arr.shape[1] != 2:
        raise InputError(f"uv must be (N, 2) pixel coordinates, got shape {uv_arr.shape}")
    if uv_arr.dtype.kind == "f":
        uv_arr = np.floor(uv_arr + 0.5)
    ui, vi = uv_arr[:, 0].astype(np.int64), uv_arr[:, 1].astype(np.int64)
    h, w = pred.shape
    if uv_arr.shape[0] and (ui.min() < 0 or vi.min() < 0 or ui.max() >= w or vi.max() >= h):
        raise InputError(f"uv has pixels outside the {w}x{h} prediction: project points at the prediction size")
    return pred[vi, ui].astype(np.float64)


def _wls(p: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Weighted least squares y ~ s*p + t (closed form on centred data; w = weights of squared residuals)."""
    sw = w.sum()
    if sw <= 0:
        return float("nan"), float("nan")
    pm, ym = (w * p).sum() / sw, (w * y).sum() / sw
    dp = p - pm
    var = (w * dp * dp).sum()
    if var <= 0:
        return float("nan"), float("nan")
    s = (w * dp * (y - ym)).sum() / var
    return float(s), float(ym - s * pm)


def _quantiles(values: np.ndarray, qs: tuple[float, ...], max_samples: int | None = None) -> tuple[float, ...]:
    """Nearest-rank quantiles by one np.partition (np.percentile's interpolation costs ~4x more here).

    max_samples: from an evenly strided subsample of about that many values (for reported statistics, where a
    few per cent do not matter and the partitions were a quarter of the fit's time)."""
    if max_samples is not None and values.size > 2 * max_samples:
        values = values[:: values.size // max_samples]
    n = values.size
    ranks = [min(n - 1, max(0, round(q * (n - 1)))) for q in qs]
    part = np.partition(values, sorted(set(ranks)))
    return tuple(float(part[r]) for r in ranks)


def _robust_sigma(abs_residuals: np.ndarray, sigma_floor: float, max_samples: int = 1024) -> float:
    """MAD-based sigma of residuals centred near 0 (a fit with an intercept): median |r| x 1.4826.

    From an evenly strided subsample of at most ~max_samples residuals: the Huber threshold and the inlier band
    need the scale to a few per cent (the MAD of 1,000 samples is within ~3 %), and the medians were most of the
    fit's time at 5,000 points."""
    step = max(1, abs_residuals.size // max_samples)
    return max(_MAD_TO_SIGMA * float(np.median(abs_residuals[::step])), sigma_floor)


def _irls(p: np.ndarray, y: np.ndarray, a: np.ndarray, w0: np.ndarray, huber_k: float, max_iter: int,
          sigma_floor: float) -> tuple[float, float, float]:
    """Huber IRLS on residuals a*(s*p + t - y); returns (s, t, robust sigma)."""
    aw = w0 * a * a
    s, t = _wls(p, y, aw)
    sigma = sigma_floor
    for _ in range(max_iter):
        r = a * (s * p + t - y)
        ar = np.abs(r)
        sigma = _robust_sigma(ar, sigma_floor)
        hub = np.minimum(1.0, huber_k * sigma / np.maximum(ar, 1e-300))
        s_new, t_new = _wls(p, y, aw * hub)
        done = abs(s_new - s) <= 1e-6 * abs(s) + 1e-15 and abs(t_new - t) <= 1e-6 * (abs(t) + abs(s)) + 1e-15
        s, t = s_new, t_new
        if done or not np.isfinite(s):
            break
    return s, t, sigma


def _lmeds(p: np.ndarray, y: np.ndarray, a: np.ndarray, n_hypotheses: int, seed: int,
           sigma_floor: float) -> tuple[float, float, float]:
    """Least median of squares over random point pairs (deterministic seed); returns (s, t, robust sigma)."""
    rng = np.random.default_rng(seed)
    n = p.size
    i = rng.integers(0, n, n_hypotheses)
    j = rng.integers(0, n, n_hypotheses)
    dp = p[j] - p[i]
    good = np.abs(dp) > 1e-12 * (np.abs(p).max() + 1e-300)
    i, j, dp = i[good], j[good], dp[good]
    s = (y[j] - y[i]) / dp
    t = y[i] - s * p[i]
    pos = s > 0
    if not np.any(pos):
        return float("nan"), float("nan"), sigma_floor
    s, t = s[pos], t[pos]
    r = a[None, :] * (s[:, None] * p[None, :] + t[:, None] - y[None, :])
    med = np.median(np.abs(r), axis=1)
    best = int(np.argmin(med))
    # Rousseeuw's small-sample correction of the LMedS scale.
    sigma = max(_MAD_TO_SIGMA * (1 + 5.0 / max(n - 2, 1)) * float(med[best]), sigma_floor)
    return float(s[best]), float(t[best]), sigma


def fit_scale_shift(
    prediction: np.ndarray,
    uv: np.ndarray,
    z: np.ndarray,
    space: Space | str = Space.DEPTH,
    robust: bool = True,
    weights: np.ndarray | None = None,
    *,
    relative: bool = True,
    robust_method: str = "irls",
    min_points: int = 8,
    min_range_rel: float = 0.05,
    huber_k: float = 1.345,
    inlier_k: float = 3.0,
    max_iter: int = 10,  # the inlier refit after IRLS finishes the job: 10 vs 20 passes, same fits (measured)
    n_hypotheses: int = 200,
    seed: int = 0,
    fit_shift: bool = True,
) -> FitResult:
    """Fit metric ~ s*prediction + t at the sparse points (uv (N,2) column/row ints, z (N,) metres).

    Refuses (ok=False, reason set, scale/shift NaN) with fewer than min_points usable points, when the points
    span too small a range (5..95th percentile spread < min_range_rel x median in the fit space: scale and
    shift are then not separable), or when the fitted scale is not positive.

    fit_shift=False fits the scale alone (t = 0): one degree of freedom, so it needs no depth range and
    cannot be thrown by points that cover a narrow band of the scene; exact only for predictions whose zero
    means zero depth (or zero disparity).
    """
    space = Space.parse(space)
    if robust and robust_method not in ROBUST_METHODS:
        raise InputError(f"robust_method must be one of {ROBUST_METHODS}, got {robust_method!r}")
    z_arr = np.asarray(z, dtype=np.float64).ravel()
    p_all = sample_prediction(prediction, uv)
    if p_all.shape[0] != z_arr.shape[0]:
        raise InputError(f"uv has {p_all.shape[0]} points but z has {z_arr.shape[0]}")
    w_all = np.ones_like(z_arr) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    if w_all.shape != z_arr.shape:
        raise InputError(f"weights must have one value per point ({z_arr.shape[0]}), got {w_all.shape}")
    with np.errstate(invalid="ignore"):
        usable = np.isfinite(p_all) & np.isfinite(z_arr) & (z_arr > 0) & np.isfinite(w_all) & (w_all > 0)
    inliers = np.zeros(z_arr.shape, dtype=bool)
    n_usable = int(np.count_nonzero(usable))

    def refuse(reason: str) -> FitResult:
        result = FitResult.refused(space, n_usable, reason, n_input=z_arr.shape[0])
        result.robust_method = robust_method if robust else "none"
        return result

    if n_usable < min_points:
        return refuse(f"too few points: {n_usable} usable, need {min_points}")
    p, zz, w0 = p_all[usable], z_arr[usable], w_all[usable]
    y = zz if space == Space.DEPTH else 1.0 / zz
    lo, med, hi = _quantiles(y, (0.05, 0.5, 0.95)) if fit_shift else (0.0, 0.0, 0.0)  # scale alone: not needed
    if not fit_shift:
        s, inl = _scale_only(p, y, w0, inlier_k if robust else np.inf, min_points)
        t = 0.0
    elif hi - lo < min_range_rel * med:
        return refuse(f"depth range too small: points span {100 * (hi - lo) / med:.1f}% of their median, "
                      f"need {100 * min_range_rel:.0f}% to separate scale and shift")
    elif np.ptp(p) <= 1e-12 * max(float(np.abs(p).max()), 1e-300):
        return refuse("prediction is constant at the points")
    else:
        s, t, inl = _scale_shift(p, y, w0, relative, robust, robust_method, float(med), huber_k, inlier_k,
                                 max_iter, n_hypotheses, seed, min_points)
    if not (np.isfinite(s) and np.isfinite(t)):
        return refuse("fit did not converge (degenerate points)")
    if s <= 0:
        return refuse(f"non-positive scale {s:.4g}: the prediction does not increase with the metric "
                      f"{'depth' if space == Space.DEPTH else 'inverse depth'} (wrong space or bad points?)")
    inliers[np.flatnonzero(usable)[inl]] = True
    rel = (s * p[inl] + t - y[inl]) / y[inl]
    fitted = s * p[inl] + t
    with np.errstate(divide="ignore", invalid="ignore"):
        depth_fit = fitted if space == Space.DEPTH else 1.0 / fitted
    residual_m = _quantiles(np.abs(depth_fit - zz[inl]), (0.5,), max_samples=_REPORT_SAMPLES)[0]
    p_lo, p_hi = _quantiles(p[inl], (0.1, 0.9), max_samples=_REPORT_SAMPLES)
    return FitResult(True, float(s), float(t), space, inliers, n_usable, int(np.count_nonzero(inl)),
                     float(np.sqrt(np.mean(rel * rel))), residual_m, None, (float(p_lo), float(p_hi)),
                     robust_method if robust else "none")


def _scale_only(p: np.ndarray, y: np.ndarray, w0: np.ndarray, inlier_k: float,
                min_points: int) -> tuple[float, np.ndarray]:
    """s with y ~ s*p: the median ratio, then a weighted least-squares refit on the points whose relative
    residual is within inlier_k robust sigmas of it."""
    positive = p > 1e-6
    if np.count_nonzero(positive) < min_points:
        return float("nan"), positive
    # The start and the band only pick the inliers for the refit below: medians of a strided subsample suffice.
    ratio = y[positive] / p[positive]
    s = float(np.median(ratio[:: max(1, ratio.size // 1024)]))
    r = np.where(positive, s * p / y - 1.0, np.inf)
    sigma = _robust_sigma(np.abs(r[positive]), 1e-4)
    inl = np.abs(r) <= inlier_k * sigma
    if np.count_nonzero(inl) < min_points:
        inl = positive
    w = w0[inl] / y[inl] ** 2  # relative residuals, as in the scale-and-shift fit
    return float(np.sum(w * p[inl] * y[inl]) / np.sum(w * p[inl] ** 2)), inl


def _scale_shift(p: np.ndarray, y: np.ndarray, w0: np.ndarray, relative: bool, robust: bool, robust_method: str,
                 med: float, huber_k: float, inlier_k: float, max_iter: int, n_hypotheses: int, seed: int,
                 min_points: int) -> tuple[float, float, np.ndarray]:
    a = 1.0 / y if relative else np.ones_like(y)
    sigma_floor = 1e-4 if relative else 1e-4 * med
    if robust:
        if robust_method == "irls":
            s, t, sigma = _irls(p, y, a, w0, huber_k, max_iter, sigma_floor)
        else:
            s, t, sigma = _lmeds(p, y, a, n_hypotheses, seed, sigma_floor)
        # Inliers within inlier_k robust sigmas, refitted by plain least squares; repeated with the sigma of
        # the inliers alone (the first sigma is inflated by the outliers) until the set stops changing.
        inl = np.ones_like(y, dtype=bool)
        for _ in range(5):
            r = a * (s * p + t - y)
            new_inl = np.abs(r) <= inlier_k * sigma
            # Converged when the set stops changing, or only flickers at its edge (<= 0.1 % of the points).
            if (np.count_nonzero(new_inl) < max(min_points, 2)
                    or np.count_nonzero(new_inl != inl) <= new_inl.size // 1000):
                break
            inl = new_inl
            s, t = _wls(p[inl], y[inl], w0[inl] * a[inl] ** 2)
            r_in = a[inl] * (s * p[inl] + t - y[inl])
            sigma = _robust_sigma(np.abs(r_in), sigma_floor)
    else:
        s, t = _wls(p, y, w0 * a * a)
        inl = np.ones_like(y, dtype=bool)
    return s, t, inl


def apply_scale_shift(
    prediction: np.ndarray,
    scale: float | np.ndarray,
    shift: float | np.ndarray,
    space: Space | str = Space.DEPTH,
    min_depth: float = 1e-3,
    max_depth: float = np.inf,
) -> np.ndarray:
    """Metric depth (float32 HxW, metres) from the prediction; NaN where non-positive or outside
    [min_depth, max_depth]. scale/shift may be scalars or per-pixel maps."""
    space = Space.parse(space)
    pred = np.asarray(prediction, dtype=np.float32)
    # float32 scalars or maps: a float64 scalar would promote the whole map to float64.
    scale_32 = np.asarray(scale, dtype=np.float32)
    shift_32 = np.asarray(shift, dtype=np.float32)
    fitted: np.ndarray = pred * scale_32
    if shift_32.ndim or shift_32 != 0:
        fitted += shift_32
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        depth = fitted if space == Space.DEPTH else np.reciprocal(fitted, out=fitted)
        # NaN fails both comparisons; inf fails the second one unless max_depth is inf itself.
        good = depth >= max(float(min_depth), float(np.finfo(np.float32).tiny))
        good &= depth <= max_depth if np.isfinite(max_depth) else depth < np.inf
    np.copyto(depth, np.float32(np.nan), where=~good)
    return depth
