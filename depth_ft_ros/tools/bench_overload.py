"""`depth-ft-ros bench-node --overload FACTOR`: the node's output rate under an input flood, measured from outside.

The real `depth_ft_node` runs as its own process (`python -m depth_ft_ros.ros.node --ros-args --params-file ...`,
tiny checkpoint, the node's default processing size); a separate client process plays the camera and the LiDAR
and subscribes to depth/image (raw bytes: the client's own receive costs no deserialization) and /diagnostics.
1. Relaxed: one frame (640x480 rgb8 + camera_info + simulated LiDAR points, one stamp), wait for its depth
   image, next. The interval between outputs is the node's processing time plus the round trip.
2. Overloaded: frames at FACTOR x the relaxed output rate for a fixed time, as a fast camera sends them
   whatever the node can take. A node whose input handling costs little keeps its relaxed output rate; one
   whose callbacks compete with the network for the CPU slows down.
Prints median / p90 output interval and latency (image publish -> depth arrival) of both phases, the ratio of
the output rates, and the node's drop counters over the flood (from its /diagnostics).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from depth_ft_ros.core.errors import DepthFtError

NODE_NAME = "depth_ft_node"
T0_NS = 1_700_000_000_000_000_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--overload", type=float, default=0.0, metavar="FACTOR",
                        help="instead of the per-stage times: run the node as its own process and measure its output "
                        "rate relaxed vs with inputs at FACTOR x its relaxed rate (e.g. 4)")
    parser.add_argument("--overload-seconds", type=float, default=20.0, help="length of the flood, s")


def _percentiles_ms(values_s: list[float]) -> tuple[float, float]:
    if not values_s:
        return float("nan"), float("nan")
    arr = np.asarray(values_s) * 1e3
    return float(np.median(arr)), float(np.percentile(arr, 90))


def process_cpu_s(pid: int) -> float:
    """CPU time (user + system, all threads) a process has used so far, from /proc (Linux); NaN elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14, 15)


def _client(spec: dict[str, Any], results: Any) -> None:
    """Child process: the camera, the LiDAR and the consumer of depth/image."""
    try:
        results.put(_client_run(spec))
    except BaseException as exc:  # reported in the parent, which prints the node's log too
        results.put({"error": f"{type(exc).__name__}: {exc}"})


def _client_run(spec: dict[str, Any]) -> dict[str, Any]:
    import threading

    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    from depth_ft_ros.ros import convert
    from depth_ft_ros.ros.serialized import read_stamp_ns
    from depth_ft_ros.tools.bench_node import _header, _scene

    rgb, camera, points = _scene(spec["width"], spec["height"], max(spec["lidar_lines"], 1))
    rclpy.init()
    node = rclpy.create_node("overload_client")
    qos = QoSProfile(depth=5)  # reliable, keep last 5: what camera drivers publish by default
    image_pub = node.create_publisher(Image, "image", qos)
    info_pub = node.create_publisher(CameraInfo, "camera_info", qos)
    points_pub = node.create_publisher(PointCloud2, "sparse_points", qos) if spec["lidar_lines"] > 0 else None
    image = convert.array_to_image(rgb, "rgb8", _header(T0_NS))
    info = convert.camera_to_camera_info(camera, _header(T0_NS))
    cloud = None
    if points_pub is not None:
        structured = np.zeros(len(points), dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
        for i, axis in enumerate("xyz"):
            structured[axis] = points[:, i]
        cloud = convert.structured_to_pointcloud2(structured, _header(T0_NS), is_dense=True)

    lock = threading.Lock()
    outputs: list[tuple[float, int]] = []  # (arrival monotonic s, stamp ns)
    diagnostics: list[tuple[float, dict[str, str]]] = []

    def on_depth(data: bytes) -> None:
        arrival_s = time.monotonic()
        with lock:
            outputs.append((arrival_s, read_stamp_ns(data, "depth/image")))

    def on_diagnostics(msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith(f"/{NODE_NAME}:"):
                with lock:
                    diagnostics.append((time.monotonic(), {kv.key: kv.value for kv in status.values}))

    node.create_subscription(Image, "depth/image", on_depth, qos, raw=True)
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.02)

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    published: dict[int, float] = {}  # stamp ns -> publish monotonic s

    def publish(index: int) -> int:
        stamp_ns = T0_NS + index * 1_000_000  # distinct, increasing stamps
        sec, nanosec = divmod(stamp_ns, 1_000_000_000)
        for msg in (info, cloud, image):
            if msg is not None:
                msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nanosec
        info_pub.publish(info)
        if points_pub is not None:
            points_pub.publish(cloud)
        published[stamp_ns] = time.monotonic()
        image_pub.publish(image)
        return stamp_ns

    def wait_output(stamp_ns: int, timeout_s: float) -> float | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with lock:
                hit = next((t for t, s in reversed(outputs) if s == stamp_ns), None)
            if hit is not None:
                return hit
            time.sleep(0.001)
        return None

    try:
        deadline = time.monotonic() + 120.0  # the node loads its model first
        pubs = [p for p in (image_pub, info_pub, points_pub) if p is not None]
        while time.monotonic() < deadline and not (all(p.get_subscription_count() > 0 for p in pubs)
                                                   and node.count_publishers("depth/image") > 0):
            time.sleep(0.05)
        if not all(p.get_subscription_count() > 0 for p in pubs):
            raise DepthFtError("the node did not subscribe to image, camera_info and sparse_points within 120 s "
                               "(see its log)")
        index = 0
        arrived: float | None = None
        while arrived is None and time.monotonic() < deadline + 60.0:  # the first output: the graph is up
            arrived = wait_output(publish(index), 10.0)
            index += 1
        if arrived is None:
            raise DepthFtError("no depth/image from the node within 180 s (see its log)")
        relaxed: list[float] = []
        cpu_relaxed_s = relaxed_start_s = 0.0
        for i in range(spec["warmup"] + spec["frames"]):
            if i == spec["warmup"]:
                cpu_relaxed_s, relaxed_start_s = process_cpu_s(spec["node_pid"]), time.monotonic()
            stamp_ns = publish(index)
            index += 1
            arrived = wait_output(stamp_ns, 30.0)
            if arrived is None:
                raise DepthFtError(f"no depth/image for relaxed frame {i} within 30 s (see the node's log)")
            if i >= spec["warmup"]:
                relaxed.append(arrived)
        cpu_relaxed_s = process_cpu_s(spec["node_pid"]) - cpu_relaxed_s
        relaxed_intervals = list(np.diff(relaxed))
        relaxed_latency = [t - published[s] for t, s in outputs[-spec["frames"]:]]
        period_s = float(np.median(relaxed_intervals)) / spec["factor"]
        time.sleep(1.5 * spec["diagnostics_period"])
        with lock:
            before = diagnostics[-1][1] if diagnostics else {}
            first_output = len(outputs)
        cpu_flood_s = process_cpu_s(spec["node_pid"])
        start_s = time.monotonic()
        sent = 0
        while time.monotonic() - start_s < spec["seconds"]:
            publish(index)
            index += 1
            sent += 1
            next_s = start_s + sent * period_s
            time.sleep(max(0.0, next_s - time.monotonic()))
        end_s = time.monotonic()
        cpu_flood_s = process_cpu_s(spec["node_pid"]) - cpu_flood_s
        time.sleep(max(2.0 * float(np.median(relaxed_intervals)), 0.5))  # the frame in hand finishes
        time.sleep(1.5 * spec["diagnostics_period"])
        with lock:
            flood = [(t, s) for t, s in outputs[first_output:] if t <= end_s + 1e-3]
            after = diagnostics[-1][1] if diagnostics else {}
        flood_times = [t for t, _ in flood]
        return {"relaxed_intervals_s": relaxed_intervals, "relaxed_latency_s": relaxed_latency,
                "flood_intervals_s": list(np.diff(flood_times)),
                "flood_latency_s": [t - published[s] for t, s in flood],
                "flood_seconds": end_s - start_s, "flood_sent": sent, "flood_outputs": len(flood),
                "input_period_s": period_s, "diagnostics_before": before, "diagnostics_after": after,
                "node_cpu_relaxed_s": cpu_relaxed_s, "relaxed_seconds": relaxed[-1] - relaxed_start_s,
                "node_cpu_flood_s": cpu_flood_s}
    finally:
        stop.set()
        spinner.join(timeout=5.0)
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()


def _isolate() -> int:
    """A ROS domain of its own (from the pid) and localhost-only discovery, for the node and the client."""
    from depth_ft_ros.ros.isolation import localhost_only_discovery

    domain = 1 + os.getpid() % 100
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    localhost_only_discovery()
    return domain


def _stop_node(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)  # the node's own shutdown path
    try:
        proc.wait(timeout=20.0)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10.0)


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _drops(before: dict[str, str], after: dict[str, str]) -> dict[str, int]:
    keys = sorted({k for k in after if k.startswith("dropped.")} | {"frames_in", "frames_out"})
    return {k: int(after.get(k, "0")) - int(before.get(k, "0")) for k in keys}


def run_overload(args: argparse.Namespace) -> int:
    import platform

    from depth_ft_ros.evaluation.tiny import make_tiny_model
    from depth_ft_ros.ros.replay import parse_param_overrides

    if args.overload <= 0 or args.overload_seconds <= 0:
        print("bench-node: --overload FACTOR and --overload-seconds must be > 0", file=sys.stderr)
        return 2
    try:
        overrides = parse_param_overrides(args.param)
    except DepthFtError as exc:
        print(f"bench-node: {exc}", file=sys.stderr)
        return 2
    domain = _isolate()
    with tempfile.TemporaryDirectory() as tmp:
        depth_model = args.depth_model or str(make_tiny_model(Path(tmp) / "depth", "e2e-ft-depth"))
        params: dict[str, Any] = {
            "depth_model": depth_model, "normals_model": args.normals_model, "device": "cpu", "use_tf": False,
            "alignment": args.alignment[0], "alignment_fit": args.alignment_fit or ("scale_shift" if args.depth_model
                                                                                    else "scale"),
            "min_depth": 0.1, "max_depth": 20.0,
            "sparse_input": "points" if args.lidar_lines > 0 else "none"}
        if args.processing_resolution is not None:
            params["processing_resolution"] = args.processing_resolution
        params.update(overrides)
        params_file = Path(tmp) / "params.yaml"
        params_file.write_text(yaml.safe_dump({"/**": {"ros__parameters": params}}))
        log_path = Path(tmp) / "node.log"
        spec = {"width": args.width, "height": args.height, "lidar_lines": args.lidar_lines, "frames": args.frames,
                "warmup": 3, "factor": args.overload, "seconds": args.overload_seconds,
                "diagnostics_period": float(params.get("diagnostics_period", 1.0))}
        shown = {k: v for k, v in params.items() if k not in ("depth_model", "normals_model")}
        print(f"bench-node --overload {args.overload:g}: node and client in separate processes (ROS domain "
              f"{domain}); {args.width}x{args.height} rgb8 + camera_info"
              f"{f' + {args.lidar_lines}-line LiDAR' if args.lidar_lines > 0 else ''}; model "
              f"{args.depth_model or 'tiny e2e-ft-depth'}; {platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} cores; node parameters {shown}", flush=True)
        # A terminated bench stops its node too (the finally below), instead of leaving it running.
        previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        with open(log_path, "wb") as log:
            node = subprocess.Popen([sys.executable, "-m", "depth_ft_ros.ros.node", "--ros-args", "--params-file",
                                     str(params_file)], stdout=log, stderr=subprocess.STDOUT)
            spec["node_pid"] = node.pid
            try:
                result = _run_client(spec, node)
            finally:
                _stop_node(node)
                signal.signal(signal.SIGTERM, previous)
        if "error" in result:
            print(f"bench-node: {result['error']}\n--- node log ---\n{log_path.read_text(errors='replace')[-4000:]}",
                  file=sys.stderr)
            return 1
    _report(result, args.overload)
    return 0


def _run_client(spec: dict[str, Any], node: subprocess.Popen[bytes]) -> dict[str, Any]:
    mp = multiprocessing.get_context("spawn")
    results = mp.Queue()
    client = mp.Process(target=_client, args=(spec, results), daemon=True)
    client.start()
    timeout_s = 300.0 + spec["seconds"] + 60.0 * spec["frames"]
    deadline = time.monotonic() + timeout_s
    result: dict[str, Any] | None = None
    while result is None and time.monotonic() < deadline:
        try:
            result = results.get(timeout=0.5)
        except Exception:  # queue.Empty
            if node.poll() is not None:
                result = {"error": f"the node exited with code {node.returncode}"}
            elif not client.is_alive():
                result = {"error": f"the client exited with code {client.exitcode}"}
    client.join(timeout=10.0)
    if client.is_alive():
        client.terminate()
    return result if result is not None else {"error": f"no result within {timeout_s:.0f} s"}


def _report(result: dict[str, Any], factor: float) -> None:
    rows = [("relaxed", result["relaxed_intervals_s"], result["relaxed_latency_s"], len(result["relaxed_latency_s"]),
             len(result["relaxed_latency_s"])),
            (f"overload x{factor:g}", result["flood_intervals_s"], result["flood_latency_s"], result["flood_sent"],
             result["flood_outputs"])]
    print(f"{'phase':14}{'images in':>10}{'outputs':>9}{'interval p50':>14}{'p90':>9}{'rate':>10}"
          f"{'latency p50':>13}{'p90':>9}")
    rates = []
    for name, intervals, latency, sent, received in rows:
        i50, i90 = _percentiles_ms(intervals)
        l50, l90 = _percentiles_ms(latency)
        rates.append(1e3 / i50 if i50 == i50 else float("nan"))
        print(f"{name:14}{sent:>10}{received:>9}{i50:>11.0f} ms{i90:>6.0f} ms{rates[-1]:>7.2f} Hz{l50:>10.0f} ms"
              f"{l90:>6.0f} ms")
    print(f"input period during the flood: {result['input_period_s'] * 1e3:.0f} ms over "
          f"{result['flood_seconds']:.1f} s; output rate overloaded / relaxed: {rates[1] / rates[0]:.2f}")
    relaxed_frames = max(len(result["relaxed_latency_s"]), 1)
    relaxed_cpu_ms = result["node_cpu_relaxed_s"] * 1e3 / relaxed_frames
    flood_cpu_ms = result["node_cpu_flood_s"] * 1e3 / max(result["flood_outputs"], 1)
    print(f"node CPU time (all its threads): relaxed {relaxed_cpu_ms:.0f} ms per output "
          f"({result['node_cpu_relaxed_s'] / max(result['relaxed_seconds'], 1e-9):.2f} cores busy); flood "
          f"{flood_cpu_ms:.0f} ms per output ({result['node_cpu_flood_s'] / result['flood_seconds']:.2f} cores busy)")
    drops = _drops(result["diagnostics_before"], result["diagnostics_after"])
    if result["diagnostics_after"]:
        print("node counters over the flood (/diagnostics): " + ", ".join(f"{k} {v}" for k, v in drops.items()))
        before, after = result["diagnostics_before"], result["diagnostics_after"]
        print("node's own median image-arrival-to-publish latency (its /diagnostics, last frames): relaxed "
              f"{before.get('latency_ms.p50', '?')} ms, after the flood {after.get('latency_ms.p50', '?')} ms")
    else:
        print("node counters: no /diagnostics received")
