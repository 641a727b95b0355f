"""PinholeCamera: projection against cv2, REP 118 backprojection by definition, scaling, binning/ROI."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from depth_ft_ros.errors import InputError
from depth_ft_ros.geometry.camera import PinholeCamera

K = np.array([[520.0, 0.0, 318.5], [0.0, 515.0, 241.2], [0.0, 0.0, 1.0]])
PLUMB_BOB = np.array([-0.28, 0.09, 0.0012, -0.0008, -0.012])
RATIONAL = np.array([0.3, -0.1, 0.001, 0.002, 0.01, 0.6, -0.05, 0.02])
FISHEYE = np.array([-0.02, 0.004, -0.001, 0.0002])


def _camera(d: np.ndarray = PLUMB_BOB, model: str = "plumb_bob", p: np.ndarray | None = None) -> PinholeCamera:
    p = np.hstack([K, np.zeros((3, 1))]) if p is None else p
    return PinholeCamera(640, 480, K.ravel().tolist(), d.tolist(), p.ravel().tolist(), model).validate()


def _points_in_view(n: int, seed: int = 0, spread: float = 0.45) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.uniform(0.5, 10.0, n)
    return np.stack([rng.uniform(-spread, spread, n) * z, rng.uniform(-spread, spread, n) * z, z], axis=1)


def test_from_intrinsics_layout_and_properties() -> None:
    cam = PinholeCamera.from_intrinsics(500.0, 510.0, 320.0, 240.0, 640, 480).validate()
    assert cam.d.size == 0
    np.testing.assert_array_equal(cam.p, np.hstack([cam.k, np.zeros((3, 1))]))
    assert (cam.fx, cam.fy, cam.cx, cam.cy) == (500.0, 510.0, 320.0, 240.0)
    assert (cam.image_width, cam.image_height) == (640, 480)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"k": np.zeros(9)},  # uncalibrated CameraInfo
        {"width": 0},
        {"height": -3},
        {"p": np.full(12, np.nan)},
        {"d": [np.inf, 0, 0, 0, 0]},
    ],
)
def test_validate_rejects_unusable_cameras(kwargs: dict) -> None:
    base = {"width": 640, "height": 480, "k": K, "d": PLUMB_BOB, "p": np.hstack([K, np.zeros((3, 1))])}
    base.update(kwargs)
    with pytest.raises(InputError):
        PinholeCamera(**base).validate()


def test_wrong_matrix_size_is_an_input_error() -> None:
    with pytest.raises(InputError):
        PinholeCamera(640, 480, np.eye(2), [], np.zeros(12))


@pytest.mark.parametrize("d, model", [(PLUMB_BOB, "plumb_bob"), (RATIONAL, "rational_polynomial")])
def test_unrectified_projection_matches_cv2(d: np.ndarray, model: str) -> None:
    cam = _camera(d, model)
    pts = _points_in_view(500)
    uv, z = cam.project(pts, rectified=False)
    ref, _ = cv2.projectPoints(pts, np.zeros(3), np.zeros(3), K, d)
    np.testing.assert_allclose(uv, ref.reshape(-1, 2), atol=1e-6)
    np.testing.assert_array_equal(z, pts[:, 2])


def test_equidistant_projection_matches_cv2_fisheye() -> None:
    cam = _camera(FISHEYE, "equidistant")
    pts = _points_in_view(300, seed=1)
    uv, _ = cam.project(pts, rectified=False)
    ref, _ = cv2.fisheye.projectPoints(pts.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), K, FISHEYE)
    np.testing.assert_allclose(uv, ref.reshape(-1, 2), atol=1e-6)


def test_rectified_projection_uses_p_not_k() -> None:
    p = np.array([[480.0, 0, 300.0, 0], [0, 470.0, 230.0, 0], [0, 0, 1, 0]])
    cam = _camera(PLUMB_BOB, p=p)
    pts = _points_in_view(50)
    uv, _ = cam.project(pts)  # rectified: P, no distortion (image_geometry's project3dToPixel)
    hom = (p @ np.hstack([pts, np.ones((len(pts), 1))]).T).T
    np.testing.assert_allclose(uv, hom[:, :2] / hom[:, 2:], atol=1e-9)
    assert (cam.fx, cam.cx) == (480.0, 300.0)


def test_points_behind_or_far_outside_the_lens_get_nan() -> None:
    cam = _camera(PLUMB_BOB)
    pts = np.array([[0.0, 0.0, -1.0], [np.nan, 0, 1], [50.0, 0.0, 1.0], [0.1, 0.1, 2.0]])
    uv, _ = cam.project(pts, rectified=False)
    assert np.isnan(uv[:3]).all()  # behind, non-finite, and 88 degrees off-axis (would fold back inside)
    assert np.isfinite(uv[3]).all()


@pytest.mark.parametrize("rectified", [True, False])
def test_non_finite_or_zero_depth_points_get_nan_on_both_axes(rectified: bool) -> None:
    cam = _camera(PLUMB_BOB)
    pts = np.array([[0.0, 0.0, np.inf], [np.inf, 0.0, 1.0], [0.0, -np.inf, 1.0], [0.0, np.nan, 1.0], [0.1, 0.1, 0.0]])
    uv, _ = cam.project(pts, rectified=rectified)
    assert np.isnan(uv).all()


def test_backprojection_is_rep118_definition() -> None:
    cam = PinholeCamera.from_intrinsics(500.0, 510.0, 320.5, 239.5, 64, 48)
    rng = np.random.default_rng(2)
    depth = rng.uniform(0.5, 8.0, (48, 64)).astype(np.float32)
    depth[3, 4], depth[5, 6], depth[7, 8] = np.nan, 0.0, np.inf
    pts = cam.backproject(depth)
    v, u = np.mgrid[:48, :64]
    expected_x = (u - 320.5) * depth / 500.0
    expected_y = (v - 239.5) * depth / 510.0
    ok = np.isfinite(depth) & (depth > 0)
    np.testing.assert_allclose(pts[..., 0][ok], expected_x[ok], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pts[..., 1][ok], expected_y[ok], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(pts[..., 2][ok], depth[ok])
    assert np.isnan(pts[~ok]).all() and pts.dtype == np.float32


def test_backprojection_size_mismatch_raises() -> None:
    with pytest.raises(InputError, match="scaled"):
        PinholeCamera.from_intrinsics(500, 500, 320, 240, 640, 480).backproject(np.ones((240, 320)))


@pytest.mark.parametrize("rectified", [True, False])
def test_backproject_then_project_returns_the_pixel_grid(rectified: bool) -> None:
    cam = _camera(PLUMB_BOB)
    depth = np.random.default_rng(3).uniform(1, 5, (480, 640)).astype(np.float32)
    pts = cam.backproject(depth, rectified=rectified).reshape(-1, 3).astype(np.float64)
    uv, _ = cam.project(pts, rectified=rectified)
    v, u = np.mgrid[:480, :640]
    # float32 points; unrectified also goes through cv2's iterative undistortion
    np.testing.assert_allclose(uv, np.stack([u.ravel(), v.ravel()], 1), atol=2e-2 if not rectified else 1e-3)


def test_scaled_camera_follows_cv2_resize_pixel_centres() -> None:
    cam = PinholeCamera.from_intrinsics(500.0, 500.0, 320.0, 240.0, 640, 480)
    half = cam.scaled(320, 240)
    assert (half.width, half.height, half.fx, half.fy) == (320, 240, 250.0, 250.0)
    pts = _points_in_view(100)
    uv, _ = cam.project(pts)
    uv_half, _ = half.project(pts)
    np.testing.assert_allclose(uv_half, (uv + 0.5) * 0.5 - 0.5, atol=1e-9)
    np.testing.assert_allclose(half.k[:2], half.p[:2, :3])  # K and P scaled alike
    with pytest.raises(InputError):
        cam.scaled(0, 10)


def test_binning_and_roi_follow_image_geometry() -> None:
    full = PinholeCamera.from_intrinsics(1000.0, 1000.0, 640.0, 480.0, 1280, 960)
    cam = PinholeCamera(1280, 960, full.k, [], full.p, binning_x=2, binning_y=2, roi=(100, 60, 600, 800, False))
    cam.validate()
    assert (cam.image_width, cam.image_height) == (400, 300)
    # image_geometry: f' = f / binning, c' = (c - roi offset) / binning
    assert (cam.fx, cam.fy, cam.cx, cam.cy) == (500.0, 500.0, 270.0, 210.0)
    pts = _points_in_view(50)
    uv_full, _ = full.project(pts)
    uv, _ = cam.project(pts)
    np.testing.assert_allclose(uv, (uv_full - [100, 60]) / 2, atol=1e-9)
    reduced = cam.reduced()
    assert (reduced.width, reduced.height, reduced.binning_x, reduced.roi[:4]) == (400, 300, 0, (0, 0, 0, 0))
    assert cam.backproject(np.ones((300, 400))).shape == (300, 400, 3)
    with pytest.raises(InputError):
        PinholeCamera(1280, 960, full.k, [], full.p, roi=(1000, 0, 100, 400, False)).validate()
