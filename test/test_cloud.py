"""cloud_arrays: points equal the backprojection, fields/dtype as PointCloud2 needs, rgb packing, resizing."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from depth_ft_ros.errors import InputError
from depth_ft_ros.evaluation.middlebury import load_motorcycle
from depth_ft_ros.geometry.camera import PinholeCamera
from depth_ft_ros.geometry.cloud import cloud_arrays, cloud_dtype


def _xyz(cloud: np.ndarray) -> np.ndarray:
    return np.stack([cloud["x"], cloud["y"], cloud["z"]], axis=-1)


def test_cloud_points_are_the_backprojection_of_the_depth() -> None:
    frame = load_motorcycle()
    cloud = cloud_arrays(frame.depth_m, frame.camera)
    assert cloud.shape == frame.depth_m.shape
    np.testing.assert_array_equal(_xyz(cloud), frame.camera.backproject(frame.depth_m))
    # and the definition, independently: X = (u - cx) Z / fx
    v, u = np.mgrid[:500, :741]
    ok = np.isfinite(frame.depth_m)
    np.testing.assert_allclose(cloud["x"][ok], ((u - 311.193) * frame.depth_m / 994.978)[ok], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cloud["y"][ok], ((v - 254.877) * frame.depth_m / 994.978)[ok], rtol=1e-5, atol=1e-6)
    assert np.isnan(_xyz(cloud)[~ok]).all()


def test_dtype_is_plain_float32_fields_in_order() -> None:
    assert cloud_dtype().names == ("x", "y", "z") and cloud_dtype().itemsize == 12
    dt = cloud_dtype(rgb=True, normals=True)
    assert dt.names == ("x", "y", "z", "rgb", "normal_x", "normal_y", "normal_z")
    assert dt.itemsize == 28 and [dt.fields[n][1] for n in dt.names] == list(range(0, 28, 4))
    assert all(dt.fields[n][0] == np.float32 for n in dt.names)


def test_rgb_is_packed_0x00rrggbb_and_resized_to_the_depth() -> None:
    frame = load_motorcycle()
    depth = cv2.resize(np.nan_to_num(frame.depth_m), (370, 250), interpolation=cv2.INTER_NEAREST)
    cloud = cloud_arrays(depth, frame.camera, rgb=np.asarray(frame.rgb))
    small = cv2.resize(np.asarray(frame.rgb), (370, 250), interpolation=cv2.INTER_AREA).astype(np.uint32)
    expected = (small[..., 0] << 16) | (small[..., 1] << 8) | small[..., 2]
    np.testing.assert_array_equal(cloud["rgb"].view(np.uint32), expected)
    # the camera is scaled to the depth size (as depth_image_proc does)
    cam = frame.camera.scaled(370, 250)
    np.testing.assert_array_equal(_xyz(cloud), cam.backproject(np.where(depth > 0, depth, np.nan)))


def test_normals_stride_and_max_range() -> None:
    cam = PinholeCamera.from_intrinsics(50.0, 50.0, 31.5, 23.5, 64, 48)
    depth = np.linspace(1.0, 9.0, 64 * 48, dtype=np.float32).reshape(48, 64)
    depth[0, 0] = np.nan
    normals = np.zeros((48, 64, 3), np.float32)
    normals[..., 2] = -1.0
    cloud = cloud_arrays(depth, cam, normals=normals, max_range_m=8.0)
    assert cloud.dtype.names == ("x", "y", "z", "normal_x", "normal_y", "normal_z")
    rng = np.linalg.norm(_xyz(cloud), axis=-1)
    far = np.linalg.norm(cam.backproject(depth), axis=-1) > 8.0
    assert far.any() and np.isnan(rng[far]).all() and (rng[~far & np.isfinite(depth)] <= 8.0).all()
    assert np.isnan(cloud["normal_z"][far]).all() and np.isnan(cloud["normal_z"][0, 0])
    assert (cloud["normal_z"][~far & np.isfinite(depth)] == -1.0).all()
    strided = cloud_arrays(depth, cam, stride=2)
    np.testing.assert_array_equal(_xyz(strided), _xyz(cloud_arrays(depth, cam))[::2, ::2])


@pytest.mark.parametrize("kind", ["raw_distorted", "stereo_right"])
@pytest.mark.parametrize("stride", [1, 3])
def test_max_range_is_the_euclidean_range_of_the_backprojected_point(kind: str, stride: int) -> None:
    k = np.array([[60.0, 0, 33.0], [0, 58.0, 22.0], [0, 0, 1]])
    d = np.array([-0.25, 0.08, 0.001, -0.002, 0.0]) if kind == "raw_distorted" else np.zeros(5)
    p = np.hstack([k, [[-60.0 * 0.12], [0.0], [0.0]]])  # right camera of a 12 cm stereo pair: Tx = -fx * B
    cam = PinholeCamera(64, 48, k, d, p)
    rectified = kind == "stereo_right"
    depth = np.random.default_rng(0).uniform(2.0, 10.0, (48, 64)).astype(np.float32)
    depth[5, 7], depth[6, 8], depth[7, 9] = np.inf, -1.0, np.nan
    points = cam.backproject(np.where(np.isfinite(depth) & (depth > 0), depth, np.nan), rectified=rectified)
    keep = np.linalg.norm(points, axis=-1) <= 8.0  # the definition: Euclidean distance from the optical centre
    near_edge = np.abs(np.linalg.norm(points, axis=-1) - 8.0) < 1e-4  # float32 rounding may go either way
    cloud = cloud_arrays(depth, cam, max_range_m=8.0, stride=stride, rectified=rectified)
    got_valid = np.isfinite(cloud["z"])
    np.testing.assert_array_equal(got_valid[~near_edge[::stride, ::stride]],
                                  keep[::stride, ::stride][~near_edge[::stride, ::stride]])
    np.testing.assert_allclose(_xyz(cloud)[got_valid], points[::stride, ::stride][got_valid], rtol=1e-6, atol=1e-6)


def test_bad_inputs() -> None:
    cam = PinholeCamera.from_intrinsics(50.0, 50.0, 31.5, 23.5, 64, 48)
    with pytest.raises(InputError):
        cloud_arrays(np.ones(10), cam)
    with pytest.raises(InputError):
        cloud_arrays(np.ones((48, 64)), cam, stride=0)
    with pytest.raises(InputError):
        cloud_arrays(np.ones((48, 64)), cam, rgb=np.ones((48, 64, 3), np.float32))
    with pytest.raises(InputError):
        cloud_arrays(np.ones((48, 64)), cam, normals=np.ones((48, 64)))


def test_keep_mask_drops_points_like_nan_depth() -> None:
    # keep= is the cloud filters' mask: the pixels outside it are NaN points, exactly as if their depth were NaN
    # (camera.backproject of the masked depth is the reference); rgb stays for every pixel, as for invalid depth.
    frame = load_motorcycle()
    rng = np.random.default_rng(5)
    keep = rng.random(frame.depth_m.shape) > 0.3
    rgb = (rng.random((*frame.depth_m.shape, 3)) * 255).astype(np.uint8)
    masked = np.where(keep, frame.depth_m, np.nan).astype(np.float32)
    for stride in (1, 3):
        cloud = cloud_arrays(frame.depth_m, frame.camera, rgb=rgb, stride=stride, keep=keep, max_range_m=50.0)
        ref = frame.camera.backproject(masked)[::stride, ::stride]
        np.testing.assert_array_equal(_xyz(cloud), ref)
        assert np.isnan(_xyz(cloud)[~keep[::stride, ::stride]]).all()
        np.testing.assert_array_equal(cloud["rgb"], cloud_arrays(masked, frame.camera, rgb=rgb, stride=stride)["rgb"])
    with pytest.raises(InputError, match="keep mask"):
        cloud_arrays(frame.depth_m, frame.camera, keep=keep[:10])
