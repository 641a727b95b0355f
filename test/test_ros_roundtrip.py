"""Messages built by depth_ft_ros.msgs.convert survive real DDS serialization (rclpy + the installed RMW).

Also checks the conftest isolation (own domain, localhost-only discovery) that every graph test relies on.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg", reason="sensor_msgs not importable (needs the ROS 2 wheels or a ROS install)")

from sensor_msgs.msg import Image, PointCloud2
from std_msgs.msg import Header

from depth_ft_ros.msgs import convert

pytestmark = pytest.mark.ros


def sample_messages(copy: bool = True) -> tuple[Image, Image, PointCloud2, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    depth = rng.uniform(0.3, 10.0, (48, 64)).astype(np.float32)
    depth[5, 7] = np.nan
    bgr = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    dtype = np.dtype([("x", "f4"), ("y", "f4"), ("z", "f4"), ("rgb", "f4"), ("label", "u2")])
    points = np.zeros((48, 64), dtype)
    for name in ("x", "y", "z", "rgb"):
        points[name] = rng.normal(size=(48, 64))
    points["label"] = rng.integers(0, 60000, (48, 64))
    header = Header(frame_id="camera_optical")
    header.stamp.sec, header.stamp.nanosec = 100, 5
    return (convert.depth_to_msg(depth, header, copy=copy), convert.bgr_to_msg(bgr, header, copy=copy),
            convert.structured_to_pointcloud2(points, header, copy=copy), depth.copy(), bgr.copy(), points.copy())


def check_decoded(depth_msg: Image, bgr_msg: Image, cloud_msg: PointCloud2, depth, bgr, points) -> None:
    np.testing.assert_array_equal(convert.depth_image_to_metres(depth_msg), depth)
    np.testing.assert_array_equal(convert.image_to_rgb(bgr_msg), bgr[..., ::-1])
    received = convert.pointcloud2_to_structured(cloud_msg)
    assert received.shape == points.shape
    for name in points.dtype.names:
        np.testing.assert_array_equal(received[name], points[name])
    assert depth_msg.header.frame_id == "camera_optical" and cloud_msg.header.stamp.nanosec == 5


def test_isolation_environment() -> None:
    domain = int(os.environ["ROS_DOMAIN_ID"])
    assert 1 <= domain <= 101 or 215 <= domain <= 232
    localhost = os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE") == "LOCALHOST" or (
        os.environ.get("ROS_LOCALHOST_ONLY") == "1"
    )
    assert localhost


@pytest.mark.parametrize("copy", [True, False])
def test_serialize_deserialize(copy: bool) -> None:
    serialization = pytest.importorskip("rclpy.serialization")
    depth_msg, bgr_msg, cloud_msg, *arrays = sample_messages(copy)
    back = [serialization.deserialize_message(serialization.serialize_message(m), type(m))
            for m in (depth_msg, bgr_msg, cloud_msg)]
    check_decoded(*back, *arrays)


def test_messages_built_without_copy_share_the_arrays_memory() -> None:
    depth = np.ones((4, 6), np.float32)
    points = np.zeros((4, 6), [("x", "f4"), ("y", "f4"), ("z", "f4")])
    assert np.shares_memory(convert.depth_to_msg(depth, copy=False).data, depth)
    assert np.shares_memory(convert.structured_to_pointcloud2(points, copy=False).data, points)
    assert not np.shares_memory(np.frombuffer(convert.depth_to_msg(depth).data, np.uint8), depth)


@pytest.mark.parametrize("copy", [True, False])
def test_publish_subscribe_in_process(ros_graph, copy: bool) -> None:
    depth_msg, bgr_msg, cloud_msg, *arrays = sample_messages(copy)
    talker = ros_graph.node("convert_talker")
    listener = ros_graph.node("convert_listener")
    publishers = {
        "depth": talker.create_publisher(Image, "test/depth", 10),
        "bgr": talker.create_publisher(Image, "test/bgr", 10),
        "points": talker.create_publisher(PointCloud2, "test/points", 10),
    }
    received = {
        "depth": ros_graph.collect(listener, Image, "test/depth"),
        "bgr": ros_graph.collect(listener, Image, "test/bgr"),
        "points": ros_graph.collect(listener, PointCloud2, "test/points"),
    }
    assert ros_graph.wait_for(lambda: all(p.get_subscription_count() > 0 for p in publishers.values()), 10.0)
    sent = {"depth": depth_msg, "bgr": bgr_msg, "points": cloud_msg}
    for _ in range(20):  # reliable QoS; re-send only in case the reader side had not finished matching
        for key, publisher in publishers.items():
            if not received[key]:
                publisher.publish(sent[key])
        if ros_graph.wait_for(lambda: all(received.values()), 0.5):
            break
    assert all(received.values()), {k: len(v) for k, v in received.items()}
    check_decoded(received["depth"][0], received["bgr"][0], received["points"][0], *arrays)
