"""Raw -> rectified geometry against a scene whose rectified depth is known analytically: a tilted plane seen by a
strongly distorted lens. The raw depth image is built from OpenCV's inverse distortion (cv2.undistortPoints /
cv2.fisheye.undistortPoints) of each raw pixel; the rectified output, back-projected with P alone (depth_image_proc's
formula, written here), must lie on the plane. Without rectification the same back-projection is visibly bent."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from depth_ft_ros.geometry.camera import PinholeCamera
from depth_ft_ros.geometry.rectify import Rectifier

W, H = 160, 120
K = np.array([[120.0, 0.0, 79.5], [0.0, 118.0, 61.0], [0.0, 0.0, 1.0]])
P = np.array([[105.0, 0.0, 80.0, 0.0], [0.0, 105.0, 60.0, 0.0], [0.0, 0.0, 1.0, 0.0]])  # as getOptimalNewCameraMatrix
PLANE_N = np.array([0.25, -0.3, 1.0]) / np.linalg.norm([0.25, -0.3, 1.0])  # raw optical frame, n . X = PLANE_C
PLANE_C = 3.0


def camera(model: str = "plumb_bob", r: np.ndarray | None = None) -> PinholeCamera:
    d = [-0.28, 0.09, 0.001, -0.0005, -0.01] if model == "plumb_bob" else [0.05, -0.01, 0.002, -0.0005]
    return PinholeCamera(width=W, height=H, k=K, d=np.array(d), p=P, distortion_model=model,
                         r=np.eye(3) if r is None else r)


def raw_plane_depth(cam: PinholeCamera) -> np.ndarray:
    u, v = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    pixels = np.stack([u.ravel(), v.ravel()], 1).reshape(-1, 1, 2)
    if cam.distortion_model == "equidistant":
        xy = cv2.fisheye.undistortPoints(pixels, K, cam.d.reshape(4, 1)).reshape(-1, 2)
    else:
        criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12)
        if hasattr(cv2, "undistortPointsIter"):  # OpenCV 4
            xy = cv2.undistortPointsIter(pixels, K, cam.d, None, None, criteria).reshape(-1, 2)
        else:  # OpenCV 5 takes the criteria in undistortPoints
            xy = cv2.undistortPoints(pixels, K, cam.d, None, None, None, criteria).reshape(-1, 2)
    rays = np.concatenate([xy, np.ones((len(xy), 1))], 1)
    return (PLANE_C / (rays @ PLANE_N)).reshape(H, W).astype(np.float32)


def backproject_with_p(depth: np.ndarray, p: np.ndarray) -> np.ndarray:
    """depth_image_proc's point_cloud_xyz: X = (u - cx) Z / fx, Y = (v - cy) Z / fy, with P only."""
    u, v = np.meshgrid(np.arange(depth.shape[1]), np.arange(depth.shape[0]))
    z = depth.astype(np.float64)
    return np.stack([(u - p[0, 2]) * z / p[0, 0], (v - p[1, 2]) * z / p[1, 1], z], -1)


def plane_error(points: np.ndarray, normal: np.ndarray) -> np.ndarray:
    ok = np.isfinite(points[..., 2])
    return np.abs(points[ok] @ normal - PLANE_C) / PLANE_C


@pytest.mark.parametrize("model", ["plumb_bob", "equidistant"])
def test_rectified_depth_lies_on_the_plane_when_read_with_p(model: str) -> None:
    cam = camera(model)
    raw = raw_plane_depth(cam)
    rectifier = Rectifier.for_camera(cam)
    rectified = rectifier.depth(raw)
    error = plane_error(backproject_with_p(rectified, rectifier.camera.p), PLANE_N)
    assert np.isfinite(rectified).mean() > 0.8
    assert np.median(error) < 0.002 and error.max() < 0.02  # nearest sampling of a sloped plane
    bent = plane_error(backproject_with_p(raw, P), PLANE_N)
    assert bent.max() > 5 * error.max()  # the raw map read with P is bent: what rectification fixes
    assert not np.any(rectifier.camera.d) and np.allclose(rectifier.camera.k, P[:, :3])
    assert np.allclose(rectifier.camera.r, np.eye(3))


def test_rotation_of_a_stereo_rectification() -> None:
    """R != I (the left camera of a stereo pair): depth along the rectified axis, normals rotated by R."""
    r = Rotation.from_euler("xyz", [1.5, -2.5, 0.8], degrees=True).as_matrix()
    cam = camera("plumb_bob", r)
    rectifier = Rectifier.for_camera(cam)
    rectified = rectifier.depth(raw_plane_depth(cam))
    normal_rect = r @ PLANE_N  # the plane n . X_raw = c is (R n) . X_rect = c
    error = plane_error(backproject_with_p(rectified, P), normal_rect)
    assert np.median(error) < 0.002 and error.max() < 0.02
    normals = rectifier.normals(np.broadcast_to(PLANE_N.astype(np.float32), (H, W, 3)))
    ok = np.isfinite(normals[..., 0])
    np.testing.assert_allclose(normals[ok], np.broadcast_to(normal_rect, normals[ok].shape), atol=1e-6)


def test_depth_edges_are_never_blended() -> None:
    raw = np.full((H, W), 2.0, np.float32)
    raw[:, W // 2:] = 5.0
    raw[10:20, 10:20] = np.nan
    rectified = Rectifier.for_camera(camera()).depth(raw)
    values = set(np.unique(rectified[np.isfinite(rectified)]).tolist())
    assert values == {2.0, 5.0}


def test_outside_the_raw_image_is_nan_and_size_is_checked() -> None:
    rectifier = Rectifier.for_camera(camera())
    rectified = rectifier.depth(np.ones((H, W), np.float32))
    # Nearest sampling reads raw pixel round(map): outside [-0.5, W - 0.5) there is none.
    mx, my = rectifier.map_x, rectifier.map_y
    outside = (mx < -0.5) | (my < -0.5) | (mx >= W - 0.5) | (my >= H - 0.5)
    inside = (mx > 0) & (my > 0) & (mx < W - 1) & (my < H - 1)
    assert outside.sum() > 100  # the focal length of P (105) sees past the raw image's corners
    assert np.isnan(rectified[outside]).all() and (rectified[inside] == 1.0).all()
    with pytest.raises(Exception, match="160x120"):
        rectifier.depth(np.ones((H // 2, W // 2), np.float32))
