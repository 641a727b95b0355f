"""A frame's results as the node's output messages, each built one way: the node publishes them, a batch engine
writes them to a bag under the same topic names.

Every output carries the input image's stamp and the camera's optical frame_id; each image has its camera_info
beside it (image_transport's pairing), emitted whenever the image is. A message nobody wants is not built
(megabytes per frame otherwise). The messages share memory with the frame's arrays (copy=False): publish() or
serialization copies them once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from builtin_interfaces.msg import Time
from std_msgs.msg import Header

from depth_ft_ros.frame.colorize import colorize_depth, colorize_normals
from depth_ft_ros.frame.processor import FrameResult
from depth_ft_ros.msgs import convert, names


def output_topics(camera_name: str, publish_relative: bool) -> list[str]:
    """Every output topic of one camera, relative to the node's namespace (front/depth/image, ...)."""
    topics = [names.DEPTH_IMAGE, names.DEPTH_CAMERA_INFO, *([names.DEPTH_RELATIVE] if publish_relative else []),
              names.DEPTH_COLORIZED, names.DEPTH_CONFIDENCE, names.NORMALS_IMAGE, names.NORMALS_CAMERA_INFO,
              names.NORMALS_COLORIZED, names.POINTS]
    return [names.of_camera(camera_name, topic) for topic in topics]


def header_of(result: FrameResult) -> Header:
    sec, nanosec = divmod(result.stamp_ns, 1_000_000_000)
    return Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=result.frame_id)


def output_messages(result: FrameResult, wanted: Callable[[str], bool], publish_relative: bool,
                    header: Header | None = None) -> list[tuple[str, Any]]:
    """(topic, message) for every output of `result` that `wanted(topic)` asks for, in publication order.
    `header`: the input image's own header object (the node's), else one built from the result's stamp and frame."""
    header = header if header is not None else header_of(result)

    def topic(name: str) -> str:
        return names.of_camera(result.camera_name, name)

    out: list[tuple[str, Any]] = []
    depth_images = False
    if result.depth_m is not None and wanted(topic(names.DEPTH_IMAGE)):
        out.append((topic(names.DEPTH_IMAGE), convert.depth_to_msg(result.depth_m, header, copy=False)))
        depth_images = True
    if publish_relative and result.relative is not None and wanted(topic(names.DEPTH_RELATIVE)):
        out.append((topic(names.DEPTH_RELATIVE), convert.depth_to_msg(result.relative, header, copy=False)))
        depth_images = True
    if result.confidence is not None and wanted(topic(names.DEPTH_CONFIDENCE)):
        out.append((topic(names.DEPTH_CONFIDENCE), convert.depth_to_msg(result.confidence, header, copy=False)))
        depth_images = True
    if wanted(topic(names.DEPTH_COLORIZED)):
        shown = result.depth_m if result.depth_m is not None else result.relative
        if shown is not None:
            # Relative disparity grows toward the camera: show it the other way round to depth.
            inverse = result.depth_m is not None or result.space != "disparity"
            out.append((topic(names.DEPTH_COLORIZED),
                        convert.bgr_to_msg(colorize_depth(shown, inverse=inverse), header, copy=False)))
            depth_images = True
    if wanted(topic(names.DEPTH_CAMERA_INFO)) and (depth_images or result.depth_m is not None):
        out.append((topic(names.DEPTH_CAMERA_INFO), convert.camera_to_camera_info(result.camera, header)))
    if result.normals is not None:
        normals_images = False
        if wanted(topic(names.NORMALS_IMAGE)):
            out.append((topic(names.NORMALS_IMAGE), convert.normals_to_msg(result.normals, header, copy=False)))
            normals_images = True
        if wanted(topic(names.NORMALS_COLORIZED)):
            out.append((topic(names.NORMALS_COLORIZED),
                        convert.bgr_to_msg(colorize_normals(result.normals), header, copy=False)))
            normals_images = True
        if normals_images and wanted(topic(names.NORMALS_CAMERA_INFO)):
            out.append((topic(names.NORMALS_CAMERA_INFO), convert.camera_to_camera_info(result.camera, header)))
    if result.cloud is not None and wanted(topic(names.POINTS)):
        out.append((topic(names.POINTS),
                    convert.structured_to_pointcloud2(result.cloud, header, is_dense=False, copy=False)))
    return out


__all__ = ["header_of", "output_messages", "output_topics"]
