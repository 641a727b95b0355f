"""A real scene for node tests (Middlebury frame + simulated LiDAR) and input messages built by hand from the
sensor_msgs definitions, so the node's own converters are not used to make what they are tested on."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import cache
from typing import Any

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from depth_ft_ros.evaluation.lidar_sim import lidar_scan_in_lidar_frame, make_T_camera_lidar
from depth_ft_ros.evaluation.middlebury import load_motorcycle
from depth_ft_ros.geometry.camera import PinholeCamera

T0_NS = 1_700_000_000_000_000_000  # input stamps of the node tests (2023: behind any machine's clock)
CAMERA_FRAME = "camera_optical_frame"
LIDAR_FRAME = "lidar"
WIDTH, HEIGHT = 160, 108  # the 741x500 frame scaled by ~0.216 (same aspect ratio)


@dataclass(frozen=True)
class Scene:
    rgb: np.ndarray
    gt_depth_m: np.ndarray
    camera: PinholeCamera
    T_camera_lidar: np.ndarray
    lidar_points: np.ndarray  # (N, 3) in the LiDAR frame

    @property
    def static_params(self) -> dict[str, list[float]]:
        """The node's static-extrinsics parameters for this scene (LiDAR frame -> camera optical frame)."""
        return {"static_translation": [float(v) for v in self.T_camera_lidar[:3, 3]],
                "static_rotation": [float(v) for v in Rotation.from_matrix(self.T_camera_lidar[:3, :3]).as_quat()]}


@cache
def scene() -> Scene:
    frame = load_motorcycle()
    rgb = cv2.resize(frame.rgb, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)
    gt = cv2.resize(frame.depth_m, (WIDTH, HEIGHT), interpolation=cv2.INTER_NEAREST)
    camera = frame.camera.scaled(WIDTH, HEIGHT)
    t_cam_lidar = make_T_camera_lidar((0.05, -0.1, 0.0))
    points = lidar_scan_in_lidar_frame(gt, camera, t_cam_lidar, 16)
    return Scene(rgb, gt, camera, t_cam_lidar, points)


def stamp(msg_type_header: Any, stamp_ns: int, frame_id: str) -> None:
    msg_type_header.stamp.sec = stamp_ns // 1_000_000_000
    msg_type_header.stamp.nanosec = stamp_ns % 1_000_000_000
    msg_type_header.frame_id = frame_id


def image_msg(rgb: np.ndarray, stamp_ns: int, frame_id: str = CAMERA_FRAME) -> Any:
    from sensor_msgs.msg import Image

    msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8", is_bigendian=0, step=rgb.shape[1] * 3)
    msg.data = rgb.tobytes()
    stamp(msg.header, stamp_ns, frame_id)
    return msg


def camera_info_msg(camera: PinholeCamera, stamp_ns: int, frame_id: str = CAMERA_FRAME) -> Any:
    from sensor_msgs.msg import CameraInfo

    msg = CameraInfo(width=camera.width, height=camera.height, distortion_model="plumb_bob")
    msg.k = [float(v) for v in np.asarray(camera.k).ravel()]
    msg.p = [float(v) for v in np.asarray(camera.p).ravel()]
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    msg.d = [0.0] * 5
    stamp(msg.header, stamp_ns, frame_id)
    return msg


def cloud_msg(points: np.ndarray, stamp_ns: int, frame_id: str = LIDAR_FRAME) -> Any:
    """Unorganized x, y, z float32 + intensity float32 (16-byte points), as LiDAR drivers publish."""
    from sensor_msgs.msg import PointCloud2, PointField

    data = np.zeros(len(points), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4")])
    for i, name in enumerate("xyz"):
        data[name] = points[:, i]
    data["intensity"] = 100.0
    msg = PointCloud2(height=1, width=len(points), is_bigendian=sys.byteorder == "big", point_step=16,
                      row_step=16 * len(points), is_dense=True)
    msg.fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
                  for i, n in enumerate(("x", "y", "z", "intensity"))]
    msg.data = data.tobytes()
    stamp(msg.header, stamp_ns, frame_id)
    return msg


def image_to_numpy(msg: Any, dtype: str, channels: int) -> np.ndarray:
    """Decode a received float image by its definition (rows of `step` bytes)."""
    order = ">" if msg.is_bigendian else "<"
    raw = np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(msg.height, msg.step)
    row_bytes = msg.width * channels * np.dtype(dtype).itemsize
    values = raw[:, :row_bytes].copy().view(order + dtype)
    return values.reshape(msg.height, msg.width, channels).squeeze(-1) if channels == 1 else \
        values.reshape(msg.height, msg.width, channels)


def cloud_fields(msg: Any) -> dict[str, np.ndarray]:
    """Each PointField of an organized cloud as an (H, W) array, read at its declared offset."""
    types = {7: "f4", 8: "f8"}
    order = ">" if msg.is_bigendian else "<"
    dtype = np.dtype({"names": [f.name for f in msg.fields],
                      "formats": [order + types[f.datatype] for f in msg.fields],
                      "offsets": [f.offset for f in msg.fields], "itemsize": msg.point_step})
    array = np.frombuffer(bytes(msg.data), dtype=dtype).reshape(msg.height, msg.width)
    return {name: array[name].astype(np.float64) for name in dtype.names}


def stamp_ns_of(msg: Any) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def restamp(msg: Any, stamp_ns: int) -> None:
    stamp(msg.header, stamp_ns, msg.header.frame_id)


# -- the node in a test graph (conftest.RosGraph) ---------------------------------------------------------------

def _rosout_qos() -> Any:
    """rcl's /rosout publisher QoS (reliable, transient local, depth 1000): a late subscriber gets the history."""
    try:
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    except ImportError:  # no rclpy: the ROS tests are skipped anyway
        return 10
    return QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


ROSOUT_QOS = _rosout_qos()


def node_params(**overrides: Any) -> dict[str, Any]:
    from predictor_fixtures import tiny_model  # torch: only where a node runs

    params: dict[str, Any] = {
        "depth_model": str(tiny_model("e2e-ft-depth")),
        "normals_model": str(tiny_model("e2e-ft-normals")),
        "device": "cpu",
        "processing_resolution": 0,
        # Random weights predict no depth: scale + local alignment makes the metric map from the LiDAR alone.
        "alignment": "local",
        "alignment_fit": "scale",
        # Their maps are noise (a depth edge at nearly every pixel): the cloud filters off, as `make demo` does;
        # the tests of the filters turn them on.
        "cloud_edge_filter": False,
        "cloud_min_confidence": 0.0,
        "min_depth": 0.1,
        "max_depth": 20.0,
        "use_tf": False,
        "sync_wait": 1.0,
        "diagnostics_period": 0.2,
        **scene().static_params,
    }
    params.update(overrides)
    return params


def start_node(ros_graph: Any, node_name: str = "depth_ft_node", namespace: str = "",
               params: dict[str, Any] | None = None, **overrides: Any) -> Any:
    """A configured, active DepthFtNode with node_params(**overrides), or `params` as given. Tests that read its
    /rosout give it a name of their own: rcl keeps one /rosout publisher per logger name, and a node destroyed
    earlier under the same name can leave it silent."""
    from rclpy.parameter import Parameter

    from depth_ft_ros.node.node import DepthFtNode

    params = node_params(**overrides) if params is None else params
    node = DepthFtNode(node_name, context=ros_graph.context, namespace=namespace,
                       parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    ros_graph.add_node(node)
    node.trigger_configure()
    assert node.processor is not None
    node.trigger_activate()
    return node


class Probe:
    """Publishes the camera + LiDAR inputs and collects every output of the node."""

    def __init__(self, ros_graph: Any) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from rcl_interfaces.msg import Log
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2

        self.graph = ros_graph
        node = ros_graph.node("probe")
        self.image = node.create_publisher(Image, "image", 10)
        self.info = node.create_publisher(CameraInfo, "camera_info", 10)
        self.points = node.create_publisher(PointCloud2, "sparse_points", 10)
        self.out = {topic: ros_graph.collect(node, msg_type, topic) for topic, msg_type in [
            ("depth/image", Image), ("depth/camera_info", CameraInfo), ("depth/relative", Image),
            ("normals/image", Image), ("normals/camera_info", CameraInfo), ("points", PointCloud2)]}
        self.diagnostics = ros_graph.collect(node, DiagnosticArray, "/diagnostics")
        self.rosout = ros_graph.collect(node, Log, "/rosout", ROSOUT_QOS)  # the node's log, as rqt_console sees it
        assert ros_graph.wait_for(lambda: all(p.get_subscription_count() > 0
                                              for p in (self.image, self.info, self.points)), 10.0)
        assert ros_graph.wait_for(lambda: node.count_publishers("depth/image") > 0, 10.0)

    def send(self, stamp_ns: int, image: Any = None, info: Any = None, points: Any = None,
             with_points: bool = True) -> None:
        s = scene()
        self.info.publish(info if info is not None else camera_info_msg(s.camera, stamp_ns))
        if with_points:
            self.points.publish(points if points is not None else cloud_msg(s.lidar_points, stamp_ns))
        self.image.publish(image if image is not None else image_msg(s.rgb, stamp_ns))

    def wait_output(self, topic: str, stamp_ns: int, timeout_s: float = 30.0) -> Any:
        found: list[Any] = []

        def arrived() -> bool:
            found[:] = [m for m in self.out[topic] if stamp_ns_of(m) == stamp_ns]
            return bool(found)

        assert self.graph.wait_for(arrived, timeout_s), f"no {topic} for stamp {stamp_ns}"
        return found[0]

    def logs(self, level: int) -> list[str]:
        """Messages nodes logged on /rosout at `level` (rcl_interfaces/Log: 30 WARN, 40 ERROR), the probe's
        own excepted."""
        return [m.msg for m in list(self.rosout) if m.level == level and m.name != "probe"]

    def diagnostic_status(self) -> tuple[int, str, dict[str, str]]:
        """(level, message, values) of the newest /diagnostics status (level -1 before the first)."""
        if not self.diagnostics:
            return -1, "", {}
        status = self.diagnostics[-1].status[0]
        return int.from_bytes(status.level, "little") if isinstance(status.level, bytes) else int(status.level), \
            status.message, {kv.key: kv.value for kv in status.values}
