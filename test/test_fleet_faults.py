"""Faults of a fleet run on a local Ray instance: the driver killed part-way and run again, a Ray worker process
killed mid-bag. The reference is the set of input bags: each must end up published exactly once (one output
folder with its manifest, its output bag holding each input frame once), with nothing partial left.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from fleet_fixtures import FAST, LIDAR_ONLY, demo_bag, read_bag, stamp_ns, tiny_models

pytestmark = [pytest.mark.ros, pytest.mark.slow]
pytest.importorskip("ray")
REPO = Path(__file__).resolve().parents[1]
FRAMES = 3


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], list[Path]]:
    root = tmp_path_factory.mktemp("fleet_faults")
    bags = [demo_bag(root / "bags" / f"run_{i}", FRAMES, seed=i) for i in range(4)]
    return tiny_models(root / "models"), bags


def start_fleet(bags: list[Path], out: Path, models: list[str], workers: int) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "depth_ft_ros.cli", "fleet", *map(str, bags), "--out", str(out), *models, *FAST,
         *LIDAR_ONLY, "--workers", str(workers), "--outputs", "depth/image", "depth/camera_info"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_until(predicate: object, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return False


def published(out: Path) -> list[str]:
    return sorted(p.parent.name for p in out.glob("*/manifest.json"))


def assert_each_bag_once(out: Path, bags: list[Path]) -> None:
    assert published(out) == sorted(b.name for b in bags)
    assert sorted(p.name for p in out.iterdir()) == sorted([*(b.name for b in bags), "fleet_run.json"])
    for bag in bags:
        stamps = [stamp_ns(m) for m in read_bag(bag)["/camera/image_raw"]]
        assert [stamp_ns(m) for m in read_bag(out / bag.name / "bag")["/depth_ft/depth/image"]] == stamps


def kill_tree(proc: subprocess.Popen[str]) -> None:
    """What is left of a run's process tree after a test (Ray's own processes included)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def test_driver_killed_part_way_then_rerun_publishes_every_bag_once(
        tmp_path: Path, setup: tuple[list[str], list[Path]]) -> None:
    models, bags = setup
    out = tmp_path / "out"
    proc = start_fleet(bags, out, models, workers=1)
    try:
        assert wait_until(lambda: len(published(out)) >= 1 and list(out.glob("*.partial-*")), 300), \
            proc.stderr.read() if proc.poll() is not None else "no bag finished"
        os.kill(proc.pid, signal.SIGKILL)  # the driver only, mid-bag: its Ray processes go down with it
        proc.wait(timeout=30)
    finally:
        kill_tree(proc)
    done_before = published(out)
    assert 1 <= len(done_before) < len(bags)
    # Nothing half-written under a bag's own name: each folder is a whole published bag or says it is partial.
    for folder in out.iterdir():
        assert folder.name in done_before or ".partial-" in folder.name, folder.name
    for name in done_before:
        assert (out / name / "frames.parquet").is_file() and (out / name / "bag" / "metadata.yaml").is_file()
    mtimes = {name: (out / name / "manifest.json").stat().st_mtime_ns for name in done_before}

    rerun = start_fleet(bags, out, models, workers=1)
    try:
        _stdout, stderr = rerun.communicate(timeout=600)
    finally:
        kill_tree(rerun)
    assert rerun.returncode == 0, stderr
    assert "removed 1 partial output(s)" in stderr or "removed 2 partial output(s)" in stderr
    assert f"skipped {len(done_before)} bag(s)" in stderr
    assert_each_bag_once(out, bags)
    assert {name: (out / name / "manifest.json").stat().st_mtime_ns for name in done_before} == mtimes


def test_a_ray_worker_killed_mid_run_the_run_completes(tmp_path: Path, setup: tuple[list[str], list[Path]]) -> None:
    models, bags = setup
    out = tmp_path / "out"
    proc = start_fleet(bags, out, models, workers=2)
    killed: list[int] = []
    try:
        def busy_worker() -> bool:
            if not list(out.glob("*.partial-*")):
                return False
            for child in psutil.Process(proc.pid).children(recursive=True):
                try:
                    if "BagWorker.process" in " ".join(child.cmdline()):
                        child.kill()
                        killed.append(child.pid)
                        return True
                except psutil.NoSuchProcess:
                    continue
            return False

        assert wait_until(busy_worker, 300), "no Ray worker was seen processing a bag"
        _stdout, stderr = proc.communicate(timeout=600)
    finally:
        kill_tree(proc)
    assert proc.returncode == 0, stderr
    assert_each_bag_once(out, bags)
    summary = json.loads((out / "fleet_run.json").read_text())
    assert summary["bags"] == {"total": len(bags), "done": len(bags), "skipped": 0, "failed": 0}
    assert max(r["attempts"] for r in summary["results"]) == 2  # the killed worker's bag ran again
