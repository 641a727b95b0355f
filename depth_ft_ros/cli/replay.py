"""`depth-ft-ros replay IN_BAG --out OUT_BAG`: parses the flags and runs depth_ft_ros.replay.replay.Replay.

The bag's camera image, camera_info and sparse points go through the real node; its outputs are recorded with the
inputs into an MCAP rosbag2, and a summary is printed (see depth_ft_ros/replay/replay.py).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from depth_ft_ros.errors import DepthFtError
from depth_ft_ros.replay.replay import Replay, ReplayOptions, parse_param_overrides
from depth_ft_ros.replay.topics import NONE


def _domain_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 232:  # DDS port mapping: larger ids have no ports
        raise argparse.ArgumentTypeError(f"ROS domain ids are 0..232 (got {text!r})")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("in_bag", metavar="IN_BAG", help="rosbag2 directory (MCAP or sqlite3)")
    parser.add_argument("--out", required=True, metavar="OUT_BAG", help="output MCAP bag directory (must not exist)")
    parser.add_argument("--params", metavar="FILE", help="node parameters YAML (e.g. config/depth_ft.yaml)")
    parser.add_argument("--depth-model", metavar="M", help="depth checkpoint: local folder or Hugging Face id")
    parser.add_argument("--normals-model", metavar="M", help="normals checkpoint: local folder or Hugging Face id")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="any node parameter, value in YAML (e.g. processing_resolution=256); repeatable")
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument("--lossless", action="store_true",
                      help="send each frame only after the node's outputs for the previous one (tests, accuracy)")
    pace.add_argument("--rate", type=float, default=1.0, metavar="R",
                      help="play in R x real time like `ros2 bag play --rate` (default 1.0)")
    parser.add_argument("--image-topic", metavar="T", help="camera image (Image or CompressedImage)")
    parser.add_argument("--camera-info-topic", metavar="T", help="CameraInfo of the image")
    parser.add_argument("--sparse-points-topic", metavar="T", help=f"metric points (PointCloud2), or {NONE}")
    parser.add_argument("--gt-depth-topic", metavar="T", help=f"ground-truth depth (Image 32FC1/16UC1), or {NONE}")
    parser.add_argument("--preview", metavar="DIR", help="write preview PNGs and a scale/shift plot here")
    parser.add_argument("--summary-json", metavar="FILE", help="also write the summary as JSON")
    parser.add_argument("--namespace", default="depth_ft", help="namespace of the node's outputs (depth_ft)")
    parser.add_argument("--domain-id", type=_domain_id, metavar="N",
                        help="ROS domain of the replay (default: a private one, localhost only, so no other ROS "
                             "traffic mixes in); --domain-id $ROS_DOMAIN_ID to watch it live in RViz")
    parser.add_argument("--frame-timeout", type=float, default=300.0, metavar="S",
                        help="lossless: give up when a frame has no output after S seconds (default 300)")


def options_from_args(args: argparse.Namespace) -> ReplayOptions:
    return ReplayOptions(
        in_bag=Path(args.in_bag), out_bag=Path(args.out),
        params_file=Path(args.params) if args.params else None,
        depth_model=args.depth_model, normals_model=args.normals_model, params=parse_param_overrides(args.param),
        lossless=args.lossless, rate=args.rate, image_topic=args.image_topic,
        camera_info_topic=args.camera_info_topic, sparse_points_topic=args.sparse_points_topic,
        gt_depth_topic=args.gt_depth_topic, preview_dir=Path(args.preview) if args.preview else None,
        namespace=args.namespace, domain_id=args.domain_id, frame_timeout_s=args.frame_timeout,
    )


def _install_stop_handlers(stop: threading.Event) -> dict[int, Any]:
    """Ctrl-C (and SIGTERM, from `timeout`, systemd, CI) ask the replay to stop between two messages, so the
    output bag is always finished whole; a second one aborts at once. Returns the previous handlers."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def on_signal(signum: int, _frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print(f"\nreplay: {signal.Signals(signum).name}: finishing the output bag (again to abort)", file=sys.stderr)

    return {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}


def run(args: argparse.Namespace) -> int:
    try:
        options = options_from_args(args)
    except DepthFtError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    return replay_and_report(options, Path(args.summary_json) if args.summary_json else None)


def replay_and_report(options: ReplayOptions, summary_json: Path | None = None) -> int:
    """Run the replay with Ctrl-C handling, print the summary; exit code 0, 2 (error) or 130 (interrupted)."""
    stop = threading.Event()
    previous = _install_stop_handlers(stop)
    try:
        summary = Replay(options).run(stop)
    except DepthFtError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(summary.format())
    if options.preview_dir:
        print(f"  previews: {options.preview_dir}")
    if summary_json is not None:
        summary.write_json(summary_json)
    return 130 if summary.interrupted else 0
