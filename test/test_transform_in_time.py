"""Sparse points from a moving robot land on the right pixels when moved through a fixed frame in time.

Scene, written from the kinematics alone: base_link drives along odom x at 2 m/s while turning at 0.5 rad/s; a
camera and a LiDAR sit on it. A LiDAR sweep stamped 50 ms before the image sees static world points. The truth is
each world point projected by the camera at the image's time. tf2's lookup_transform_full does the same
composition where tf2_ros is importable (checked against it then).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from depth_ft_ros.geometry.camera import PinholeCamera
from depth_ft_ros.geometry.pose import transform_in_time
from depth_ft_ros.geometry.sparse import transform_points

SPEED_M_S, YAW_RATE = 2.0, 0.5
IMAGE_NS, SWEEP_NS = 1_000_000_000, 950_000_000
CAMERA = PinholeCamera.from_intrinsics(300.0, 300.0, 319.5, 239.5, 640, 480)


def _pose(rotation: np.ndarray, translation: list[float]) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3], out[:3, 3] = rotation, translation
    return out


# Optical frame (z forward, x right, y down) on a body frame (x forward, y left, z up), REP 103.
T_BASE_CAMERA = _pose(np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]), [0.3, 0.0, 0.5])
T_BASE_LIDAR = _pose(Rotation.from_euler("z", 10, degrees=True).as_matrix(), [0.1, 0.05, 0.8])


def t_odom(frame: str, stamp_ns: int) -> np.ndarray:
    t = stamp_ns * 1e-9
    base = _pose(Rotation.from_euler("z", YAW_RATE * t).as_matrix(), [SPEED_M_S * t, 0.0, 0.0])
    return {"odom": np.eye(4), "base_link": base, "camera": base @ T_BASE_CAMERA,
            "lidar": base @ T_BASE_LIDAR}[frame]


def lookup(target: str, source: str, stamp_ns: int) -> np.ndarray:
    return np.linalg.inv(t_odom(target, stamp_ns)) @ t_odom(source, stamp_ns)


@pytest.fixture(scope="module")
def world_points() -> np.ndarray:
    """A wall 6-8 m ahead of the camera at the image time, in odom."""
    rng = np.random.default_rng(0)
    in_camera = np.stack([rng.uniform(-3, 3, 500), rng.uniform(-1.5, 1.5, 500), rng.uniform(6, 8, 500)], 1)
    return transform_points(in_camera, t_odom("camera", IMAGE_NS))


def test_points_land_on_their_pixels_through_the_fixed_frame(world_points: np.ndarray) -> None:
    truth_uv, _ = CAMERA.project(transform_points(world_points, lookup("camera", "odom", IMAGE_NS)))
    sweep = transform_points(world_points, lookup("lidar", "odom", SWEEP_NS))  # what the LiDAR measured
    t_camera_lidar = transform_in_time(lookup, "camera", IMAGE_NS, "lidar", SWEEP_NS, "odom")
    uv, _ = CAMERA.project(transform_points(sweep, t_camera_lidar))
    np.testing.assert_allclose(uv, truth_uv, atol=1e-6)
    # The static extrinsics alone (the robot's motion in the 50 ms ignored) miss by many pixels.
    static_uv, _ = CAMERA.project(transform_points(sweep, lookup("camera", "lidar", IMAGE_NS)))
    assert np.median(np.linalg.norm(static_uv - truth_uv, axis=1)) > 5.0


def test_tf2_lookup_transform_full_agrees() -> None:
    tf2_ros = pytest.importorskip("tf2_ros", reason="tf2_ros comes with a ROS install, not with the pip wheels")
    from geometry_msgs.msg import TransformStamped
    from rclpy.duration import Duration
    from rclpy.time import Time

    from depth_ft_ros.geometry.pose import matrix_to_pose

    buffer = tf2_ros.Buffer()
    for stamp_ns in range(900_000_000, 1_050_000_001, 10_000_000):
        for parent, child, matrix in (("odom", "base_link", t_odom("base_link", stamp_ns)),
                                      ("base_link", "camera", T_BASE_CAMERA), ("base_link", "lidar", T_BASE_LIDAR)):
            msg = TransformStamped()
            msg.header.frame_id, msg.child_frame_id = parent, child
            msg.header.stamp = Time(nanoseconds=stamp_ns).to_msg()
            (msg.transform.translation.x, msg.transform.translation.y, msg.transform.translation.z), quat = (
                matrix_to_pose(matrix))
            (msg.transform.rotation.x, msg.transform.rotation.y, msg.transform.rotation.z,
             msg.transform.rotation.w) = quat
            buffer.set_transform(msg, "test")
    tf = buffer.lookup_transform_full("camera", Time(nanoseconds=IMAGE_NS), "lidar", Time(nanoseconds=SWEEP_NS),
                                      "odom", Duration(seconds=0))
    ours = transform_in_time(lookup, "camera", IMAGE_NS, "lidar", SWEEP_NS, "odom")
    t = tf.transform.translation
    np.testing.assert_allclose([t.x, t.y, t.z], ours[:3, 3], atol=1e-6)
