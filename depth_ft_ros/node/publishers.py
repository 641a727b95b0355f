"""The node's outputs: one lifecycle publisher per topic, each output computed only when someone listens."""

from __future__ import annotations

from typing import Any

from rclpy.lifecycle import LifecycleNode
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from depth_ft_ros.frame.colorize import colorize_depth, colorize_normals
from depth_ft_ros.frame.processor import FrameResult
from depth_ft_ros.msgs import convert, names

# REP 2003: drivers publish reliable; KEEP_LAST 5 bounds memory when a subscriber is slow.
OUTPUT_QOS = QoSProfile(depth=5)


class FramePublishers:
    """One camera's outputs; `camera` (several cameras) prefixes every topic: front/depth/image, ..."""

    def __init__(self, node: LifecycleNode, publish_relative: bool, camera: str = "") -> None:
        self._node = node

        def make(msg_type: Any, topic: str) -> Any:
            return node.create_lifecycle_publisher(msg_type, names.of_camera(camera, topic), OUTPUT_QOS)

        self.depth = make(Image, names.DEPTH_IMAGE)
        self.depth_info = make(CameraInfo, names.DEPTH_CAMERA_INFO)
        self.relative = make(Image, names.DEPTH_RELATIVE) if publish_relative else None
        self.colorized = make(Image, names.DEPTH_COLORIZED)
        self.confidence = make(Image, names.DEPTH_CONFIDENCE)
        self.normals = make(Image, names.NORMALS_IMAGE)
        self.normals_info = make(CameraInfo, names.NORMALS_CAMERA_INFO)
        # RViz's Image display cannot show 32FC3: a bgr8 picture of the normals for people.
        self.normals_colorized = make(Image, names.NORMALS_COLORIZED)
        self.points = make(PointCloud2, names.POINTS)

    def _all(self) -> list[Any]:
        return [p for p in (self.depth, self.depth_info, self.relative, self.colorized, self.confidence,
                            self.normals, self.normals_info, self.normals_colorized, self.points) if p is not None]

    def anyone_listening(self) -> bool:
        return any(p.get_subscription_count() > 0 for p in self._all())

    def wants_normals(self) -> bool:
        return any(p.get_subscription_count() > 0 for p in (self.normals, self.normals_colorized))

    def wants_cloud(self) -> bool:
        return self.points.get_subscription_count() > 0

    def wants_confidence(self) -> bool:
        return self.confidence.get_subscription_count() > 0

    def publish(self, header: Any, result: FrameResult) -> None:
        """Every output carries the input image's stamp and the camera's optical frame_id (`header`); each image
        has its camera_info beside it (image_transport's pairing), published whenever the image is.

        A message nobody subscribes to is neither built nor published (megabytes per frame otherwise). The
        messages share memory with this frame's arrays (copy=False): rclpy copies them once, in publish()."""
        def wanted(pub: Any) -> bool:
            return pub is not None and pub.get_subscription_count() > 0

        depth_images = False
        if result.depth_m is not None and wanted(self.depth):
            self.depth.publish(convert.depth_to_msg(result.depth_m, header, copy=False))
            depth_images = True
        if self.relative is not None and wanted(self.relative) and result.relative is not None:
            self.relative.publish(convert.depth_to_msg(result.relative, header, copy=False))
            depth_images = True
        if result.confidence is not None and wanted(self.confidence):
            self.confidence.publish(convert.depth_to_msg(result.confidence, header, copy=False))
            depth_images = True
        if wanted(self.colorized):
            shown = result.depth_m if result.depth_m is not None else result.relative
            if shown is not None:
                # Relative disparity grows toward the camera: show it the other way round to depth.
                inverse = result.depth_m is not None or result.space != "disparity"
                self.colorized.publish(
                    convert.bgr_to_msg(colorize_depth(shown, inverse=inverse), header, copy=False))
                depth_images = True
        if wanted(self.depth_info) and (depth_images or result.depth_m is not None):
            self.depth_info.publish(convert.camera_to_camera_info(result.camera, header))
        if result.normals is not None:
            normals_images = False
            if wanted(self.normals):
                self.normals.publish(convert.normals_to_msg(result.normals, header, copy=False))
                normals_images = True
            if wanted(self.normals_colorized):
                self.normals_colorized.publish(
                    convert.bgr_to_msg(colorize_normals(result.normals), header, copy=False))
                normals_images = True
            if normals_images and wanted(self.normals_info):
                self.normals_info.publish(convert.camera_to_camera_info(result.camera, header))
        if result.cloud is not None:
            self.points.publish(convert.structured_to_pointcloud2(result.cloud, header, is_dense=False, copy=False))

    def destroy(self) -> None:
        for pub in self._all():
            self._node.destroy_lifecycle_publisher(pub)
