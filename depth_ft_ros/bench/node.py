"""`depth-ft-ros bench-node`: per-frame time the node spends outside the network forward.

Runs the real depth_ft_node in-process over rclpy with every output subscribed (so every output is computed and
published), feeds it a 640x480 frame made from the Middlebury image with a simulated LiDAR, one frame at a time,
and prints the median of each stage: image/camera_info conversion, point-cloud decoding and transform, alignment,
cloud building, message building and publishing; then the network stages for comparison.
With --overload FACTOR: the node's output rate under an input flood instead (depth_ft_ros.bench.overload).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from depth_ft_ros.bench import overload as bench_overload
from depth_ft_ros.bench import scene as bench_scene
from depth_ft_ros.bench.harness import OUTSIDE_NETWORK
from depth_ft_ros.errors import DepthFtError
from depth_ft_ros.msgs import names
from depth_ft_ros.node.middleware import NODE_PUBLICATION_MODE, PUBLICATION_MODE_VAR, PUBLICATION_MODES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--depth-model", default="", help="checkpoint (default: a tiny e2e-ft-depth model)")
    parser.add_argument("--normals-model", default="", help="checkpoint (default: a tiny e2e-ft-normals model)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--alignment", nargs="+", default=["global", "local"], choices=["global", "local"])
    parser.add_argument("--lidar-lines", type=int, default=32)
    parser.add_argument("--processing-resolution", type=int, default=None,
                        help="0 = native (the default here; with --overload: the node's default)")
    parser.add_argument("--outputs", nargs="+", default=["all"],
                        help="output topics the (separate-process) subscriber takes, or `all`; e.g. depth/image "
                        "depth/camera_info points (outputs nobody takes are not computed)")
    parser.add_argument("--cloud-normals", action=argparse.BooleanOptionalAction, default=True,
                        help="normal_x/y/z in `points`")
    parser.add_argument("--cloud-stride", type=int, default=1, help="keep every n-th pixel in `points`")
    parser.add_argument("--publication-mode", default=NODE_PUBLICATION_MODE, choices=PUBLICATION_MODES,
                        help=f"Fast DDS publication mode ({PUBLICATION_MODE_VAR}); default: what depth_ft_node uses "
                        "unless told otherwise")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="any node parameter, value in YAML (e.g. cloud_min_confidence=0.0); repeatable")
    parser.add_argument("--cameras", type=int, default=0, metavar="N",
                        help="serve 1..N cameras from one node (`cameras` parameter): per-frame cost and throughput, "
                        "frames batched in one forward vs one frame per forward (bench_cameras.py)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"],
                        help="the node's device parameter (default cpu: the numbers in BENCHMARKS \"Node\")")
    parser.add_argument("--alignment-fit", default=None, choices=["scale_shift", "scale"],
                        help="default: scale for the tiny random checkpoints (their output does not follow depth), "
                        "else scale_shift")
    bench_overload.add_arguments(parser)


@dataclass
class NodeRun:
    frames: list[dict[str, float]]  # stage times (ms) of each frame after the warm-up
    used: str  # what the last frame's alignment used
    latency_ms: list[float]  # publication of the inputs -> the last subscribed output received, per frame
    wall_s: float  # the timed frames, first publication to last output
    cpu_s: float  # this process's CPU time over them (the node and its executor; the subscriber is another)
    gpu_peak_mib: float  # torch's CUDA allocator peak over the run (NaN without CUDA)


def _run_one(args: argparse.Namespace, alignment: str, depth_model: str, normals_model: str) -> NodeRun:
    """Frames through the real node, one at a time, after 2 warm-up frames."""
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    from depth_ft_ros.bench.harness import running_node, subscribe_outputs
    from depth_ft_ros.msgs import convert
    from depth_ft_ros.replay.replay import parse_param_overrides

    rgb, camera, points = bench_scene.scene(args.width, args.height, args.lidar_lines)
    cloud = np.zeros(len(points), dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    for i, axis in enumerate("xyz"):
        cloud[axis] = points[:, i]
    os.environ[PUBLICATION_MODE_VAR] = args.publication_mode  # read when rclpy.init creates the participant
    params = {"depth_model": depth_model, "normals_model": normals_model, "device": args.device,
              "processing_resolution": args.processing_resolution or 0, "alignment": alignment, "use_tf": False,
              "alignment_fit": args.alignment_fit or ("scale_shift" if args.depth_model else "scale"),
              "min_depth": 0.1, "max_depth": 20.0, "sync_wait": 1.0, "cloud_normals": args.cloud_normals,
              "cloud_stride": args.cloud_stride, **parse_param_overrides(args.param)}
    with running_node(params, "bench_probe") as (node, probe):
        pubs = {"image": probe.create_publisher(Image, "image", 10),
                "camera_info": probe.create_publisher(CameraInfo, "camera_info", 10),
                "sparse_points": probe.create_publisher(PointCloud2, "sparse_points", 10)}
        # Output subscribers in another process, as RViz and planners are on a robot.
        mp = multiprocessing.get_context("spawn")
        received, stop_sub = mp.Value("i", 0), mp.Event()
        topics = list(OUTPUT_TOPICS) if args.outputs == ["all"] else args.outputs
        subscriber = mp.Process(target=subscribe_outputs, args=([(t, OUTPUT_TOPICS[t]) for t in topics], topics[-1:],
                                                                 received, stop_sub), daemon=True)
        subscriber.start()
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline and not (all(p.get_subscription_count() for p in pubs.values())
                                                   and probe.count_subscribers(topics[-1]) > 0):
            time.sleep(0.01)
        latency_ms: list[float] = []
        cpu0 = wall0 = 0.0
        for i in range(args.frames + 2):  # 2 warm-up frames
            if i == 2:
                cpu0, wall0 = time.process_time(), time.perf_counter()
                _reset_gpu_peak()
            sent = time.perf_counter()
            stamp_ns = 1_700_000_000_000_000_000 + i * 100_000_000
            header = bench_scene.header(stamp_ns)
            pubs["camera_info"].publish(convert.camera_to_camera_info(camera, header))
            pubs["sparse_points"].publish(convert.structured_to_pointcloud2(cloud, header, is_dense=True))
            pubs["image"].publish(convert.array_to_image(rgb, "rgb8", header))
            deadline = time.monotonic() + 60.0
            while received.value <= i and time.monotonic() < deadline:
                time.sleep(0.002)
            if received.value <= i:
                raise RuntimeError(f"no output for frame {i}: {node.stats.snapshot()}")
            if i >= 2:
                latency_ms.append((time.perf_counter() - sent) * 1e3)
        cpu_s, wall_s = time.process_time() - cpu0, time.perf_counter() - wall0
        stop_sub.set()
        subscriber.join(timeout=10.0)
        used = node.last_alignment.get("alignment.method", "-")
        if "alignment.heldout_ratio" in node.last_alignment:
            used += f" (held-out {node.last_alignment['alignment.heldout_ratio']})"
        return NodeRun(list(node.stats.recent_stages_ms)[2:], used, latency_ms, wall_s, cpu_s, _gpu_peak_mib())


def _reset_gpu_peak() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def _gpu_peak_mib() -> float:
    import torch

    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else float("nan")


def end_to_end(depth_model: str, normals_model: str, *, device: str, processing_resolution: int, frames: int,
               alignment_fit: str, width: int = 640, height: int = 480) -> dict[str, float]:
    """The node with the defaults of BENCHMARKS "Node" (depth/image + camera_info + points, xyz rgb, local
    alignment) on `device`: latency p50/p90, outputs/s, CPU time per output, GPU memory peak, outside-network
    median (for gpu_check)."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--outputs", "depth/image", "depth/camera_info", "points", "--no-cloud-normals"])
    args.device, args.processing_resolution, args.frames = device, processing_resolution, frames
    args.alignment_fit, args.width, args.height = alignment_fit, width, height
    run = _run_one(args, "local", depth_model, normals_model)
    outside = [sum(f.get(s, 0.0) for s in OUTSIDE_NETWORK) for f in run.frames]
    n = len(run.latency_ms)
    return {"latency_p50_ms": round(float(np.percentile(run.latency_ms, 50)), 1),
            "latency_p90_ms": round(float(np.percentile(run.latency_ms, 90)), 1),
            "outputs_per_s": round(n / run.wall_s, 2), "cpu_ms_per_output": round(run.cpu_s / n * 1e3, 1),
            "outside_network_ms": round(float(np.median(outside)), 2), "gpu_peak_mib": round(run.gpu_peak_mib, 0),
            "frames": float(n)}


OUTPUT_TOPICS = {names.DEPTH_IMAGE: "Image", names.DEPTH_CAMERA_INFO: "CameraInfo", names.DEPTH_RELATIVE: "Image",
                 names.DEPTH_COLORIZED: "Image", names.NORMALS_IMAGE: "Image",
                 names.NORMALS_CAMERA_INFO: "CameraInfo", names.NORMALS_COLORIZED: "Image",
                 names.POINTS: "PointCloud2"}


def run(args: argparse.Namespace) -> int:
    if args.overload:
        return bench_overload.run_overload(args)
    import platform

    import torch

    from depth_ft_ros.evaluation.tiny import make_tiny_model
    from depth_ft_ros.frame.stats import stage_medians_ms

    with tempfile.TemporaryDirectory() as tmp:
        depth_model = args.depth_model or str(make_tiny_model(Path(tmp) / "depth", "e2e-ft-depth"))
        normals_model = args.normals_model or str(make_tiny_model(Path(tmp) / "normals", "e2e-ft-normals"))
        if args.cameras:
            from depth_ft_ros.bench import cameras as bench_cameras

            return bench_cameras.run(args, depth_model, normals_model)
        print(f"bench-node: {args.width}x{args.height}, {args.frames} frames, {args.lidar_lines}-line LiDAR, "
              f"outputs subscribed in another process: {' '.join(args.outputs)}; cloud normals "
              f"{'on' if args.cloud_normals else 'off'}, stride {args.cloud_stride}; Fast DDS publication "
              f"{args.publication_mode}; {platform.processor() or platform.machine()}, "
              f"{torch.get_num_threads()} torch threads, torch {torch.__version__}")
        print(f"{'alignment':10}{'outside network':>17}" + "".join(f"{s:>16}" for s in OUTSIDE_NETWORK)
              + f"{'network':>10}")
        for alignment in args.alignment:
            try:
                result = _run_one(args, alignment, depth_model, normals_model)
                frames, used = result.frames, result.used
            except DepthFtError as exc:
                print(f"bench-node: {exc}", file=sys.stderr)
                return 2
            outside = [sum(f.get(s, 0.0) for s in OUTSIDE_NETWORK) for f in frames]
            network = [sum(v for k, v in f.items() if k.endswith(".total")) for f in frames]
            medians = stage_medians_ms(frames)
            print(f"{alignment:10}{np.median(outside):>14.2f} ms" +
                  "".join(f"{medians.get(s, float('nan')):>13.2f} ms" for s in OUTSIDE_NETWORK) +
                  f"{np.median(network):>7.0f} ms   used: {used}")
    print("median per frame; 'network' = depth + normals predictor totals (tiny random checkpoints unless given)")
    return 0
