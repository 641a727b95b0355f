"""`depth-ft-ros fleet BAG_OR_GLOB ... --out DIR`: parses the flags and runs depth_ft_ros.fleet.run.run_fleet.

Model, parameter and topic flags are those of `replay` (depth_ft_ros/cli/replay.py); exit code 0 when every bag
is done (now or by an earlier run), 1 when some failed (named on stderr and in DIR/fleet_run.json), 2 when the
flags are wrong, 130 when interrupted (a re-run resumes).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from depth_ft_ros.errors import DepthFtError
from depth_ft_ros.fleet.engine import EngineOptions
from depth_ft_ros.fleet.run import RUN_SUMMARY, run_fleet
from depth_ft_ros.fleet.settings import ALL_OUTPUTS, DEFAULT_OUTPUTS, build_settings
from depth_ft_ros.replay.replay import parse_param_overrides
from depth_ft_ros.replay.topics import NONE, TopicFlags


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="BAG_OR_GLOB",
                        help="rosbag2 folders, .mcap/.db3 files, folders holding bags, globs (quote them) or "
                             "s3://bucket/prefix URIs")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output folder or s3:// URI: DIR/<bag>/{bag,frames.parquet,manifest.json}, "
                             f"DIR/{RUN_SUMMARY}")
    parser.add_argument("--params", metavar="FILE", help="node parameters YAML (e.g. config/depth_ft.yaml)")
    parser.add_argument("--depth-model", metavar="M", help="depth checkpoint: local folder or Hugging Face id")
    parser.add_argument("--normals-model", metavar="M", help="normals checkpoint: local folder or Hugging Face id")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="any node parameter, value in YAML (e.g. processing_resolution=256); repeatable")
    parser.add_argument("--image-topic", metavar="T", help="camera image (one camera; guessed when not given)")
    parser.add_argument("--camera-info-topic", metavar="T", help="CameraInfo of the image (one camera)")
    parser.add_argument("--sparse-points-topic", metavar="T", help=f"metric points (PointCloud2), or {NONE}")
    parser.add_argument("--gt-depth-topic", metavar="T", help=f"ground-truth depth (Image 32FC1/16UC1), or {NONE}")
    parser.add_argument("--outputs", nargs="+", metavar="TOPIC",
                        help=f"output topics to write (default {' '.join(DEFAULT_OUTPUTS)}; any of "
                             f"{' '.join(ALL_OUTPUTS)})")
    parser.add_argument("--namespace", default="depth_ft", help="namespace of the output topics (depth_ft)")
    parser.add_argument("--address", default="local", metavar="A",
                        help="local (a Ray instance on this machine; this process alone when Ray is not "
                             "installed), auto (the cluster this machine belongs to), ray://HOST:10001 (Ray "
                             "client), or none (this process, no Ray)")
    parser.add_argument("--workers", type=int, default=0, metavar="N",
                        help="model actors (0: one per GPU of the cluster, else one per --cpus-per-worker CPUs)")
    parser.add_argument("--cpus-per-worker", type=float, default=1.0, metavar="C", help="CPUs per actor (1)")
    parser.add_argument("--gpus-per-worker", type=float, default=-1.0, metavar="G",
                        help="GPUs per actor (default 1 where the cluster has GPUs, else 0; 0.5 puts two per GPU)")


def run(args: argparse.Namespace) -> int:
    try:
        settings = build_settings(Path(args.params) if args.params else None, args.depth_model,
                                  args.normals_model, parse_param_overrides(args.param),
                                  TopicFlags(args.image_topic, args.camera_info_topic, args.sparse_points_topic,
                                             args.gt_depth_topic), args.outputs, args.namespace)
        if args.workers < 0 or args.cpus_per_worker <= 0:
            raise DepthFtError("--workers must be >= 0 and --cpus-per-worker > 0")
        engine = EngineOptions(args.address, args.workers, args.cpus_per_worker, args.gpus_per_worker)
        result = run_fleet(args.inputs, args.out, settings, engine)
    except (DepthFtError, ImportError) as exc:
        print(f"fleet: {exc}", file=sys.stderr)
        return 2
    counts = {s: len(result.by_status(s)) for s in ("done", "skipped", "failed")}
    print(f"fleet: {counts['done']} bag(s) done, {counts['skipped']} skipped, {counts['failed']} failed in "
          f"{result.wall_s:.1f} s ({result.engine or 'nothing to run'}); summary: {args.out.rstrip('/')}/"
          f"{RUN_SUMMARY}")
    for failed in result.by_status("failed"):
        print(f"  failed: {failed.uri}: {failed.reason}", file=sys.stderr)
    return result.exit_code
