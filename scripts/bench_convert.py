#!/usr/bin/env python3
"""Time the message <-> numpy conversions of depth_ft_ros.msgs.convert at 640x480 (median of N runs, ms)."""

from __future__ import annotations

import argparse
import array
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage
from std_msgs.msg import Header

from depth_ft_ros.msgs import convert


def median_ms(func: Callable[[], Any], runs: int) -> float:
    func()  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        func()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    h, w = 480, 640
    rng = np.random.default_rng(0)
    header = Header(frame_id="camera_optical")
    depth = rng.uniform(0.5, 10.0, (h, w)).astype(np.float32)
    normals = rng.normal(size=(h, w, 3)).astype(np.float32)
    bgr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    fields = ("x", "y", "z", "rgb", "normal_x", "normal_y", "normal_z")
    cloud = np.zeros((h, w), np.dtype([(n, "f4") for n in fields]))
    for name in fields:
        cloud[name] = rng.normal(size=(h, w))
    depth_msg = convert.depth_to_msg(depth, header)
    bgr_msg = convert.bgr_to_msg(bgr, header)
    mm_msg = convert.array_to_image((depth * 1000).astype(np.uint16), "16UC1", header)
    cloud_msg = convert.structured_to_pointcloud2(cloud, header)
    _, enc = cv2.imencode(".jpg", bgr)
    jpeg_msg = CompressedImage(format="jpeg")
    jpeg_msg.data = array.array("B", enc.tobytes())
    cases: dict[str, Callable[[], Any]] = {
        "depth_to_msg (32FC1, 1.2 MB)": lambda: convert.depth_to_msg(depth, header),
        "normals_to_msg (32FC3, 3.7 MB)": lambda: convert.normals_to_msg(normals, header),
        "bgr_to_msg (bgr8, 0.9 MB)": lambda: convert.bgr_to_msg(bgr, header),
        "structured_to_pointcloud2 (7 x f4, 8.6 MB)": lambda: convert.structured_to_pointcloud2(cloud, header),
        # What the node publishes: the message shares the array (rclpy copies it once, in publish()).
        "depth_to_msg, copy=False": lambda: convert.depth_to_msg(depth, header, copy=False),
        "structured_to_pointcloud2, copy=False": lambda: convert.structured_to_pointcloud2(cloud, header, copy=False),
        "image_to_rgb (bgr8)": lambda: convert.image_to_rgb(bgr_msg),
        "depth_image_to_metres (32FC1)": lambda: convert.depth_image_to_metres(depth_msg),
        "depth_image_to_metres (16UC1)": lambda: convert.depth_image_to_metres(mm_msg),
        "pointcloud2_to_xyz (307200 points)": lambda: convert.pointcloud2_to_xyz(cloud_msg),
        "compressed_to_rgb (JPEG)": lambda: convert.compressed_to_rgb(jpeg_msg),
    }
    for name, func in cases.items():
        print(f"{name:45s} {median_ms(func, args.runs):8.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
