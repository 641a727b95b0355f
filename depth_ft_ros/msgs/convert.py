"""Message <-> numpy conversion for the node: one import point for the three codec modules.

All functions are pure (no node, no rclpy context) and raise depth_ft_ros.errors.InputError with a
message naming the message type, the field and what was expected; the node logs it and skips the message.

- image_codec: Image / CompressedImage -> RGB, depth Image -> metres, depth/normals/BGR -> Image
- cloud_msg: PointCloud2 <-> numpy structured arrays, PointCloud2 -> (N, 3) xyz
- camera_info: CameraInfo <-> PinholeCamera
"""

from __future__ import annotations

from depth_ft_ros.msgs.camera_info import camera_info_to_camera, camera_to_camera_info
from depth_ft_ros.msgs.cloud_msg import pointcloud2_to_structured, pointcloud2_to_xyz, structured_to_pointcloud2
from depth_ft_ros.msgs.image_codec import (
    array_to_image,
    bgr_to_msg,
    compressed_to_rgb,
    depth_image_to_metres,
    depth_to_msg,
    image_to_array,
    image_to_rgb,
    load_cv_bridge,
    normals_to_msg,
)

__all__ = [
    "array_to_image",
    "bgr_to_msg",
    "camera_info_to_camera",
    "camera_to_camera_info",
    "compressed_to_rgb",
    "depth_image_to_metres",
    "depth_to_msg",
    "image_to_array",
    "image_to_rgb",
    "load_cv_bridge",
    "normals_to_msg",
    "pointcloud2_to_structured",
    "pointcloud2_to_xyz",
    "structured_to_pointcloud2",
]
