"""`depth-ft-ros bench-node --overload`: the node as its own process, a separate client flooding it.

The client's counts (images sent, depth images received) are checked against the node's own /diagnostics
counters, two independent views of the same flood."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from depth_ft_ros.tools.bench_overload import _drops


def test_drop_counters_are_the_difference_over_the_flood() -> None:
    before = {"frames_in": "13", "frames_out": "13", "dropped.superseded": "0", "latency_ms.p50": "300"}
    after = {"frames_in": "93", "frames_out": "33", "dropped.superseded": "59", "dropped.no_camera_info": "1"}
    assert _drops(before, after) == {"dropped.no_camera_info": 1, "dropped.superseded": 59, "frames_in": 80,
                                     "frames_out": 20}


@pytest.mark.slow
@pytest.mark.ros
def test_overload_run_reports_both_phases_and_the_node_drops_superseded_frames() -> None:
    out = subprocess.run([sys.executable, "-m", "depth_ft_ros.cli", "bench-node", "--overload", "4",
                          "--overload-seconds", "4", "--frames", "3", "--param", "processing_resolution=256"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    relaxed = re.search(r"^relaxed\s+(\d+)\s+(\d+)\s", out.stdout, re.M)
    flood = re.search(r"^overload x4\s+(\d+)\s+(\d+)\s", out.stdout, re.M)
    assert relaxed and flood, out.stdout
    assert relaxed.groups() == ("3", "3")  # one output per frame when relaxed
    sent, received = int(flood.group(1)), int(flood.group(2))
    assert 0 < received < sent
    counters = dict(re.findall(r"(dropped\.\w+|frames_in|frames_out) (-?\d+)", out.stdout))
    assert int(counters["dropped.superseded"]) > 0  # the flood is real: the node replaced unprocessed frames
    assert int(counters["frames_in"]) <= sent  # the node cannot have seen more images than were sent
    assert re.search(r"output rate overloaded / relaxed: \d+\.\d\d", out.stdout)
