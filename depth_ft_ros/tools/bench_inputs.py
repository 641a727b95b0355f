"""The inputs the node benchmarks publish: the Middlebury frame at a given size with a simulated LiDAR."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np


def bench_scene(width: int, height: int, lines: int) -> tuple[np.ndarray, Any, np.ndarray]:
    from depth_ft_ros.evaluation.lidar_sim import lidar_scan
    from depth_ft_ros.evaluation.middlebury import load_motorcycle

    frame = load_motorcycle()
    rgb = cv2.resize(frame.rgb, (width, height), interpolation=cv2.INTER_AREA)
    gt = cv2.resize(frame.depth_m, (width, height), interpolation=cv2.INTER_NEAREST)
    camera = frame.camera.scaled(width, height)
    return rgb, camera, lidar_scan(gt, camera, lines)


def bench_header(stamp_ns: int) -> Any:
    from std_msgs.msg import Header

    header = Header(frame_id="camera_optical_frame")
    header.stamp.sec, header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    return header
