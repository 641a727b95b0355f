"""`depth-ft-ros bench-node --cameras N`: N cameras served by one node, batched vs one frame per forward.

Runs the real depth_ft_node in-process over rclpy with `cameras` = cam0..camN-1 (one shared LiDAR), every
camera's depth/image subscribed from another process. Each step publishes one frame per camera (stamps 1 ms
apart, as unsynchronized cameras) and waits for all N outputs. Per mode: the wall time of a step (N frames),
the throughput, and per frame the network's share and the time outside the network. "batched": frames of
one step share a forward (batch_window 50 ms, max_batch 0); "sequential": max_batch 1.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time

import numpy as np

from depth_ft_ros.bench.harness import OUTSIDE_NETWORK
from depth_ft_ros.enums import Device
from depth_ft_ros.errors import DepthFtError
from depth_ft_ros.node.middleware import PUBLICATION_MODE_VAR

MODES = {"batched": {"max_batch": 0, "batch_window": 50.0}, "sequential": {"max_batch": 1, "batch_window": 0.0}}


def run_mode(args: argparse.Namespace, n_cameras: int, mode: str, depth_model: str,
             normals_model: str) -> dict[str, float]:
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    from depth_ft_ros.bench.harness import running_node, subscribe_outputs
    from depth_ft_ros.bench.scene import header as _header
    from depth_ft_ros.bench.scene import scene as _scene
    from depth_ft_ros.msgs import convert
    from depth_ft_ros.replay.replay import parse_param_overrides

    rgb, camera, points = _scene(args.width, args.height, args.lidar_lines)
    cloud = np.zeros(len(points), dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    for i, axis in enumerate("xyz"):
        cloud[axis] = points[:, i]
    cameras = [f"cam{i}" for i in range(n_cameras)]
    os.environ[PUBLICATION_MODE_VAR] = args.publication_mode
    params = {"depth_model": depth_model, "normals_model": normals_model, "device": "cpu", "cameras": cameras,
              "processing_resolution": args.processing_resolution or 0, "alignment": "global", "use_tf": False,
              "alignment_fit": args.alignment_fit or ("scale_shift" if args.depth_model else "scale"),
              "min_depth": 0.1, "max_depth": 20.0, "sync_wait": 1.0, **MODES[mode],
              **parse_param_overrides(args.param)}
    with running_node(params, "bench_cameras_probe") as (node, probe):
        images = [probe.create_publisher(Image, f"{c}/image", 10) for c in cameras]
        infos = [probe.create_publisher(CameraInfo, f"{c}/camera_info", 10) for c in cameras]
        lidar = probe.create_publisher(PointCloud2, "sparse_points", 10)
        mp = multiprocessing.get_context("spawn")
        received, stop_sub = mp.Value("i", 0), mp.Event()
        depth_topics = [f"{c}/depth/image" for c in cameras]
        subscriber = mp.Process(target=subscribe_outputs, args=([(t, "Image") for t in depth_topics], depth_topics,
                                                                received, stop_sub), daemon=True)
        subscriber.start()
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline and not (
                all(p.get_subscription_count() for p in [*images, *infos, lidar])
                and all(probe.count_subscribers(f"{c}/depth/image") for c in cameras)):
            time.sleep(0.01)
        step_s: list[float] = []
        for i in range(args.frames + 2):  # 2 warm-up steps
            base_ns = 1_700_000_000_000_000_000 + i * 100_000_000
            start_s = time.perf_counter()
            lidar.publish(convert.structured_to_pointcloud2(cloud, _header(base_ns), is_dense=True))
            for k in range(n_cameras):
                header = _header(base_ns + k * 1_000_000)
                header.frame_id = f"{cameras[k]}_optical_frame"
                infos[k].publish(convert.camera_to_camera_info(camera, header))
                images[k].publish(convert.array_to_image(rgb, "rgb8", header))
            deadline = time.monotonic() + 120.0
            while received.value < (i + 1) * n_cameras and time.monotonic() < deadline:
                time.sleep(0.002)
            if received.value < (i + 1) * n_cameras:
                raise RuntimeError(f"step {i}: {received.value} outputs of {(i + 1) * n_cameras}")
            step_s.append(time.perf_counter() - start_s)
        stop_sub.set()
        subscriber.join(timeout=10.0)
        frames = [f for s in node.streams for f in list(s.stats.recent_stages_ms)[2:]]
        step_ms = float(np.median(step_s[2:])) * 1e3
        return {"step_ms": step_ms, "frames_per_s": n_cameras / step_ms * 1e3,
                "network_ms": float(np.median([sum(v for k, v in f.items() if k.endswith(".total"))
                                               for f in frames])),
                "outside_ms": float(np.median([sum(f.get(s, 0.0) for s in OUTSIDE_NETWORK) for f in frames]))}


def forward_table(args: argparse.Namespace, depth_model: str, normals_model: str, reps: int = 5) -> None:
    """The networks alone (Models.predict, depth + normals): N frames as one batch vs one at a time, the two
    interleaved in one run so that the machine's drift hits both alike."""
    from depth_ft_ros.bench.scene import scene
    from depth_ft_ros.config import NodeConfig
    from depth_ft_ros.model.networks import Models

    rgb, _, _ = scene(args.width, args.height, args.lidar_lines)
    config = NodeConfig(depth_model=depth_model, normals_model=normals_model, device=Device.CPU,
                        processing_resolution=args.processing_resolution or 0).validate()
    models = Models.load(config)
    try:
        print(f"forward only (depth + normals, shared encoder {models.shared_encoder}), median of {reps}:")
        print(f"{'frames':>8}{'batched':>12}{'one at a time':>16}{'batched / one at a time':>26}")
        for n in range(1, args.cameras + 1):
            frames = [rgb.copy() for _ in range(n)]
            times: dict[int, list[float]] = {0: [], 1: []}
            models.predict(frames, [True] * n)  # warm-up
            for _ in range(reps):
                for max_batch in (0, 1):
                    start = time.perf_counter()
                    models.predict(frames, [True] * n, max_batch=max_batch)
                    times[max_batch].append(time.perf_counter() - start)
            batched, single = (float(np.median(times[k])) * 1e3 for k in (0, 1))
            print(f"{n:>8}{batched:>9.0f} ms{single:>13.0f} ms{batched / single:>26.2f}")
    finally:
        models.close()


def run(args: argparse.Namespace, depth_model: str, normals_model: str) -> int:
    import platform

    import torch

    print(f"bench-node --cameras: {args.width}x{args.height} per camera, {args.frames} steps, processing "
          f"resolution {args.processing_resolution or 'native'}, {args.lidar_lines}-line LiDAR shared; "
          f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads")
    print(f"{'cameras':>8}{'mode':>12}{'step (N frames)':>18}{'frames/s':>10}{'network/frame':>15}"
          f"{'outside/frame':>15}")
    for n in range(1, args.cameras + 1):
        for mode in MODES:
            try:
                r = run_mode(args, n, mode, depth_model, normals_model)
            except DepthFtError as exc:
                print(f"bench-node: {exc}")
                return 2
            print(f"{n:>8}{mode:>12}{r['step_ms']:>15.0f} ms{r['frames_per_s']:>10.2f}{r['network_ms']:>12.0f} ms"
                  f"{r['outside_ms']:>12.1f} ms")
    print("median per step / frame; network = depth + normals predictor totals, a batch's split evenly between its "
          "frames; tiny random checkpoints unless given")
    forward_table(args, depth_model, normals_model)
    return 0
