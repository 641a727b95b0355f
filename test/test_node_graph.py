"""The node in a robot's ROS 2 graph: input QoS that follows best-effort drivers, image_transport's camera_info
pairing of every image output, frame ids, and /diagnostics as diagnostic_updater names and levels them.

References: rmw's QoS compatibility (a RELIABLE subscription receives nothing from a BEST_EFFORT publisher),
image_transport's getCameraInfoTopic (the camera_info of image `ns/X` is `ns/camera_info`), diagnostic_msgs'
levels and diagnostic_updater's naming (fully qualified node name)."""

from __future__ import annotations

import posixpath
from typing import Any

import numpy as np
import pytest
from node_fixtures import (
    T0_NS,
    camera_info_msg,
    cloud_fields,
    cloud_msg,
    image_msg,
    image_to_numpy,
    node_params,
    scene,
    stamp_ns_of,
    start_node,
)

pytestmark = pytest.mark.ros
OK, WARN, ERROR = 0, 1, 2
IMAGE_OUTPUTS = ("depth/image", "depth/relative", "depth/colorized", "depth/confidence", "normals/image",
                 "normals/colorized")


def sibling_camera_info(image_topic: str) -> str:
    """image_transport's getCameraInfoTopic, written out."""
    return posixpath.join(posixpath.dirname(image_topic), "camera_info")


def level(status: Any) -> int:
    return int.from_bytes(status.level, "little") if isinstance(status.level, bytes) else int(status.level)


def statuses(received: list[Any], name_part: str) -> list[Any]:
    return [s for array in list(received) for s in array.status if name_part in s.name]


def inputs(ros_graph: Any, name: str, qos: Any) -> tuple[Any, Any, Any, Any]:
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    node = ros_graph.node(name)
    return (node, node.create_publisher(Image, "image", qos), node.create_publisher(CameraInfo, "camera_info", qos),
            node.create_publisher(PointCloud2, "sparse_points", qos))


def send(pubs: tuple[Any, Any, Any, Any], stamp_ns: int, image_frame: str | None = None) -> None:
    s = scene()
    _, image, info, points = pubs
    info.publish(camera_info_msg(s.camera, stamp_ns))
    points.publish(cloud_msg(s.lidar_points, stamp_ns))
    msg = image_msg(s.rgb, stamp_ns)
    if image_frame is not None:
        msg.header.frame_id = image_frame
    image.publish(msg)


def test_best_effort_drivers_get_outputs_with_auto_qos(ros_graph: Any) -> None:
    from rclpy.qos import ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import Image

    pubs = inputs(ros_graph, "sensor_driver", qos_profile_sensor_data)  # like most LiDAR drivers
    node = start_node(ros_graph, "depth_auto_qos")
    subscriptions = node.streams[0].subs.subscriptions
    assert ros_graph.wait_for(lambda: all(s.profile is not None and s.profile.reliability ==
                                          ReliabilityPolicy.BEST_EFFORT for s in subscriptions), 10.0)
    depth = ros_graph.collect(pubs[0], Image, "depth/image")
    for i in range(20):  # best effort may lose one: send until a frame comes out
        send(pubs, T0_NS + i)
        if ros_graph.wait_for(lambda: len(depth) > 0, 3.0):
            break
    assert depth, "no output from best-effort inputs"


def test_forced_incompatible_qos_is_warn_naming_the_topic(ros_graph: Any) -> None:
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import qos_profile_sensor_data

    pubs = inputs(ros_graph, "camera_driver", qos_profile_sensor_data)
    received = ros_graph.collect(pubs[0], DiagnosticArray, "/diagnostics")
    start_node(ros_graph, "depth_forced_qos", image_qos="reliable", input_timeout=0.0)

    def warned() -> bool:
        found = statuses(received, "depth_forced_qos")
        return bool(found) and level(found[-1]) == WARN and "/image" in found[-1].message \
            and "incompatible QoS" in found[-1].message

    assert ros_graph.wait_for(warned, 15.0)


def test_every_image_output_pairs_with_its_sibling_camera_info(ros_graph: Any) -> None:
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import CameraInfo, Image

    pubs = inputs(ros_graph, "reliable_driver", QoSProfile(depth=10))
    start_node(ros_graph, "depth_pairing")
    infos = {t: ros_graph.collect(pubs[0], CameraInfo, t) for t in {sibling_camera_info(i) for i in IMAGE_OUTPUTS}}
    images = {t: ros_graph.collect(pubs[0], Image, t) for t in IMAGE_OUTPUTS}
    s = scene()
    stamps = [T0_NS + k * 100_000_000 for k in range(2)]
    for stamp_ns in stamps:
        send(pubs, stamp_ns, image_frame="")  # no frame_id on the image: the camera_info's is used
        assert ros_graph.wait_for(lambda ns=stamp_ns: all(any(stamp_ns_of(m) == ns for m in v)
                                                          for v in (*images.values(), *infos.values())), 30.0)
    for topic, received in images.items():
        paired = {stamp_ns_of(m): m for m in infos[sibling_camera_info(topic)]}
        for image in received:
            info = paired[stamp_ns_of(image)]
            assert (info.width, info.height) == (image.width, image.height), topic
            assert image.header.frame_id == info.header.frame_id == camera_info_msg(s.camera, 0).header.frame_id


def test_two_namespaces_two_statuses_and_no_input_is_warn(ros_graph: Any) -> None:
    from diagnostic_msgs.msg import DiagnosticArray

    listener = ros_graph.node("diagnostics_listener")
    received = ros_graph.collect(listener, DiagnosticArray, "/diagnostics")
    start_node(ros_graph, "depth_ft_node", namespace="front", input_timeout=0.5)
    start_node(ros_graph, "depth_ft_node", namespace="rear", input_timeout=0.5)

    def both_warn() -> bool:
        front, rear = statuses(received, "/front/depth_ft_node"), statuses(received, "/rear/depth_ft_node")
        return bool(front and rear) and all(level(x[-1]) == WARN and "no image" in x[-1].message
                                            for x in (front, rear))

    assert ros_graph.wait_for(both_warn, 15.0)
    names = {s.name for s in statuses(received, "depth_ft_node")}
    assert names == {"/front/depth_ft_node: depth pipeline", "/rear/depth_ft_node: depth pipeline"}


def test_models_that_fail_to_load_are_error(ros_graph: Any, tmp_path: Any) -> None:
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.parameter import Parameter

    from depth_ft_ros.node.node import DepthFtNode

    listener = ros_graph.node("error_listener")
    received = ros_graph.collect(listener, DiagnosticArray, "/diagnostics")
    params = node_params(depth_model=str(tmp_path / "missing"), normals_model="")
    node = DepthFtNode("depth_no_model", context=ros_graph.context,
                       parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    ros_graph.add_node(node)
    node.trigger_configure()
    assert node.processor is None

    def errored() -> bool:
        found = statuses(received, "depth_no_model")
        return bool(found) and level(found[-1]) == ERROR and "depth_model" in found[-1].message

    assert ros_graph.wait_for(errored, 10.0)


def depth_jumps(depth: np.ndarray, threshold_rel: float) -> np.ndarray:
    """The flying-pixel definition written out: the depth span of the 3x3 neighbourhood exceeds threshold_rel
    times the pixel's depth (invalid neighbours count as 0)."""
    d = np.nan_to_num(depth.astype(np.float64), nan=0.0)
    padded = np.pad(d, 1, mode="edge")
    windows = np.stack([padded[dy:dy + d.shape[0], dx:dx + d.shape[1]] for dy in range(3) for dx in range(3)])
    return (windows.max(0) - windows.min(0) > threshold_rel * d) & (d > 0)


def test_confidence_and_cloud_filter_through_the_node(ros_graph: Any) -> None:
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import Image, PointCloud2

    pubs = inputs(ros_graph, "filter_driver", QoSProfile(depth=10))
    start_node(ros_graph, "depth_filter", cloud_edge_filter=True, cloud_min_confidence=0.3, cloud_edge_threshold=0.04)
    depth = ros_graph.collect(pubs[0], Image, "depth/image")
    confidence = ros_graph.collect(pubs[0], Image, "depth/confidence")
    points = ros_graph.collect(pubs[0], PointCloud2, "points")
    send(pubs, T0_NS)
    assert ros_graph.wait_for(lambda: depth and confidence and points, 30.0)
    depth_m = image_to_numpy(depth[0], "f4", 1)
    conf = image_to_numpy(confidence[0], "f4", 1)
    assert conf.shape == depth_m.shape and np.all((conf >= 0) & (conf <= 1))
    z = cloud_fields(points[0])["z"].reshape(depth_m.shape)
    dropped = ~np.isfinite(depth_m) | depth_jumps(depth_m, 0.04) | (conf < 0.3)
    np.testing.assert_array_equal(np.isnan(z), dropped)  # NaN exactly where the filter or threshold says
    assert dropped.any() and not dropped.all()
    np.testing.assert_array_equal(z[~dropped], depth_m[~dropped])  # depth/image stays complete


def test_raw_distorted_camera_outputs_read_correctly_with_p_only(ros_graph: Any) -> None:
    """A raw camera with lens distortion: depth/camera_info says rectified (zero D, K = P), the cloud is
    depth_image_proc's back-projection of depth/image with that P, and the LiDAR points projected with P land on
    pixels whose published depth is theirs (the metric map of the random tiny network comes from the LiDAR)."""
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    pubs = inputs(ros_graph, "raw_camera_driver", QoSProfile(depth=10))
    start_node(ros_graph, "depth_raw_camera")
    s = scene()
    info_msg = camera_info_msg(s.camera, T0_NS)
    info_msg.d = [-0.25, 0.08, 0.0005, -0.0003, -0.01]  # a wide-angle lens, as image_raw comes
    depth = ros_graph.collect(pubs[0], Image, "depth/image")
    infos = ros_graph.collect(pubs[0], CameraInfo, "depth/camera_info")
    points = ros_graph.collect(pubs[0], PointCloud2, "points")
    _, image, info, lidar = pubs
    info.publish(info_msg)
    lidar.publish(cloud_msg(s.lidar_points, T0_NS))
    image.publish(image_msg(s.rgb, T0_NS))
    assert ros_graph.wait_for(lambda: depth and infos and points, 30.0)
    published = infos[0]
    assert not any(published.d) and np.allclose(np.reshape(published.k, (3, 3)), s.camera.p[:, :3])
    p = np.reshape(published.p, (3, 4))
    depth_m = image_to_numpy(depth[0], "f4", 1)
    v, u = np.mgrid[0:depth_m.shape[0], 0:depth_m.shape[1]]
    fields = cloud_fields(points[0])
    expected = {"x": (u - p[0, 2]) * depth_m / p[0, 0], "y": (v - p[1, 2]) * depth_m / p[1, 1], "z": depth_m}
    for axis, value in expected.items():
        np.testing.assert_allclose(fields[axis].reshape(depth_m.shape), value, rtol=1e-5, atol=1e-5,
                                   equal_nan=True)
    # The LiDAR in the camera frame, projected into the rectified image with P.
    cam = s.lidar_points @ s.T_camera_lidar[:3, :3].T + s.T_camera_lidar[:3, 3]
    cam = cam[cam[:, 2] > 0.1]
    pu = np.round(p[0, 0] * cam[:, 0] / cam[:, 2] + p[0, 2]).astype(int)
    pv = np.round(p[1, 1] * cam[:, 1] / cam[:, 2] + p[1, 2]).astype(int)
    inside = (pu >= 0) & (pu < depth_m.shape[1]) & (pv >= 0) & (pv < depth_m.shape[0])
    at_points = depth_m[pv[inside], pu[inside]]
    ok = np.isfinite(at_points)
    assert ok.sum() > 100
    assert np.median(np.abs(at_points[ok] - cam[inside, 2][ok]) / cam[inside, 2][ok]) < 0.10
