"""`depth-ft-ros make-demo-bag OUT`: a short rosbag2 built from the real Middlebury frame (no ROS install needed).

Topics: /camera/image_raw (rgb8), /camera/camera_info, /camera/depth_gt (32FC1 m, NaN invalid), /lidar/points
(PointCloud2 in the `lidar` frame, 16 lines, noise, outliers, see-through points) and /tf_static (the rig).
The LiDAR extrinsics are also stored in the bag's custom metadata and printed as node parameters.
With --cameras A B ...: one camera per name on /A/image_raw, /A/camera_info, /A/depth_gt (frame A_optical_frame),
each panning its own way over the frame from the same optical centre, all seen by the one LiDAR.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from depth_ft_ros.errors import InputError
from depth_ft_ros.geometry.pose import matrix_to_pose
from depth_ft_ros.replay import demo_scene, messages
from depth_ft_ros.replay.messages import StaticTransform
from depth_ft_ros.replay.rosbag_io import STORAGES, BagError, BagWriter, keep_last_qos
from depth_ft_ros.replay.transforms import lookup_static

START_STAMP_NS = 1_700_000_000 * 1_000_000_000  # fixed, so the bag is the same on every machine
LIDAR_DELAY_NS = 15_000_000  # a spinning LiDAR is not triggered with the camera: 15 ms later
TOPIC_LIDAR = "/lidar/points"
TOPIC_TF_STATIC = "/tf_static"
# What the publishers on a robot offer: a static transform broadcaster (latched), camera drivers (reliable,
# REP 2003) and a LiDAR driver with SensorDataQoS (best effort, keep last 5), as many LiDAR drivers do.
TF_STATIC_QOS = keep_last_qos(1, transient_local=True)
LIDAR_QOS = keep_last_qos(5, reliable=False)
EXTRINSICS_KEY = "depth_ft_ros.static_extrinsics"


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 320x240 (got {text!r})") from None
    if not (16 <= width <= 4096 and 16 <= height <= 4096):
        raise argparse.ArgumentTypeError(f"size {width}x{height} out of range (16..4096 per side)")
    return width, height


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", metavar="OUT", help="output bag directory (must not exist)")
    parser.add_argument("--frames", type=int, default=30, help="number of camera frames (default 30)")
    parser.add_argument("--storage", choices=sorted(STORAGES), default="mcap", help="rosbag2 storage (mcap)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the LiDAR phase, noise and outliers")
    parser.add_argument("--size", type=_size, default=(320, 240), metavar="WxH",
                        help="image size of every frame (default 320x240)")
    parser.add_argument("--rate-hz", type=float, default=10.0, help="camera frame rate (default 10)")
    parser.add_argument("--cameras", nargs="+", default=[], metavar="NAME",
                        help="several cameras, one per name (the node's `cameras` parameter); default: one camera "
                             "on /camera/...")


def write_demo_bag(out: Path, frames: int = 30, storage: str = "mcap", seed: int = 0,
                   size: tuple[int, int] = (320, 240), rate_hz: float = 10.0,
                   cameras: list[str] | None = None) -> dict[str, Any]:
    """Write the bag; returns what a user needs to replay it (frame count, topics, extrinsic parameters)."""
    from depth_ft_ros.evaluation.middlebury import load_motorcycle

    if rate_hz <= 0:
        raise InputError(f"--rate-hz must be positive (got {rate_hz})")
    source = load_motorcycle()
    width, height = size
    rng = np.random.default_rng(seed)
    rig = demo_scene.rig_transforms()
    t_camera_lidar = lookup_static(rig, demo_scene.CAMERA_FRAME, demo_scene.LIDAR_FRAME)
    # (topic prefix, optical frame) per camera; several cameras share the first one's pose (one optical centre).
    views = [(f"/{name}", f"{name}_optical_frame") for name in cameras] if cameras else \
        [("/camera", demo_scene.CAMERA_FRAME)]
    if cameras:
        optical = next(edge for edge in rig if edge.child_frame == demo_scene.CAMERA_FRAME)
        rig = [edge for edge in rig if edge.child_frame != demo_scene.CAMERA_FRAME]
        rig += [StaticTransform(optical.parent_frame, frame_id, optical.matrix) for _, frame_id in views]
    translation, rotation = matrix_to_pose(t_camera_lidar)
    extrinsics = {"source_frame": demo_scene.LIDAR_FRAME, "target_frame": demo_scene.CAMERA_FRAME,
                  "static_translation": translation, "static_rotation": rotation}
    period_ns = round(1e9 / rate_hz)
    windows = demo_scene.camera_path(frames, source.rgb.shape[1], source.rgb.shape[0], width, height)

    writer = BagWriter(out, storage=storage)
    try:
        writer.set_custom_data(EXTRINSICS_KEY, json.dumps(extrinsics))
        writer.write(TOPIC_TF_STATIC, messages.TF_MESSAGE, START_STAMP_NS,
                     messages.serialize(messages.tf_message(rig, START_STAMP_NS)), [TF_STATIC_QOS])
        for k in range(frames):
            stamp_ns = START_STAMP_NS + k * period_ns
            for j, (prefix, cam_frame) in enumerate(views):
                crop = windows[k if j % 2 == 0 else frames - 1 - k]  # every other camera pans the other way
                frame = demo_scene.render_frame(source, crop, width, height)
                for topic, msg in ((f"{prefix}/camera_info", messages.camera_info(frame.camera, stamp_ns, cam_frame)),
                                   (f"{prefix}/image_raw", messages.image(frame.rgb, "rgb8", stamp_ns, cam_frame)),
                                   (f"{prefix}/depth_gt", messages.image(frame.depth_m, "32FC1", stamp_ns,
                                                                         cam_frame))):
                    writer.write(topic, msg.__msgtype__, stamp_ns, messages.serialize(msg))
            lidar_stamp_ns = stamp_ns + LIDAR_DELAY_NS
            cloud = messages.pointcloud_xyz(demo_scene.lidar_points(source, t_camera_lidar, rng), lidar_stamp_ns,
                                            demo_scene.LIDAR_FRAME)
            writer.write(TOPIC_LIDAR, messages.POINTCLOUD2, lidar_stamp_ns, messages.serialize(cloud), [LIDAR_QOS])
    finally:
        writer.close()
    return {"path": str(out), "frames": frames, "size": f"{width}x{height}", "storage": storage,
            "topics": writer.counts, "extrinsics": extrinsics}


def run(args: argparse.Namespace) -> int:
    try:
        info = write_demo_bag(Path(args.out), frames=args.frames, storage=args.storage, seed=args.seed,
                              size=args.size, rate_hz=args.rate_hz, cameras=args.cameras)
    except (BagError, InputError) as exc:
        print(f"make-demo-bag: {exc}", file=sys.stderr)
        return 2
    ext = info["extrinsics"]
    print(f"wrote {info['path']} ({info['storage']}): {info['frames']} frames of {info['size']} from the "
          "Middlebury 2014 Motorcycle frame (Scharstein et al., GCPR 2014)")
    for topic, count in sorted(info["topics"].items()):
        print(f"  {topic}: {count} msgs")
    print(f"static extrinsics {ext['source_frame']} -> {ext['target_frame']} (node parameters, also on /tf_static "
          "and in the bag metadata):")
    print(f"  static_translation: {[round(v, 6) for v in ext['static_translation']]}")
    print(f"  static_rotation: {[round(v, 6) for v in ext['static_rotation']]}")
    return 0
