"""Fleet throughput and memory on this machine (BENCHMARKS.md, "Fleet"): N demo bags through `replay --lossless`
and through `fleet` in one process, interleaved bag by bag (a shared machine's load hits both alike), then all
of them through `fleet` on a local Ray instance; then the peak memory of the driver and of each worker for
growing numbers of bags.

    PYTHONPATH=$PWD python scripts/bench_fleet.py --bags 4 --frames 10 --workdir /tmp/bench_fleet

Every command runs as a subprocess; its process tree (driver, Ray's processes, the actors) is sampled every
0.2 s with psutil for the resident memory and CPU time of each process (CPU seconds per frame depend far less on
other processes' load than wall time does).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
PARAMS = ["--param", "processing_resolution=160", "--param", "alignment_fit=scale",
          "--param", "cloud_edge_filter=false", "--param", "cloud_min_confidence=0.0"]


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "depth_ft_ros.cli", *args]


def run_sampled(cmd: list[str]) -> dict[str, float]:
    """Wall time, peak RSS of the driver process, and the largest peak RSS among the Ray actors (MiB)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peaks: dict[int, tuple[str, float]] = {}
    cpu_s: dict[int, float] = {}
    done = threading.Event()

    def sample() -> None:
        root = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            for p in procs:
                try:
                    name = " ".join(p.cmdline())[:80]
                    rss = p.memory_info().rss / 2**20
                    times = p.cpu_times()
                    cpu_s[p.pid] = max(cpu_s.get(p.pid, 0.0), times.user + times.system)
                except psutil.Error:
                    continue
                peaks[p.pid] = (name, max(rss, peaks.get(p.pid, ("", 0.0))[1]))
            time.sleep(0.2)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    _out, err = proc.communicate()
    done.set()
    thread.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err[-3000:]}")
    actors = [rss for name, rss in peaks.values() if "BagWorker" in name]
    return {"wall_s": time.monotonic() - start, "driver_mib": peaks.get(proc.pid, ("", 0.0))[1],
            "worker_mib": max(actors) if actors else 0.0, "actors": len(actors), "cpu_s": sum(cpu_s.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bags", type=int, default=4)
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--memory-bags", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench_fleet"))
    args = parser.parse_args()
    work = args.workdir
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for family in ("e2e-ft-depth", "e2e-ft-normals"):
        subprocess.run(cli("make-tiny-model", "--family", family, str(work / family)), env=env, check=True,
                       stdout=subprocess.DEVNULL)
    models = ["--depth-model", str(work / "e2e-ft-depth"), "--normals-model", str(work / "e2e-ft-normals")]
    count = max(args.bags, *args.memory_bags)
    for i in range(count):
        subprocess.run(cli("make-demo-bag", str(work / "bags" / f"bag_{i:02d}"), "--frames", str(args.frames),
                           "--size", "160x120", "--seed", str(i)), env=env, check=True, stdout=subprocess.DEVNULL)
    bags = [str(work / "bags" / f"bag_{i:02d}") for i in range(args.bags)]
    frames = args.bags * args.frames
    outputs = ["--outputs", "depth/image", "depth/camera_info", "depth/relative", "depth/colorized",
               "depth/confidence", "normals/image", "normals/camera_info", "normals/colorized", "points"]
    totals = {"replay": {"wall_s": 0.0, "cpu_s": 0.0}, "fleet": {"wall_s": 0.0, "cpu_s": 0.0}}
    for i, bag in enumerate(bags):  # interleaved: replay bag i, then fleet bag i
        for name, cmd in (("replay", cli("replay", bag, "--out", str(work / f"replay_{i}"), "--lossless", *models,
                                         *PARAMS)),
                          ("fleet", cli("fleet", bag, "--out", str(work / f"fleet_none_{i}"), *models, *PARAMS,
                                        "--address", "none", *outputs))):
            row = run_sampled(cmd)
            totals[name]["wall_s"] += row["wall_s"]
            totals[name]["cpu_s"] += row["cpu_s"]
    rows = {"replay --lossless, one bag after another": totals["replay"],
            "fleet --address none, one bag per command": totals["fleet"],
            "fleet --address none, all bags in one command": run_sampled(
                cli("fleet", *bags, "--out", str(work / "fleet_none"), *models, *PARAMS, "--address", "none",
                    *outputs)),
            f"fleet, local Ray, {args.workers} actors, all bags": run_sampled(
                cli("fleet", *bags, "--out", str(work / "fleet_ray"), *models, *PARAMS, "--workers",
                    str(args.workers), *outputs))}
    replay_s = totals["replay"]["wall_s"]
    print(f"{args.bags} bags x {args.frames} frames (160x120, processing_resolution 160), tiny checkpoints, "
          "every output topic")
    print("| run | wall s | frames/s | wall vs replay | CPU s per frame |")
    print("|---|---:|---:|---:|---:|")
    for name, row in rows.items():
        print(f"| {name} | {row['wall_s']:.1f} | {frames / row['wall_s']:.2f} | {replay_s / row['wall_s']:.2f}x | "
              f"{row['cpu_s'] / frames:.2f} |")

    print("\n| bags | driver peak RSS MiB | largest actor peak RSS MiB | actors |")
    print("|---:|---:|---:|---:|")
    memory = {}
    for n in args.memory_bags:
        subset = [str(work / "bags" / f"bag_{i:02d}") for i in range(n)]
        row = run_sampled(cli("fleet", *subset, "--out", str(work / f"mem_{n}"), *models, *PARAMS, "--workers",
                              str(args.workers)))
        memory[n] = row
        print(f"| {n} | {row['driver_mib']:.0f} | {row['worker_mib']:.0f} | {row['actors']} |")
    (work / "bench_fleet.json").write_text(json.dumps({"throughput": rows, "memory": memory}, indent=1))


if __name__ == "__main__":
    main()
