"""The frame the node benchmarks feed: the Middlebury image at a chosen size, its camera and a simulated LiDAR."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np


def scene(width: int, height: int, lines: int) -> tuple[np.ndarray, Any, np.ndarray]:
    """(rgb HxWx3 uint8, PinholeCamera, LiDAR points Nx3 in the camera frame, m) at width x height."""
    from depth_ft_ros.evaluation.lidar_sim import lidar_scan
    from depth_ft_ros.evaluation.middlebury import load_motorcycle

    frame = load_motorcycle()
    rgb = cv2.resize(frame.rgb, (width, height), interpolation=cv2.INTER_AREA)
    gt = cv2.resize(frame.depth_m, (width, height), interpolation=cv2.INTER_NEAREST)
    camera = frame.camera.scaled(width, height)
    return rgb, camera, lidar_scan(gt, camera, lines)


def header(stamp_ns: int) -> Any:
    """A std_msgs/Header in the camera's optical frame."""
    from std_msgs.msg import Header

    msg = Header(frame_id="camera_optical_frame")
    msg.stamp.sec, msg.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    return msg
