"""Sparse points -> pixels: rigid transforms, drop reasons, nearest-per-pixel, see-through removal, depth images."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from depth_ft_ros.errors import InputError
from depth_ft_ros.evaluation import lidar_sim
from depth_ft_ros.evaluation.middlebury import load_motorcycle
from depth_ft_ros.geometry.camera import PinholeCamera
from depth_ft_ros.geometry.sparse import (
    project_sparse_points,
    see_through_mask,
    sparse_from_depth_image,
    transform_points,
)

CAM = PinholeCamera.from_intrinsics(100.0, 100.0, 49.5, 39.5, 100, 80)


def test_transform_points_matches_scipy_rotation() -> None:
    rot = Rotation.from_euler("xyz", [10, -20, 35], degrees=True)
    t = np.array([0.3, -0.1, 2.0])
    tf = np.eye(4)
    tf[:3, :3], tf[:3, 3] = rot.as_matrix(), t
    pts = np.random.default_rng(0).normal(size=(20, 3))
    np.testing.assert_allclose(transform_points(pts, tf), rot.apply(pts) + t, atol=1e-12)
    with pytest.raises(InputError):
        transform_points(pts, np.eye(3))
    with pytest.raises(InputError):
        transform_points(pts[:, :2], tf)


def test_drop_reasons_are_counted() -> None:
    pts = np.array([
        [0.0, 0.0, 2.0],  # centre pixel (49.5 -> 50 after rounding half up... at x=0: u = 49.5)
        [0.0, 0.0, 3.0],  # same pixel, farther: duplicate
        [np.nan, 0.0, 1.0],  # non-finite
        [0.0, 0.0, -1.0],  # behind
        [0.0, 0.0, 0.0],  # on the camera plane: behind
        [10.0, 0.0, 1.0],  # far right: outside
        [0.2, 0.1, 4.0],
        [0.0, 0.01, 0.05],  # in front, nearer than min_depth 0.1: out of range
        [0.0, 0.1, 30.0],  # in front, beyond max_depth 20: out of range
    ])
    sp = project_sparse_points(pts, CAM, filter_see_through=False, min_depth_m=0.1, max_depth_m=20.0)
    assert sp.dropped == {"non_finite": 1, "behind_camera": 2, "out_of_range": 2, "outside_image": 1,
                          "duplicate_pixel": 1, "see_through": 0}
    assert sp.n_input == 9 and sp.n == 2
    assert sp.n + sum(sp.dropped.values()) == sp.n_input  # every input point is used or counted
    # the nearer of the two points on one pixel is kept; pixel = floor(u + 0.5)
    kept = dict(zip(map(tuple, sp.uv.tolist()), sp.z_m.tolist(), strict=True))
    assert kept[(50, 40)] == pytest.approx(2.0)
    u, v = 100 * 0.2 / 4 + 49.5, 100 * 0.1 / 4 + 39.5
    assert kept[(int(np.floor(u + 0.5)), int(np.floor(v + 0.5)))] == pytest.approx(4.0)
    assert sp.uv.dtype == np.int32 and sp.z_m.dtype == np.float32


def test_see_through_points_behind_a_foreground_are_removed() -> None:
    # Foreground plane at 2 m over columns 30..69, points every 2 px; background at 6 m elsewhere.
    v, u = np.mgrid[1:79:2, 1:99:2]
    z = np.where((u >= 30) & (u < 70), 2.0, 6.0)
    # Background seen "through" the foreground: 6 m points inside the foreground (on pixels of their own).
    sv, su = np.mgrid[12:70:8, 42:60:8]
    uv = np.concatenate([np.stack([u.ravel(), v.ravel()], 1), np.stack([su.ravel(), sv.ravel()], 1)])
    zz = np.concatenate([z.ravel(), np.full(su.size, 6.0)])
    pts = CAM.backproject(np.ones((80, 100), np.float32))[uv[:, 1], uv[:, 0]] * zz[:, None]
    sp = project_sparse_points(pts, CAM)
    kept = set(map(tuple, sp.uv.tolist()))
    assert not kept & set(map(tuple, np.stack([su.ravel(), sv.ravel()], 1).tolist()))
    # The background column next to each edge (2 px from a foreground point, inside the 7x7 window) is
    # indistinguishable from see-through and goes too; everything else stays.
    assert sp.see_through == su.size + 2 * v.shape[0]
    assert sp.n == z.size - 2 * v.shape[0]


def test_see_through_window_and_margin_are_parameters() -> None:
    uv = np.array([[10, 10], [13, 10], [40, 40]], dtype=np.int32)
    z = np.array([2.0, 3.0, 9.0], dtype=np.float32)
    assert see_through_mask(uv, z, (100, 80), window=7, margin_m=0.3, margin_rel=0.1).tolist() == [False, True, False]
    assert see_through_mask(uv, z, (100, 80), window=5, margin_m=0.3, margin_rel=0.1).tolist() == [False] * 3
    assert see_through_mask(uv, z, (100, 80), window=7, margin_m=1.5, margin_rel=0.0).tolist() == [False] * 3
    with pytest.raises(InputError):
        see_through_mask(uv, z, (100, 80), window=4)


def test_simulated_offset_lidar_see_through_mostly_removed() -> None:
    frame = load_motorcycle()
    pts, is_see_through = lidar_sim.see_through_points(frame.depth_m, frame.camera, 64, offset_m=(0.2, 0, 0),
                                                       rng=np.random.default_rng(0))
    assert is_see_through.sum() > 300  # the simulation does produce them
    sp_all = project_sparse_points(pts, frame.camera, filter_see_through=False)
    sp = project_sparse_points(pts, frame.camera)
    label = {tuple(p): s for p, s in zip(np.floor(frame.camera.project(pts)[0] + 0.5).astype(int).tolist(),
                                          is_see_through, strict=True)}
    before = np.array([label[tuple(p)] for p in sp_all.uv.tolist()])
    after = np.array([label[tuple(p)] for p in sp.uv.tolist()])
    assert after.sum() < 0.5 * before.sum()  # most see-through points are gone
    good_lost = (~before).sum() - (~after).sum()
    assert good_lost < 0.01 * (~before).sum()  # and few good ones with them
    # what remains is closer to GT
    gt_after = frame.depth_m[sp.uv[:, 1], sp.uv[:, 0]]
    gt_before = frame.depth_m[sp_all.uv[:, 1], sp_all.uv[:, 0]]
    assert np.mean(np.abs(sp.z_m / gt_after - 1)) < 0.5 * np.mean(np.abs(sp_all.z_m / gt_before - 1))


def test_sparse_depth_image_encodings() -> None:
    mm = np.zeros((80, 100), np.uint16)
    mm[10, 20], mm[30, 40] = 1500, 65000
    sp16 = sparse_from_depth_image(mm, "16UC1")
    metres = np.full((80, 100), np.nan, np.float32)
    metres[10, 20], metres[30, 40], metres[5, 5], metres[6, 6] = 1.5, 65.0, 0.0, -1.0
    sp32 = sparse_from_depth_image(metres, "32FC1")
    for sp in (sp16, sp32):
        assert sorted(map(tuple, sp.uv.tolist())) == [(20, 10), (40, 30)]
        np.testing.assert_allclose(sorted(sp.z_m), [1.5, 65.0], rtol=1e-6)
        assert sp.image_size == (100, 80)
    assert sp32.behind_camera == 1
    with pytest.raises(InputError):
        sparse_from_depth_image(mm.astype(np.uint8), "16UC1")
    with pytest.raises(InputError):
        sparse_from_depth_image(metres, "bgr8")


def test_sparse_depth_image_at_another_resolution_keeps_the_nearest() -> None:
    metres = np.full((80, 100), np.nan, np.float32)
    metres[10, 20], metres[10, 21], metres[79, 99] = 2.0, 1.5, 4.0  # (20,10) and (21,10) share a half-size pixel
    sp = sparse_from_depth_image(metres, "32FC1", target_size=(50, 40))
    assert sp.image_size == (50, 40) and sp.duplicate_pixel == 1
    assert dict(zip(map(tuple, sp.uv.tolist()), sp.z_m.tolist(), strict=True)) == {(10, 5): 1.5, (49, 39): 4.0}
