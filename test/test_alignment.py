"""Global scale/shift fit: least-squares reference, exact recovery, wrong space, outliers, refusals."""

from __future__ import annotations

import numpy as np
import pytest

from depth_ft_ros.alignment.aligner import align, align_detailed, apply_scale_shift, fit_scale_shift
from depth_ft_ros.errors import InputError
from depth_ft_ros.evaluation import lidar_sim
from depth_ft_ros.evaluation.metrics import depth_metrics
from depth_ft_ros.evaluation.middlebury import load_motorcycle
from depth_ft_ros.evaluation.synthetic import make_relative
from depth_ft_ros.geometry.sparse import project_sparse_points


def _frame():
    return load_motorcycle()


def _random_points(n: int, seed: int, noise: float = 0.01):
    rng = np.random.default_rng(seed)
    uv, z = lidar_sim.random_pixels(_frame().depth_m, n, rng)
    return uv, lidar_sim.add_relative_noise(z, noise, rng)


def _lidar_points(n_lines: int, seed: int):
    frame = _frame()
    rng = np.random.default_rng(seed)
    pts = lidar_sim.add_relative_noise(lidar_sim.lidar_scan(frame.depth_m, frame.camera, n_lines, rng=rng), 0.01, rng)
    sp = project_sparse_points(pts, frame.camera)
    return sp.uv, sp.z_m.astype(np.float64)


@pytest.mark.parametrize("space", ["depth", "disparity"])
def test_plain_fit_equals_numpy_lstsq(space: str) -> None:
    pred = make_relative(_frame().depth_m, "noise", space, np.random.default_rng(0)).prediction
    uv, z = _random_points(300, 1)
    p = pred[uv[:, 1], uv[:, 0]].astype(np.float64)
    y = z if space == "depth" else 1.0 / z
    a = np.stack([p, np.ones_like(p)], 1)
    fit = fit_scale_shift(pred, uv, z, space, robust=False, relative=False)
    ref = np.linalg.lstsq(a, y, rcond=None)[0]
    np.testing.assert_allclose([fit.scale, fit.shift], ref, rtol=1e-9)
    # relative residuals = least squares on rows divided by y
    fit_rel = fit_scale_shift(pred, uv, z, space, robust=False)
    ref_rel = np.linalg.lstsq(a / y[:, None], np.ones_like(y), rcond=None)[0]
    np.testing.assert_allclose([fit_rel.scale, fit_rel.shift], ref_rel, rtol=1e-9)
    assert fit.ok and fit.inliers.all() and fit.n_points == 300


@pytest.mark.parametrize("space", ["depth", "disparity"])
def test_exact_affine_input_is_recovered(space: str) -> None:
    gt = _frame().depth_m
    target = np.nan_to_num(gt, nan=3.0).astype(np.float64)
    target = target if space == "depth" else 1.0 / target
    scale, shift = 0.37, -0.21
    pred = ((target - shift) / scale).astype(np.float32)  # metric = scale * pred + shift
    uv, z = _random_points(100, 2, noise=0.0)
    fit = fit_scale_shift(pred, uv, z, space)
    assert fit.scale == pytest.approx(scale, rel=1e-5) and fit.shift == pytest.approx(shift, abs=1e-5)
    depth = align(pred, uv, z, space=space)
    assert depth.dtype == np.float32
    assert depth_metrics(depth, gt)["absrel"] < 1e-5
    assert fit.residual < 1e-5 and fit.residual_m < 1e-4


def test_wrong_space_leaves_an_error_the_right_space_removes() -> None:
    gt = _frame().depth_m
    uv, z = _random_points(500, 3)
    for space, other in (("disparity", "depth"), ("depth", "disparity")):
        p = make_relative(gt, "noise", space, np.random.default_rng(4)).prediction
        p = (p - p.min()) / (p.max() - p.min()) + 0.1  # positive, so that 1/p exists
        right = fit_scale_shift(p, uv, z, space)
        right_err = depth_metrics(apply_scale_shift(p, right.scale, right.shift, space), gt)["absrel"]
        # Inverting the prediction to use the other space: not affine there, two parameters cannot fix it.
        wrong = fit_scale_shift(1.0 / p, uv, z, other)
        wrong_err = depth_metrics(apply_scale_shift(1.0 / p, wrong.scale, wrong.shift, other), gt)["absrel"]
        assert right_err < 0.012  # ~ the 1 % noise in prediction and points
        assert wrong_err > 3 * right_err
        # The raw prediction in the other space runs the wrong way: refused, not silently wrong.
        raw = fit_scale_shift(p, uv, z, other)
        assert not raw.ok and "non-positive scale" in (raw.reason or "")


@pytest.mark.parametrize("pattern", ["random500", "lidar16"])
def test_ten_percent_outliers_barely_move_the_robust_fit(pattern: str) -> None:
    frame = _frame()
    pred = make_relative(frame.depth_m, "noise", "depth", np.random.default_rng(5)).prediction
    uv, z = _random_points(500, 6) if pattern == "random500" else _lidar_points(16, 6)
    z_out, mask = lidar_sim.add_outliers(z, 0.10, np.random.default_rng(7))
    clean = depth_metrics(align(pred, uv, z), frame.depth_m)["absrel"]
    dirty = depth_metrics(align(pred, uv, z_out), frame.depth_m)["absrel"]
    assert dirty <= 1.10 * clean
    fit = fit_scale_shift(pred, uv, z_out)
    assert np.mean(~fit.inliers[mask]) > 0.7  # most outliers are flagged
    assert np.mean(fit.inliers[~mask]) > 0.95  # and few good points
    plain = fit_scale_shift(pred, uv, z_out, robust=False)
    plain_err = depth_metrics(apply_scale_shift(pred, plain.scale, plain.shift), frame.depth_m)["absrel"]
    assert plain_err > 1.5 * dirty  # robustness is what holds it


def test_lmeds_option_agrees_with_irls() -> None:
    pred = make_relative(_frame().depth_m, "noise", "depth", np.random.default_rng(8)).prediction
    uv, z = _random_points(500, 9)
    z, _ = lidar_sim.add_outliers(z, 0.3, np.random.default_rng(10))
    a = fit_scale_shift(pred, uv, z, robust_method="irls")
    b = fit_scale_shift(pred, uv, z, robust_method="lmeds")
    assert a.scale == pytest.approx(b.scale, rel=0.01) and a.shift == pytest.approx(b.shift, abs=0.02)


def test_refusals_carry_reasons_and_align_raises_them() -> None:
    pred = make_relative(_frame().depth_m, "noise", "depth", np.random.default_rng(11)).prediction
    uv, z = _random_points(50, 12)
    few = fit_scale_shift(pred, uv[:5], z[:5])
    assert not few.ok and "too few points" in (few.reason or "") and np.isnan(few.scale)
    flat = fit_scale_shift(pred, uv, np.full(50, 3.0))
    assert not flat.ok and "range too small" in (flat.reason or "")
    inverted = fit_scale_shift(-pred, uv, z)
    assert not inverted.ok and "non-positive scale" in (inverted.reason or "")
    with pytest.raises(InputError, match="too few points"):
        align(pred, uv[:5], z[:5])
    z_nan = z.copy()
    z_nan[:45] = np.nan  # unusable points do not count
    assert "too few points: 5 usable" in (fit_scale_shift(pred, uv, z_nan).reason or "")


def test_bad_inputs_raise() -> None:
    pred = np.ones((10, 10), np.float32)
    with pytest.raises(InputError, match="outside"):
        fit_scale_shift(pred, np.array([[10, 0]]), np.array([1.0]))
    with pytest.raises(InputError):
        fit_scale_shift(pred, np.array([[1, 1]]), np.array([1.0, 2.0]))
    with pytest.raises(InputError):
        fit_scale_shift(pred, np.array([[1, 1]]), np.array([1.0]), space="log")
    with pytest.raises(InputError):
        align(pred, np.array([[1, 1]]), np.array([1.0]), method="magic")


def test_apply_scale_shift_range_and_invalid() -> None:
    pred = np.array([[-1.0, 0.0, 0.5, 1.0, 4.0, np.nan]], np.float32)
    depth = apply_scale_shift(pred, 2.0, 0.0, "depth", min_depth=0.5, max_depth=5.0)
    np.testing.assert_array_equal(np.isnan(depth), [[True, True, False, False, True, True]])
    disp = apply_scale_shift(pred, 1.0, 0.0, "disparity")  # depth = 1 / pred
    np.testing.assert_allclose(disp[0, 2:5], [2.0, 1.0, 0.25])
    assert np.isnan(disp[0, :2]).all() and disp.dtype == np.float32
    per_pixel = apply_scale_shift(np.ones((2, 2)), np.array([[1, 2], [3, 4]]), 1.0, "depth")
    np.testing.assert_array_equal(per_pixel, [[2, 3], [4, 5]])
    unbounded = apply_scale_shift(np.array([[np.inf, -np.inf, 3.0]]), 1.0, 0.5, "depth")  # max_depth = inf
    np.testing.assert_array_equal(np.isnan(unbounded), [[True, True, False]])


def test_align_detailed_reports_the_method_used() -> None:
    pred = make_relative(_frame().depth_m, "noise", "depth", np.random.default_rng(13)).prediction
    uv, z = _random_points(12, 14)
    res = align_detailed(pred, uv, z, method="local")  # enough for a global fit, too few for local
    assert res.method == "global" and res.note and res.fit.ok
    uv, z = _random_points(200, 15)
    res = align_detailed(pred, uv, z, method="local")  # noise alone: nothing local to correct
    assert res.method == "global" and res.note and "held-out" in res.note
    distorted = make_relative(_frame().depth_m, "smooth", "depth", np.random.default_rng(13)).prediction
    res = align_detailed(distorted, uv, z, method="local")
    assert res.method == "local" and res.local and res.local["n_points"] > 150 and res.note is None


def test_scale_only_fit_recovers_scale_and_rejects_outliers() -> None:
    rng = np.random.default_rng(3)
    h, w = 60, 80
    depth_m = rng.uniform(2.0, 5.0, (h, w))
    relative = depth_m / 7.5  # a prediction whose zero is zero depth: scale 7.5, no shift
    uv = np.stack([rng.integers(0, w, 300), rng.integers(0, h, 300)], axis=1)
    z = depth_m[uv[:, 1], uv[:, 0]].copy()
    z[:30] = rng.uniform(2.0, 5.0, 30)  # 10 % outliers
    fit = fit_scale_shift(relative, uv, z, space="depth", fit_shift=False)
    assert fit.ok and fit.shift == 0.0
    assert fit.scale == pytest.approx(7.5, rel=1e-3)
    assert fit.n_inliers <= 300 - 20  # most outliers left out

    # A prediction with a shift: the affine fit recovers it, the scale-only fit cannot.
    shifted = relative + 0.2
    affine = fit_scale_shift(shifted, uv[30:], z[30:], space="depth")
    scale_only = fit_scale_shift(shifted, uv[30:], z[30:], space="depth", fit_shift=False)
    truth = depth_m[uv[30:, 1], uv[30:, 0]]
    affine_err = np.abs(affine.scale * shifted[uv[30:, 1], uv[30:, 0]] + affine.shift - truth) / truth
    scale_err = np.abs(scale_only.scale * shifted[uv[30:, 1], uv[30:, 0]] - truth) / truth
    assert affine_err.max() < 1e-6 < 0.05 < scale_err.mean()
