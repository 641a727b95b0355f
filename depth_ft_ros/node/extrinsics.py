"""Where the sparse points' frame sits relative to the camera: tf2 on robots, static parameters otherwise."""

from __future__ import annotations

import copy

import numpy as np
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.time import Time

from depth_ft_ros.geometry.pose import pose_to_matrix

try:  # tf2_ros ships with a ROS install, not with the pip wheels
    import tf2_ros

    HAVE_TF2 = True
except ImportError:  # pragma: no cover - depends on the machine
    tf2_ros = None
    HAVE_TF2 = False


class Extrinsics:
    """Looks up T_camera_source (maps points from a source frame into the camera optical frame)."""

    def __init__(self, node: Node, use_tf: bool, static_translation_m: list[float],
                 static_rotation_xyzw: list[float]) -> None:
        self._static = pose_to_matrix(static_translation_m, static_rotation_xyzw)
        self._buffer = None
        self._listener = None
        if use_tf and HAVE_TF2:
            # The listener must exist for the buffer to receive /tf and /tf_static (a known peer bug).
            self._buffer = tf2_ros.Buffer()
            self._listener = tf2_ros.TransformListener(self._buffer, node)
        self.source = "tf2" if self._buffer is not None else (
            "static parameters" + ("" if use_tf is False else " (tf2_ros not importable)"))
        self._owner = True

    def for_camera(self, static_translation_m: list[float], static_rotation_xyzw: list[float]) -> Extrinsics:
        """Another camera's extrinsics: its own static parameters, this one's tf2 buffer (one /tf listener)."""
        other = copy.copy(self)
        other._static = pose_to_matrix(static_translation_m, static_rotation_xyzw)
        other._owner = False
        return other

    def close(self) -> None:
        """Stop listening to /tf and /tf_static (a new configure makes a new listener)."""
        if self._owner and self._listener is not None and hasattr(self._listener, "unregister"):
            self._listener.unregister()
        self._listener = self._buffer = None

    def update_static(self, translation_m: list[float], rotation_xyzw: list[float]) -> None:
        self._static = pose_to_matrix(translation_m, rotation_xyzw)

    def lookup_at(self, source_frame: str, camera_frame: str, *, source_stamp_ns: int = 0, image_stamp_ns: int = 0,
                  fixed_frame: str = "", timeout_s: float = 0.0) -> tuple[np.ndarray | None, str]:
        """(T_camera_source, "") or (None, tf2's own error text). Same frame: identity, no lookup.

        With `fixed_frame` (e.g. odom), the points are moved from their frame at their own stamp to the camera at
        the image's stamp through it (tf2's lookup_transform_full; core.pose.transform_in_time is the same
        composition); otherwise the latest transform, right for the static extrinsics of nearly every robot.
        `timeout_s` bounds the wait for a transform that has not arrived yet.
        """
        if not source_frame or source_frame == camera_frame:
            return np.eye(4), ""
        if self._buffer is None:
            return self._static, ""
        timeout = Duration(seconds=timeout_s)
        try:
            if fixed_frame:
                tf = self._buffer.lookup_transform_full(camera_frame, Time(nanoseconds=image_stamp_ns), source_frame,
                                                        Time(nanoseconds=source_stamp_ns), fixed_frame, timeout)
            else:
                tf = self._buffer.lookup_transform(camera_frame, source_frame, Time(), timeout)
        except Exception as exc:  # LookupException, ExtrapolationException, ConnectivityException, ...
            return None, f"{type(exc).__name__}: {exc}"
        t, q = tf.transform.translation, tf.transform.rotation
        return pose_to_matrix([t.x, t.y, t.z], [q.x, q.y, q.z, q.w]), ""
