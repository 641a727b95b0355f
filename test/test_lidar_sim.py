"""Simulated sparse inputs on the Middlebury GT: points lie on the GT surface, are deterministic, and the
LiDAR frame helpers invert each other."""

from __future__ import annotations

import numpy as np
import pytest

from depth_ft_ros.errors import InputError
from depth_ft_ros.evaluation import lidar_sim
from depth_ft_ros.evaluation.middlebury import load_motorcycle


def _pixels(camera, pts):
    uv, z = camera.project(pts)
    return np.floor(uv + 0.5).astype(int), z


def test_random_pixels_are_distinct_valid_gt_samples() -> None:
    frame = load_motorcycle()
    uv, z = lidar_sim.random_pixels(frame.depth_m, 500, np.random.default_rng(0))
    assert len({tuple(p) for p in uv.tolist()}) == 500
    np.testing.assert_array_equal(z, frame.depth_m[uv[:, 1], uv[:, 0]])
    uv2, _ = lidar_sim.random_pixels(frame.depth_m, 500, np.random.default_rng(0))
    np.testing.assert_array_equal(uv, uv2)
    with pytest.raises(InputError):
        lidar_sim.random_pixels(frame.depth_m, 10**7, np.random.default_rng(0))


@pytest.mark.parametrize("n_lines", [8, 16])
def test_lidar_scan_points_lie_on_gt_along_lines(n_lines: int) -> None:
    frame = load_motorcycle()
    pts = lidar_sim.lidar_scan(frame.depth_m, frame.camera, n_lines, points_per_line=200)
    uv, z = _pixels(frame.camera, pts)
    np.testing.assert_allclose(z, frame.depth_m[uv[:, 1], uv[:, 0]], rtol=1e-6)
    elevation = np.round(np.degrees(np.arctan2(-pts[:, 1], np.hypot(pts[:, 0], pts[:, 2]))), 6)
    assert len(np.unique(elevation)) == n_lines  # fixed elevation per line
    assert 0.75 * 200 * n_lines < len(pts) <= 200 * n_lines  # ~200 per line, minus invalid GT
    assert uv[:, 1].max() - uv[:, 1].min() > 0.8 * frame.depth_m.shape[0]  # spans the vertical field of view


def test_lidar_frame_round_trip_and_axes() -> None:
    t_cam_lidar = lidar_sim.make_T_camera_lidar((0.0, -0.2, 0.0))
    pts_cam = np.array([[0.0, 0.0, 5.0], [1.0, 0.0, 5.0], [0.0, -1.0, 5.0]])
    pts_lidar = lidar_sim.points_in_lidar_frame(pts_cam, t_cam_lidar)
    # camera forward (z) is LiDAR x; camera right (x) is LiDAR -y; camera up (-y) is LiDAR z
    np.testing.assert_allclose(pts_lidar[0], [5.0, 0.0, -0.2])
    np.testing.assert_allclose(pts_lidar[1] - pts_lidar[0], [0.0, -1.0, 0.0])
    np.testing.assert_allclose(pts_lidar[2] - pts_lidar[0], [0.0, 0.0, 1.0])
    back = pts_lidar @ t_cam_lidar[:3, :3].T + t_cam_lidar[:3, 3]
    np.testing.assert_allclose(back, pts_cam, atol=1e-12)


def test_noise_and_outliers() -> None:
    rng = np.random.default_rng(0)
    z = np.linspace(2.0, 5.0, 10000)
    noisy = lidar_sim.add_relative_noise(z, 0.01, rng)
    assert np.std(noisy / z - 1) == pytest.approx(0.01, rel=0.05)
    out, mask = lidar_sim.add_outliers(z, 0.1, rng)
    assert mask.sum() == 1000
    lo, hi = np.percentile(z, [10, 90])
    assert out[mask].min() >= lo and out[mask].max() <= hi
    np.testing.assert_array_equal(out[~mask], z[~mask])
    pts = np.stack([z * 0.1, z * 0.0, z], 1)
    moved, m = lidar_sim.add_outliers(pts, 0.1, rng)
    np.testing.assert_allclose(moved[m, 0] / moved[m, 2], 0.1)  # moved along the ray


def test_see_through_simulation_labels_points_behind_the_camera_surface() -> None:
    frame = load_motorcycle()
    pts, see_through = lidar_sim.see_through_points(frame.depth_m, frame.camera, 32, offset_m=(0.0, -0.2, 0.0),
                                                    rng=np.random.default_rng(1))
    uv, z = _pixels(frame.camera, pts)
    gt = frame.depth_m[uv[:, 1], uv[:, 0]]
    assert np.all(z[see_through] > gt[see_through] * 1.05)
    assert np.all(z[~see_through] <= gt[~see_through] * 1.05)
    assert 0.02 < see_through.mean() < 0.3
    in_lidar = lidar_sim.lidar_scan_in_lidar_frame(frame.depth_m, frame.camera, lidar_sim.make_T_camera_lidar(), 8)
    assert in_lidar.shape[1] == 3 and np.all(in_lidar[:, 0] > 0)  # in front of the LiDAR (x forward)
