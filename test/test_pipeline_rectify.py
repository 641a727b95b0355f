"""From a raw (distorted) camera, the outputs come in the rectified geometry of P (rectify_outputs, default): the
cloud is depth_image_proc's formula applied to the depth image and its camera_info (P only, written out here), it
lies on the scene's surface, and the depth at each LiDAR point's P-projection is that point's depth.

Scene: a tilted plane seen by a strongly distorted lens (raw depth from OpenCV's inverse distortion of each raw
pixel). The depth network is swapped for the ground truth (a perfect affine-invariant model), so the global fit
is exact and what is left to test is the geometry.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from predictor_fixtures import cached_predictor

from depth_ft_ros.config import NodeConfig
from depth_ft_ros.frame.processor import CameraFrame, FrameProcessor, Outputs
from depth_ft_ros.geometry.camera import PinholeCamera
from depth_ft_ros.model.networks import Models
from depth_ft_ros.model.predictor import Prediction

W, H = 96, 72
K = np.array([[80.0, 0.0, 47.5], [0.0, 79.0, 36.0], [0.0, 0.0, 1.0]])
P = np.array([[70.0, 0.0, 48.0, 0.0], [0.0, 70.0, 36.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
D = np.array([-0.3, 0.1, 0.001, -0.0005, -0.015])
PLANE_N = np.array([0.2, -0.25, 1.0]) / np.linalg.norm([0.2, -0.25, 1.0])
PLANE_C = 3.0  # n . X = c, metres


def raw_plane_depth() -> np.ndarray:
    u, v = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    pixels = np.stack([u.ravel(), v.ravel()], 1).reshape(-1, 1, 2)
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12)
    if hasattr(cv2, "undistortPointsIter"):
        xy = cv2.undistortPointsIter(pixels, K, D, None, None, criteria).reshape(-1, 2)
    else:
        xy = cv2.undistortPoints(pixels, K, D, None, None, None, criteria).reshape(-1, 2)
    rays = np.concatenate([xy, np.ones((len(xy), 1))], 1)
    return (PLANE_C / (rays @ PLANE_N)).reshape(H, W).astype(np.float32)


def lidar_on_plane(n: int = 400) -> np.ndarray:
    rng = np.random.default_rng(3)
    x, y = rng.uniform(-0.7, 0.7, n), rng.uniform(-0.5, 0.5, n)  # normalized image coordinates
    rays = np.stack([x, y, np.ones(n)], 1)
    return rays * (PLANE_C / (rays @ PLANE_N))[:, None]


@pytest.fixture
def perfect_pipeline(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    predictor = cached_predictor("e2e-ft-depth", processing_resolution=0)
    gt = raw_plane_depth()
    relative = (gt - gt.min()) / (gt.max() - gt.min())
    monkeypatch.setattr(predictor, "predict_group", lambda frames, encoded=None: [
        Prediction(depth=relative.copy(), space="depth") for _ in frames])

    def make(**overrides: object) -> FrameProcessor:
        config = NodeConfig(depth_model="tiny", alignment="global", min_depth=0.1, max_depth=20.0,
                            see_through_margin=0.0, **overrides).validate()  # type: ignore[arg-type]
        return FrameProcessor(Models(predictor, None), config)

    return make


def depth_image_proc_cloud(depth: np.ndarray, p: np.ndarray) -> np.ndarray:
    u, v = np.meshgrid(np.arange(depth.shape[1]), np.arange(depth.shape[0]))
    z = depth.astype(np.float64)
    return np.stack([(u - p[0, 2]) * z / p[0, 0], (v - p[1, 2]) * z / p[1, 1], z], -1)


def test_outputs_are_rectified_and_read_correctly_with_p_only(perfect_pipeline) -> None:  # type: ignore[no-untyped-def]
    raw_camera = PinholeCamera(width=W, height=H, k=K, d=D, p=P)
    points = lidar_on_plane()
    frame = CameraFrame(rgb=np.zeros((H, W, 3), np.uint8), camera=raw_camera, stamp_ns=1, points_m=points)
    result = perfect_pipeline().process(frame, Outputs(normals=False, cloud=True))
    assert result.alignment.state == "fitted"
    camera = result.camera  # what depth/camera_info carries
    assert not np.any(camera.d) and np.allclose(camera.k, P[:, :3]) and np.allclose(camera.p, P)
    # The cloud is depth_image_proc's back-projection of depth/image with P, and lies on the plane.
    reference = depth_image_proc_cloud(result.depth_m, camera.p)
    cloud = np.stack([result.cloud["x"], result.cloud["y"], result.cloud["z"]], -1)
    ok = np.isfinite(reference[..., 2])
    assert ok.mean() > 0.8
    np.testing.assert_allclose(cloud[ok], reference[ok], rtol=1e-5, atol=1e-5)
    assert np.isnan(cloud[~ok]).all()
    on_plane = np.abs(reference[ok] @ PLANE_N - PLANE_C) / PLANE_C
    assert np.median(on_plane) < 0.003 and on_plane.max() < 0.03
    # The depth at each LiDAR point's pixel in the published geometry (P) is the point's depth.
    u = np.round(P[0, 0] * points[:, 0] / points[:, 2] + P[0, 2]).astype(int)
    v = np.round(P[1, 1] * points[:, 1] / points[:, 2] + P[1, 2]).astype(int)
    inside = (u >= 0) & (u < W) & (v >= 0) & (v < H)
    at_points = result.depth_m[v[inside], u[inside]]
    rel = np.abs(at_points - points[inside, 2]) / points[inside, 2]
    assert np.isfinite(at_points).mean() > 0.95 and np.nanmedian(rel) < 0.01


def test_rectify_outputs_off_keeps_the_raw_geometry(perfect_pipeline) -> None:  # type: ignore[no-untyped-def]
    raw_camera = PinholeCamera(width=W, height=H, k=K, d=D, p=P)
    frame = CameraFrame(rgb=np.zeros((H, W, 3), np.uint8), camera=raw_camera, stamp_ns=1,
                       points_m=lidar_on_plane())
    result = perfect_pipeline(rectify_outputs=False).process(frame, Outputs(normals=False, cloud=True))
    assert result.camera is raw_camera and np.any(result.camera.d)  # camera_info keeps K and D
    np.testing.assert_allclose(result.depth_m, raw_plane_depth(), rtol=1e-3)  # the raw map (fit from rounded pixels)
    cloud = np.stack([result.cloud["x"], result.cloud["y"], result.cloud["z"]], -1)
    ok = np.isfinite(cloud[..., 2])
    # Built with K and D (the raw rays), so it is on the plane too.
    assert np.median(np.abs(cloud[ok] @ PLANE_N - PLANE_C) / PLANE_C) < 0.003
