"""The fleet table's evaluation columns (depth_ft_ros.fleet.evaluate).

Independent references: the held-out fit recomputed with numpy's least squares on the fit half of points whose
true depths the test made, and the metrics written out from their definitions (alignment.md: AbsRel, RMSE);
the ground-truth columns from the same definitions on a depth the test perturbed by a known factor.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from depth_ft_ros.alignment.aligner import AlignmentReport
from depth_ft_ros.config import NodeConfig
from depth_ft_ros.enums import AlignmentMethod, AlignmentState, Space
from depth_ft_ros.fleet.evaluate import COLUMNS, evaluation_columns
from depth_ft_ros.frame.processor import CameraFrame, FrameResult
from depth_ft_ros.geometry.camera import PinholeCamera
from depth_ft_ros.geometry.pose import pose_to_matrix
from depth_ft_ros.geometry.rectify import rectified_camera
from depth_ft_ros.geometry.sparse import SparsePoints, transform_points
from depth_ft_ros.training.samples import split_points

W, H = 64, 48
STAMP_NS = 1_700_000_000_123_456_789
SCALE, SHIFT = 2.0, 0.5  # true depth = SCALE * relative + SHIFT


def _camera() -> PinholeCamera:
    return PinholeCamera.from_intrinsics(60.0, 60.0, (W - 1) / 2, (H - 1) / 2, W, H)


def _relative() -> np.ndarray:
    v, u = np.mgrid[0:H, 0:W].astype(np.float32)
    return (0.2 + 0.8 * (0.5 + 0.5 * np.sin(u / 9.0) * np.cos(v / 7.0))).astype(np.float32)


def _scene(held_error: np.ndarray | None = None, cam: PinholeCamera | None = None
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(relative, points in the camera frame, uv, true z) with points on every 3rd pixel, row-major; the
    held-out half's depths multiplied by 1 + held_error (in the held half's order) when given."""
    relative = _relative()
    v, u = np.mgrid[1:H:3, 1:W:3]
    uv = np.stack([u.ravel(), v.ravel()], axis=1).astype(np.int32)
    z = (SCALE * relative[uv[:, 1], uv[:, 0]] + SHIFT).astype(np.float64)
    if held_error is not None:
        _, held = _halves(uv, z)
        z[held] *= 1.0 + held_error
    cam = cam or _camera()
    x = (uv[:, 0] - cam.cx) * z / cam.fx
    y = (uv[:, 1] - cam.cy) * z / cam.fy
    return relative, np.stack([x, y, z], axis=1), uv, z


def _halves(uv: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the (fit, held-out) halves: the split a frame's points get from its stamp."""
    points = SparsePoints(uv=uv, z_m=z.astype(np.float32), n_input=len(z), image_size=(W, H))
    fit, held = split_points(points, seed=STAMP_NS)
    key = {(int(a), int(b)): i for i, (a, b) in enumerate(uv)}
    return (np.array([key[(int(a), int(b))] for a, b in fit.uv]),
            np.array([key[(int(a), int(b))] for a, b in held.uv]))


def _frame(points: np.ndarray | None, camera: PinholeCamera | None = None,
           t_camera_points: np.ndarray | None = None) -> CameraFrame:
    """The frame path's input; points in the camera frame, or in their own with t_camera_points."""
    if points is not None and t_camera_points is not None:
        points = transform_points(points, np.linalg.inv(t_camera_points))
    return CameraFrame(rgb=np.zeros((H, W, 3), np.uint8), camera=camera or _camera(), stamp_ns=STAMP_NS,
                       frame_id="cam", points_m=points, T_camera_points=t_camera_points)


def _result(frame: CameraFrame, relative: np.ndarray, depth_m: np.ndarray | None, kept: np.ndarray | None = None,
            camera: PinholeCamera | None = None) -> FrameResult:
    return FrameResult(camera_name="", frame_id="cam", stamp_ns=STAMP_NS, camera=camera or frame.camera,
                       relative=relative, space=Space.DEPTH, depth_m=depth_m, normals=None, cloud=None,
                       alignment=AlignmentReport(AlignmentState.FITTED, AlignmentMethod.GLOBAL), timings_ms={},
                       confidence=None, cloud_kept=kept)


def test_heldout_metrics_match_a_least_squares_fit_on_the_other_half() -> None:
    rng = np.random.default_rng(3)
    n_held = len(_scene()[3]) - len(_scene()[3]) // 2
    held_error = rng.uniform(0.0, 0.15, n_held)  # one-sided: a fit that saw them would move
    relative, points, uv, z = _scene(held_error)
    fit_idx, held_idx = _halves(uv, z)
    # The reference: plain least squares on the fit half (exact there, so a robust fit agrees), scored on
    # the held-out half from the metrics' definitions.
    r = relative[uv[:, 1], uv[:, 0]].astype(np.float64)
    (s, t), *_ = np.linalg.lstsq(np.stack([r[fit_idx], np.ones(len(fit_idx))], axis=1), z[fit_idx], rcond=None)
    assert s == pytest.approx(SCALE, rel=1e-5) and t == pytest.approx(SHIFT, abs=1e-5)
    pred = s * r[held_idx] + t
    truth = z[held_idx].astype(np.float32).astype(np.float64)  # the points are float32 in the frame path
    expected_absrel = np.mean(np.abs(pred - truth) / truth)
    expected_rmse = np.sqrt(np.mean((pred - truth) ** 2))

    published = (SCALE * relative + SHIFT).astype(np.float32)
    lidar_to_camera = pose_to_matrix([0.05, -0.2, 0.1], [0.02, -0.01, 0.03, 0.999])  # points in a LiDAR's frame
    frame = _frame(points, t_camera_points=lidar_to_camera)
    result = _result(frame, relative, published.copy())
    config = NodeConfig(alignment="global", see_through_margin=0.0)  # keep every perturbed point
    columns = evaluation_columns(result, frame, config)

    assert set(columns) == set(COLUMNS)
    assert columns["heldout_fit_points"] == len(fit_idx)
    assert columns["heldout_points"] == len(held_idx)
    assert columns["heldout_absrel"] == pytest.approx(expected_absrel, rel=1e-4)
    assert columns["heldout_rmse_m"] == pytest.approx(expected_rmse, rel=1e-4)
    assert expected_absrel > 0.05  # the held-out errors are seen, not fitted away
    np.testing.assert_array_equal(result.depth_m, published)  # the published depth is left alone
    assert all(np.isnan(columns[c]) for c in COLUMNS if c.startswith("gt_"))  # no ground truth given


def test_rectified_outputs_are_scored_in_the_rectified_geometry() -> None:
    """A distorted raw camera with rectify_outputs: the outputs (and the relative map the evaluation fits) are on
    the rectified grid of P, so the points must be projected with P, not K and D."""
    raw = PinholeCamera(W, H, _camera().k, [-0.3, 0.08, 0.0, 0.0, 0.0], np.hstack([_camera().k, np.zeros((3, 1))]))
    outputs_camera = rectified_camera(raw)
    held_error = np.random.default_rng(4).uniform(0.0, 0.15, len(_scene()[3]) - len(_scene()[3]) // 2)
    relative, points, uv, z = _scene(held_error, outputs_camera)  # exact pixel centres of the rectified grid
    fit_idx, held_idx = _halves(uv, z)
    r = relative[uv[:, 1], uv[:, 0]].astype(np.float64)
    (s, t), *_ = np.linalg.lstsq(np.stack([r[fit_idx], np.ones(len(fit_idx))], axis=1), z[fit_idx], rcond=None)
    truth = z[held_idx].astype(np.float32).astype(np.float64)
    expected = np.mean(np.abs(s * r[held_idx] + t - truth) / truth)

    frame = _frame(points, raw)
    config = NodeConfig(alignment="global", see_through_margin=0.0)
    columns = evaluation_columns(_result(frame, relative, None, camera=outputs_camera), frame, config)
    assert columns["heldout_absrel"] == pytest.approx(expected, rel=1e-4)


def test_node_default_local_alignment_scores_an_exact_scene_near_zero() -> None:
    relative, points, _, _ = _scene()
    frame = _frame(points)
    columns = evaluation_columns(_result(frame, relative, None), frame, NodeConfig())
    assert columns["heldout_points"] > 100
    assert columns["heldout_absrel"] < 1e-3


def test_no_points_or_no_prediction_give_nan_columns() -> None:
    relative, points, _, _ = _scene()
    frame = _frame(None)
    columns = evaluation_columns(_result(frame, relative, None), frame)
    assert columns["heldout_points"] == 0 and np.isnan(columns["heldout_absrel"])
    frame = _frame(points)
    result = dataclasses.replace(_result(frame, relative, None), relative=None, space=None)
    assert np.isnan(evaluation_columns(result, frame)["heldout_rmse_m"])


def test_ground_truth_columns_follow_the_definitions() -> None:
    relative, points, _, _ = _scene()
    gt = (SCALE * relative + SHIFT).astype(np.float64)
    factor = np.where(np.arange(W)[None, :] < W // 2, 1.05, 0.9) * np.ones((H, 1))
    depth = (gt * factor).astype(np.float32)
    depth[:4] = np.nan  # no metric depth there: outside the scored pixels, counted by coverage
    kept = np.ones((H, W), bool)
    kept[:, -8:] = False  # the cloud's filters dropped the right-most columns
    frame = _frame(points)
    columns = evaluation_columns(_result(frame, relative, depth, kept), frame, NodeConfig(), gt_depth_m=gt)

    valid = np.isfinite(depth)
    rel = np.abs(depth.astype(np.float64) - gt) / gt
    assert columns["gt_absrel"] == pytest.approx(rel[valid].mean(), rel=1e-5)
    assert columns["gt_rmse_m"] == pytest.approx(np.sqrt(np.mean((depth[valid] - gt[valid]) ** 2)), rel=1e-5)
    assert columns["gt_coverage"] == pytest.approx(valid.mean())
    assert columns["gt_absrel_cloud_kept"] == pytest.approx(0.05 * (W // 2) / (W - 8) + 0.1 * (W // 2 - 8) / (W - 8),
                                                            rel=1e-4)
    assert columns["gt_absrel_cloud_dropped"] == pytest.approx(0.1, rel=1e-4)
    assert columns["gt_cloud_kept_fraction"] == pytest.approx((W - 8) / W)
