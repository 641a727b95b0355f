"""Training frames from rosbags: image, CameraInfo, LiDAR points projected into the image, dense ground truth.

Everything is read as the replay and the node read it: topics guessed by bag.topics.choose_topics, the
LiDAR moved into the camera frame through /tf_static (bag.transforms.lookup_static), messages decoded by
the node's own codecs (depth_ft_ros.ros: they only read message fields, so rosbags' messages do), and the
points projected with core.sparse.project_sparse_points (nearest point per pixel, see-through filter) with
the node's default parameters (core.config.NodeConfig). Each image is paired with the CameraInfo, cloud and
ground truth nearest in stamp within the node's sync_tolerance; an image without a CameraInfo or a cloud
is skipped and counted under its reason.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from depth_ft_ros.config import NodeConfig
from depth_ft_ros.errors import InputError
from depth_ft_ros.frame.sync import nearest_index
from depth_ft_ros.geometry.camera import PinholeCamera
from depth_ft_ros.geometry.sparse import SparsePoints, project_sparse_points, transform_points
from depth_ft_ros.replay import messages as m
from depth_ft_ros.replay.rosbag_io import BagError, BagReader
from depth_ft_ros.replay.topics import TopicFlags, choose_topics
from depth_ft_ros.replay.transforms import lookup_static


@dataclass
class BagFrame:
    """One camera frame with its metric supervision, at the image's own resolution."""

    bag: str
    stamp_ns: int
    rgb: np.ndarray  # HxWx3 uint8
    camera: PinholeCamera
    lidar: SparsePoints  # projected LiDAR: uv (column, row) and z_m
    gt_depth_m: np.ndarray | None  # HxW float32 metres, NaN invalid


@dataclass
class BagFrames:
    frames: list[BagFrame]
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> images not used


def _decode_rgb(msg: Any, msgtype: str) -> np.ndarray:
    from depth_ft_ros.msgs import image_codec

    if msgtype == m.COMPRESSED_IMAGE:
        return np.array(image_codec.compressed_to_rgb(msg))
    return np.array(image_codec.image_to_rgb(msg))


def read_bag_frames(path: str | Path, flags: TopicFlags = TopicFlags(), config: NodeConfig | None = None,
                    require_points: bool = True) -> BagFrames:
    """All usable frames of one bag, in time order. Raises BagError when the bag or its topics do not fit."""
    from depth_ft_ros.msgs.camera_info import camera_info_to_camera
    from depth_ft_ros.msgs.cloud_msg import pointcloud2_to_xyz
    from depth_ft_ros.msgs.image_codec import depth_image_to_metres

    cfg = config or NodeConfig()
    tolerance_ns = int(cfg.sync_tolerance * 1e9)
    out = BagFrames([])
    with BagReader(path) as bag:
        plan = choose_topics(bag, flags.image, flags.camera_info, flags.sparse_points, flags.gt_depth)
        if plan.sparse_points is None and require_points:
            raise BagError(f"{bag.path}: fine-tuning needs metric points (a PointCloud2 topic); "
                           "--sparse-points-topic none is only possible with a dense ground truth for normals")
        edges: list[m.StaticTransform] = []
        by_topic: dict[str, list[tuple[int, bytes]]] = {}
        topics = [t for t in (plan.image, plan.camera_info, plan.sparse_points, plan.gt_depth, plan.tf_static) if t]
        for topic, msgtype, _log_ns, data in bag.messages(topics):
            if topic == plan.tf_static:
                edges.extend(m.parse_tf_message(m.deserialize(data, msgtype)))
            else:
                by_topic.setdefault(topic, []).append((m.stamp_ns_from_cdr(data), bytes(data)))
        side = {t: sorted(by_topic.get(t, []), key=lambda item: item[0])
                for t in (plan.camera_info, plan.sparse_points, plan.gt_depth) if t}
        stamps = {t: [s for s, _ in items] for t, items in side.items()}
        image_type = bag.msgtype(plan.image)
        transform_cache: dict[tuple[str, str], np.ndarray] = {}
        for stamp_ns, data in sorted(by_topic.get(plan.image, []), key=lambda item: item[0]):
            info_i = nearest_index(stamps[plan.camera_info], stamp_ns, tolerance_ns)
            if info_i is None:
                out.skipped["no camera_info within sync_tolerance"] += 1
                continue
            cloud_i = nearest_index(stamps[plan.sparse_points], stamp_ns, tolerance_ns) if plan.sparse_points else None
            if plan.sparse_points and cloud_i is None:
                out.skipped["no sparse points within sync_tolerance"] += 1
                continue
            try:
                image_msg = m.deserialize(data, image_type)
                rgb = _decode_rgb(image_msg, image_type)
                camera = camera_info_to_camera(m.deserialize(side[plan.camera_info][info_i][1], m.CAMERA_INFO))
                if (camera.image_width, camera.image_height) != (rgb.shape[1], rgb.shape[0]):
                    raise InputError(f"camera_info is {camera.image_width}x{camera.image_height}, the image "
                                     f"{rgb.shape[1]}x{rgb.shape[0]}")
                lidar = SparsePoints(uv=np.zeros((0, 2), np.int32), z_m=np.zeros(0, np.float32),
                                     image_size=(rgb.shape[1], rgb.shape[0]))
                if plan.sparse_points and cloud_i is not None:
                    cloud = m.deserialize(side[plan.sparse_points][cloud_i][1], m.POINTCLOUD2)
                    key = (image_msg.header.frame_id, cloud.header.frame_id)
                    if key not in transform_cache:
                        same = not key[1] or key[1] == key[0]
                        transform_cache[key] = np.eye(4) if same else lookup_static(edges, key[0], key[1])
                    points = transform_points(pointcloud2_to_xyz(cloud), transform_cache[key])
                    lidar = project_sparse_points(
                        points, camera, rectified=cfg.image_rectified, min_depth_m=cfg.min_depth,
                        max_depth_m=cfg.max_depth, filter_see_through=cfg.see_through_margin > 0,
                        see_through_margin_m=cfg.see_through_margin)
                gt = None
                if plan.gt_depth:
                    gt_i = nearest_index(stamps[plan.gt_depth], stamp_ns, tolerance_ns)
                    if gt_i is not None:
                        gt = depth_image_to_metres(m.deserialize(side[plan.gt_depth][gt_i][1], m.IMAGE))
                        if gt.shape != rgb.shape[:2]:
                            raise InputError(f"ground truth {plan.gt_depth} is {gt.shape[1]}x{gt.shape[0]}, the "
                                             f"image {rgb.shape[1]}x{rgb.shape[0]}")
            except InputError as exc:
                raise BagError(f"{bag.path}: frame at {stamp_ns / 1e9:.3f} s: {exc}") from None
            out.frames.append(BagFrame(str(bag.path), stamp_ns, rgb, camera, lidar, gt))
    if not out.frames:
        reasons = ", ".join(f"{n} {r}" for r, n in out.skipped.items()) or "the image topic has no messages"
        raise BagError(f"{path}: no usable training frame ({reasons})")
    return out
