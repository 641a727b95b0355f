"""`depth-ft-ros bench-node --overload FACTOR`: the node's output rate under an input flood, measured from outside.

The real `depth_ft_node` runs as its own process (`python -m depth_ft_ros.node.entry --ros-args --params-file ...`,
tiny checkpoint, the node's default processing size); a separate client process plays the camera and the LiDAR
and subscribes to depth/image (raw bytes: the client's own receive costs no deserialization) and /diagnostics.
1. Relaxed: one frame (640x480 rgb8 + camera_info + simulated LiDAR points, one stamp), wait for its depth
   image, next. The interval between outputs is the node's processing time plus the round trip.
2. Overloaded: frames at FACTOR x the relaxed output rate for a fixed time, as a fast camera sends them
   whatever the node can take. A node whose input handling costs little keeps its relaxed output rate; one
   whose callbacks compete with the network for the CPU slows down.
Prints median / p90 output interval and latency (image publish -> depth arrival) of both phases, the ratio of
the output rates, the node's CPU time per output, and its drop counters over the flood (from its /diagnostics).
With `--param cameras=[a,b,...]` (a node serving several cameras) every camera is flooded at once and reported on
its own row (depth_ft_ros.bench.overload_client).
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

from depth_ft_ros.bench.overload_client import client_main
from depth_ft_ros.errors import DepthFtError

NODE_NAME = "depth_ft_node"


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


def _isolate() -> int:
    """A ROS domain of its own (from the pid) and localhost-only discovery, for the node and the client."""
    from depth_ft_ros.node.isolation import localhost_only_discovery

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
    from depth_ft_ros.replay.replay import parse_param_overrides

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
                "warmup": 3, "factor": args.overload, "seconds": args.overload_seconds, "node_name": NODE_NAME,
                "cameras": [str(c) for c in params.get("cameras") or []],
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
            node = subprocess.Popen([sys.executable, "-m", "depth_ft_ros.node.entry", "--ros-args", "--params-file",
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
    client = mp.Process(target=client_main, args=(spec, results), daemon=True)
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
    print(f"{'camera':10}{'phase':14}{'images in':>10}{'outputs':>9}{'interval p50':>14}{'p90':>9}{'rate':>10}"
          f"{'latency p50':>13}{'p90':>9}")
    ratios = {}
    for camera, r in result["cameras"].items():
        rows = [("relaxed", r["relaxed_intervals_s"], r["relaxed_latency_s"], result["relaxed_frames"],
                 len(r["relaxed_latency_s"])),
                (f"overload x{factor:g}", r["flood_intervals_s"], r["flood_latency_s"], result["flood_sent"],
                 r["flood_outputs"])]
        rates = []
        for name, intervals, latency, sent, received in rows:
            i50, i90 = _percentiles_ms(intervals)
            l50, l90 = _percentiles_ms(latency)
            rates.append(1e3 / i50 if i50 == i50 else float("nan"))
            print(f"{camera or '-':10}{name:14}{sent:>10}{received:>9}{i50:>11.0f} ms{i90:>6.0f} ms"
                  f"{rates[-1]:>7.2f} Hz{l50:>10.0f} ms{l90:>6.0f} ms")
        ratios[camera or "-"] = rates[1] / rates[0]
    print(f"input period during the flood: {result['input_period_s'] * 1e3:.0f} ms over "
          f"{result['flood_seconds']:.1f} s; output rate overloaded / relaxed: "
          + ", ".join(f"{v:.2f}" if len(ratios) == 1 else f"{k} {v:.2f}" for k, v in ratios.items()))
    outputs = sum(r["flood_outputs"] for r in result["cameras"].values())
    relaxed_outputs = max(result["relaxed_frames"] * len(result["cameras"]), 1)
    print(f"node CPU time (all its threads): relaxed {result['node_cpu_relaxed_s'] * 1e3 / relaxed_outputs:.0f} ms "
          f"per output ({result['node_cpu_relaxed_s'] / max(result['relaxed_seconds'], 1e-9):.2f} cores busy); flood "
          f"{result['node_cpu_flood_s'] * 1e3 / max(outputs, 1):.0f} ms per output "
          f"({result['node_cpu_flood_s'] / result['flood_seconds']:.2f} cores busy)")
    if not result["diagnostics_after"]:
        print("node counters: no /diagnostics received")
    for name, after in result["diagnostics_after"].items():
        before = result["diagnostics_before"].get(name, {})
        drops = _drops(before, after)
        print(f"{name} over the flood: " + ", ".join(f"{k} {v}" for k, v in drops.items()) + "; median "
              f"image-arrival-to-publish latency (its last frames) relaxed {before.get('latency_ms.p50', '?')} ms, "
              f"after the flood {after.get('latency_ms.p50', '?')} ms")
