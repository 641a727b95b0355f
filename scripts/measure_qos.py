#!/usr/bin/env python3
"""Measure large-image delivery between two processes with the installed RMW (FastDDS from the wheels).

For each combination (payload x rate x publisher QoS x subscriber QoS [x subscriber work time]) this starts
a subscriber process and a publisher process on a private ROS_DOMAIN_ID with localhost-only discovery. The
publisher waits until it sees the subscription (plus a short settle), so discovery is not counted as loss,
then sends rate * duration frames at a fixed rate, each stamped with its send time and numbered in
frame_id. The subscriber counts distinct frames and the send -> callback latency.

Usage: .venv/bin/python scripts/measure_qos.py [--duration 4] [--rates 10 30] [--json out.json]
A reliable subscriber cannot match a best-effort publisher, so that pair is not run.
--fastdds-shm-mb N gives the processes named by --shm-side a FastDDS profile whose shared-memory segment is
N MB (the default segment, about 0.5 MB, is smaller than one 640x480 image).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

PAYLOADS = {"rgb8": (3, 1), "32FC1": (1, 4)}  # encoding -> (channels, bytes per channel); 640x480 each
WIDTH, HEIGHT = 640, 480
SUB_QOS = ("sensor_data", "reliable_1", "reliable_5")
PUB_QOS = ("reliable_10", "best_effort_5")
SHM_PROFILE = """<?xml version="1.0" encoding="UTF-8" ?>
<profiles xmlns="http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles">
  <transport_descriptors>
    <transport_descriptor>
      <transport_id>shm_large</transport_id>
      <type>SHM</type>
      <segment_size>{segment_bytes}</segment_size>
    </transport_descriptor>
  </transport_descriptors>
  <participant profile_name="shm_large_participant" is_default_profile="true">
    <rtps>
      <userTransports><transport_id>shm_large</transport_id></userTransports>
      <useBuiltinTransports>true</useBuiltinTransports>
    </rtps>
  </participant>
</profiles>
"""


def make_qos(name: str) -> Any:
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

    if name == "sensor_data":  # BEST_EFFORT, KEEP_LAST 5, VOLATILE
        return qos_profile_sensor_data
    kind, depth = name.rsplit("_", 1)
    reliability = ReliabilityPolicy.RELIABLE if kind == "reliable" else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(depth), reliability=reliability)


def run_publisher(args: argparse.Namespace) -> dict[str, Any]:
    import array

    import rclpy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("qos_probe_pub")
    pub = node.create_publisher(Image, args.topic, make_qos(args.pub_qos))
    channels, size = PAYLOADS[args.encoding]
    msg = Image(height=HEIGHT, width=WIDTH, encoding=args.encoding, step=WIDTH * channels * size)
    msg.data = array.array("B", bytes(HEIGHT * msg.step))
    t0 = time.monotonic()
    while pub.get_subscription_count() == 0 and time.monotonic() - t0 < 15.0:
        time.sleep(0.01)
    matched_s = time.monotonic() - t0
    time.sleep(0.5)  # let the reader side finish matching too
    count = int(args.rate * args.duration)
    start = time.monotonic()
    for i in range(count):
        target = start + i / args.rate
        while (now := time.monotonic()) < target:
            time.sleep(min(target - now, 0.005))
        stamp = time.time_ns()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
        msg.header.frame_id = str(i)
        pub.publish(msg)
    send_s = time.monotonic() - start
    time.sleep(1.0)  # reliable: give retransmissions time before the writer goes away
    node.destroy_node()
    rclpy.shutdown()
    return {"sent": count, "matched_s": round(matched_s, 3), "send_s": round(send_s, 3)}


def run_subscriber(args: argparse.Namespace) -> dict[str, Any]:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("qos_probe_sub")
    frames: set[int] = set()
    latencies: list[float] = []

    def on_image(msg: Image) -> None:
        now = time.time_ns()
        latencies.append((now - (msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec)) / 1e6)
        frames.add(int(msg.header.frame_id))
        if args.work_ms:
            time.sleep(args.work_ms / 1000.0)  # stands in for inference

    node.create_subscription(Image, args.topic, on_image, make_qos(args.sub_qos))
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    print("ready", flush=True)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    while not stop.is_set():
        executor.spin_once(timeout_sec=0.05)
    node.destroy_node()
    rclpy.shutdown()
    lat = sorted(latencies)
    pct = (lambda q: round(lat[min(len(lat) - 1, int(q * len(lat)))], 1)) if lat else (lambda q: None)
    return {"received": len(frames), "callbacks": len(latencies), "lat_p50_ms": pct(0.5), "lat_p95_ms": pct(0.95),
            "lat_max_ms": round(lat[-1], 1) if lat else None}


def ros_env(domain: int) -> dict[str, str]:
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), PYTHONUNBUFFERED="1")
    if env.get("ROS_DISTRO", "").lower() in ("foxy", "galactic", "humble"):
        env["ROS_LOCALHOST_ONLY"] = "1"
    else:
        env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
        env.pop("ROS_LOCALHOST_ONLY", None)
    return env


def run_pair(encoding: str, rate: float, pub_qos: str, sub_qos: str, work_ms: float, args: argparse.Namespace,
             index: int) -> dict[str, Any]:
    env = ros_env(args.domain)
    pub_env, sub_env = dict(env), dict(env)
    if args.profile:
        for side, side_env in (("pub", pub_env), ("sub", sub_env)):
            if args.shm_side in (side, "both"):
                side_env["FASTRTPS_DEFAULT_PROFILES_FILE"] = args.profile
    common = ["--topic", f"qos_probe_{os.getpid()}_{index}", "--encoding", encoding, "--rate", str(rate),
              "--duration", str(args.duration)]
    me = [sys.executable, os.path.abspath(__file__)]
    sub = subprocess.Popen([*me, "_sub", *common, "--sub-qos", sub_qos, "--work-ms", str(work_ms)], env=sub_env,
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert sub.stdout is not None and sub.stdin is not None
    sub.stdout.readline()  # "ready"
    pub = subprocess.run([*me, "_pub", *common, "--pub-qos", pub_qos], env=pub_env, capture_output=True, text=True,
                         timeout=args.duration + 40)
    sub_out, _ = sub.communicate("stop\n", timeout=20)
    if pub.returncode != 0:
        raise RuntimeError(f"publisher failed: {pub.stderr[-2000:]}")
    return {"payload": encoding, "mb": round(WIDTH * HEIGHT * PAYLOADS[encoding][0] * PAYLOADS[encoding][1] / 1e6, 2),
            "rate_hz": rate, "pub_qos": pub_qos, "sub_qos": sub_qos, "work_ms": work_ms,
            **json.loads(pub.stdout.strip().splitlines()[-1]), **json.loads(sub_out.strip().splitlines()[-1])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", nargs="?", default="run", choices=["run", "_pub", "_sub"])
    parser.add_argument("--duration", type=float, default=4.0, help="seconds of publishing per combination")
    parser.add_argument("--rates", type=float, nargs="+", default=[10.0, 30.0])
    parser.add_argument("--payloads", nargs="+", default=list(PAYLOADS), choices=list(PAYLOADS))
    parser.add_argument("--slow-work-ms", type=float, default=100.0,
                        help="also run the 30 Hz depth case with a subscriber callback this slow (0: skip)")
    parser.add_argument("--domain", type=int, default=None, help="ROS_DOMAIN_ID (default: from the pid)")
    parser.add_argument("--json", help="write all results here")
    parser.add_argument("--fastdds-shm-mb", type=float, default=0.0,
                        help="FastDDS shared-memory segment size in MB for --shm-side (0: FastDDS defaults)")
    parser.add_argument("--shm-side", choices=["both", "pub", "sub"], default="both")
    # internal, for the child processes
    parser.add_argument("--topic")
    parser.add_argument("--encoding", default="rgb8")
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--pub-qos", default="reliable_10")
    parser.add_argument("--sub-qos", default="sensor_data")
    parser.add_argument("--work-ms", type=float, default=0.0)
    args = parser.parse_args()
    if args.role == "_pub":
        print(json.dumps(run_publisher(args)), flush=True)
        return 0
    if args.role == "_sub":
        print(json.dumps(run_subscriber(args)), flush=True)
        return 0
    pool = [*range(1, 102), *range(215, 233)]
    args.domain = args.domain if args.domain is not None else pool[(os.getpid() * 7 + 3) % len(pool)]
    combos = [(e, r, p, s, 0.0) for e in args.payloads for r in args.rates for p in PUB_QOS for s in SUB_QOS
              if not (p.startswith("best_effort") and s.startswith("reliable"))]  # incompatible QoS
    if args.slow_work_ms > 0:
        combos += [("32FC1", 30.0, p, s, args.slow_work_ms) for p in PUB_QOS for s in SUB_QOS
                   if not (p.startswith("best_effort") and s.startswith("reliable"))]
    args.profile = None
    if args.fastdds_shm_mb > 0:
        import tempfile

        with tempfile.NamedTemporaryFile("w", suffix=".xml", delete=False) as f:
            f.write(SHM_PROFILE.format(segment_bytes=int(args.fastdds_shm_mb * 1024 * 1024)))
        args.profile = f.name
    transport = f"SHM segment {args.fastdds_shm_mb} MB on {args.shm_side}" if args.profile else "FastDDS defaults"
    print(f"ROS_DOMAIN_ID={args.domain}, localhost only, {transport}, {len(combos)} combinations, "
          f"{args.duration} s each")
    header = f"{'payload':8}{'MB':>6}{'Hz':>5}  {'publisher':14}{'subscriber':12}{'work':>6}" \
             f"{'sent':>6}{'recv':>6}{'p50 ms':>8}{'p95 ms':>8}{'max ms':>8}{'match s':>8}"
    print(header)
    results = []
    for i, (enc, rate, pub_qos, sub_qos, work) in enumerate(combos):
        r = run_pair(enc, rate, pub_qos, sub_qos, work, args, i)
        results.append(r)
        print(f"{enc:8}{r['mb']:>6}{rate:>5.0f}  {pub_qos:14}{sub_qos:12}{work:>6.0f}{r['sent']:>6}{r['received']:>6}"
              f"{r['lat_p50_ms']!s:>8}{r['lat_p95_ms']!s:>8}{r['lat_max_ms']!s:>8}{r['matched_s']:>8}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    if args.profile:
        os.unlink(args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
