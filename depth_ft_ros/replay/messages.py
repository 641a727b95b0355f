"""Messages built and read with a rosbags typestore (no rclpy): what the demo bag holds, plus /tf_static parsing.

Serialising with the typestore gives standard CDR, the bytes `ros2 bag`, Foxglove and rclpy read.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
from rosbags.typesys import Stores, get_typestore

from depth_ft_ros.errors import InputError
from depth_ft_ros.geometry.camera import PinholeCamera
from depth_ft_ros.geometry.pose import matrix_to_pose, pose_to_matrix

# Jazzy's definitions (the same as Humble's for every type written here).
TYPESTORE = get_typestore(Stores.ROS2_JAZZY)
_T = TYPESTORE.types

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
POINTCLOUD2 = "sensor_msgs/msg/PointCloud2"
TF_MESSAGE = "tf2_msgs/msg/TFMessage"

_IMAGE_ENCODINGS = {"rgb8": (np.uint8, 3), "bgr8": (np.uint8, 3), "mono8": (np.uint8, 1), "32FC1": (np.float32, 1)}


def serialize(msg: Any) -> bytes:
    return bytes(TYPESTORE.serialize_cdr(msg, msg.__msgtype__))


def deserialize(data: bytes | memoryview, msgtype: str) -> Any:
    return TYPESTORE.deserialize_cdr(bytes(data), msgtype)


def header(stamp_ns: int, frame_id: str) -> Any:
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return _T["std_msgs/msg/Header"](stamp=_T["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec),
                                     frame_id=frame_id)


def image(pixels: np.ndarray, encoding: str, stamp_ns: int, frame_id: str) -> Any:
    """sensor_msgs/Image from an HxW or HxWx3 array (rgb8, bgr8, mono8 or 32FC1), little-endian, no padding."""
    dtype, channels = _IMAGE_ENCODINGS[encoding]
    arr = np.ascontiguousarray(pixels, dtype=np.dtype(dtype).newbyteorder("<"))
    if arr.ndim != (2 if channels == 1 else 3) or (channels == 3 and arr.shape[2] != 3):
        raise InputError(f"{encoding} image needs shape (H, W{', 3' if channels == 3 else ''}), got {arr.shape}")
    height, width = arr.shape[:2]
    return _T[IMAGE](header=header(stamp_ns, frame_id), height=height, width=width, encoding=encoding,
                     is_bigendian=0, step=width * channels * arr.itemsize,
                     data=np.frombuffer(arr.tobytes(), dtype=np.uint8))


def camera_info(camera: PinholeCamera, stamp_ns: int, frame_id: str) -> Any:
    """sensor_msgs/CameraInfo with the camera's size, K, D, P (plumb_bob, R = identity, no binning/ROI)."""
    cam = camera.reduced()
    roi = _T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    d = np.zeros(5) if cam.d.size == 0 else np.asarray(cam.d, dtype=np.float64)
    return _T[CAMERA_INFO](header=header(stamp_ns, frame_id), height=cam.height, width=cam.width,
                           distortion_model=cam.distortion_model, d=d, k=np.asarray(cam.k).reshape(9).copy(),
                           r=np.eye(3).reshape(9), p=np.asarray(cam.p).reshape(12).copy(), binning_x=0,
                           binning_y=0, roi=roi)


def pointcloud_xyz(points_m: np.ndarray, stamp_ns: int, frame_id: str) -> Any:
    """Unorganized (1 x N) sensor_msgs/PointCloud2 with float32 x, y, z, like a LiDAR driver."""
    pts = np.asarray(points_m, dtype=np.float64).reshape(-1, 3)
    names = ["x", "y", "z"]
    cloud = np.zeros(len(pts), dtype=np.dtype({"names": names, "formats": ["<f4"] * len(names)}))
    for i, name in enumerate(names):
        cloud[name] = pts[:, i]
    field = _T["sensor_msgs/msg/PointField"]
    float32 = field.FLOAT32  # type: ignore[attr-defined]  # a message constant rosbags' type stubs omit
    fields = [field(name=n, offset=4 * i, datatype=float32, count=1) for i, n in enumerate(names)]
    step = cloud.dtype.itemsize
    return _T[POINTCLOUD2](header=header(stamp_ns, frame_id), height=1, width=len(pts), fields=fields,
                           is_bigendian=False, point_step=step, row_step=step * len(pts),
                           data=np.frombuffer(cloud.tobytes(), dtype=np.uint8), is_dense=True)


@dataclass(frozen=True)
class StaticTransform:
    """One /tf_static edge: maps points from child_frame into parent_frame (p_parent = matrix @ p_child)."""

    parent_frame: str
    child_frame: str
    matrix: np.ndarray  # 4x4


def tf_message(transforms: list[StaticTransform], stamp_ns: int) -> Any:
    items = []
    for tf in transforms:
        (x, y, z), (qx, qy, qz, qw) = matrix_to_pose(tf.matrix)
        transform = _T["geometry_msgs/msg/Transform"](
            translation=_T["geometry_msgs/msg/Vector3"](x=x, y=y, z=z),
            rotation=_T["geometry_msgs/msg/Quaternion"](x=qx, y=qy, z=qz, w=qw))
        items.append(_T["geometry_msgs/msg/TransformStamped"](header=header(stamp_ns, tf.parent_frame),
                                                               child_frame_id=tf.child_frame, transform=transform))
    return _T[TF_MESSAGE](transforms=items)


def parse_tf_message(msg: Any) -> list[StaticTransform]:
    """The edges of a deserialized tf2_msgs/TFMessage."""
    edges = []
    for item in msg.transforms:
        t, q = item.transform.translation, item.transform.rotation
        matrix = pose_to_matrix((t.x, t.y, t.z), (q.x, q.y, q.z, q.w))
        edges.append(StaticTransform(item.header.frame_id.lstrip("/"), item.child_frame_id.lstrip("/"), matrix))
    return edges


def stamp_ns_from_cdr(data: bytes | memoryview) -> int:
    """Header stamp of a serialized message that starts with a std_msgs/Header (Image, CameraInfo, PointCloud2,
    DiagnosticArray, ...) without deserializing it: after the 4-byte CDR encapsulation (byte 1 = 1: little
    endian) come stamp.sec (int32) and stamp.nanosec (uint32)."""
    buf = memoryview(data)
    if len(buf) < 12:
        raise InputError(f"serialized message of {len(buf)} bytes is too short to hold a header")
    sec, nanosec = struct.unpack_from("<iI" if buf[1] == 1 else ">iI", buf, 4)
    return sec * 1_000_000_000 + nanosec
