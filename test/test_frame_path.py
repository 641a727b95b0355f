"""One camera frame followed through the real node, as a new engineer would read it: each stage of the mission's
order (image -> RGB -> networks -> sparse points in the camera -> MetricAligner -> confidence -> cloud ->
messages) runs once, in that order, and every stage is called from the files ARCHITECTURE.md lists as the frame
path (at most six). The stage functions are named here from that order, and the calls are recorded by the
interpreter's profiler in the node's worker thread, not by the code under test."""

from __future__ import annotations

import re
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.ros

PACKAGE = Path(__file__).resolve().parents[1] / "depth_ft_ros"
ARCHITECTURE = Path(__file__).resolve().parents[1] / "ARCHITECTURE.md"

# The mission's order, one function per stage: (file under depth_ft_ros/, function name).
STAGES = [
    ("image -> RGB", "msgs/image_codec.py", "image_to_rgb"),
    ("sparse message -> points", "msgs/cloud_msg.py", "pointcloud2_to_xyz"),
    ("networks", "model/networks.py", "predict"),
    ("points -> camera frame", "geometry/sparse.py", "transform_points"),
    ("points -> pixels", "geometry/sparse.py", "project_sparse_points"),
    ("metric alignment", "alignment/aligner.py", "align"),
    ("confidence", "alignment/confidence.py", "confidence_map"),
    ("cloud", "geometry/cloud.py", "cloud_arrays"),
    ("messages", "msgs/outputs.py", "output_messages"),
]


def architecture_path_files() -> list[str]:
    """The files of the frame-path table in ARCHITECTURE.md (`depth_ft_ros/...py` in its rows)."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    section = text.split("## Frame path", 1)[1].split("\n## ", 1)[0]
    files: list[str] = []
    for name in re.findall(r"`depth_ft_ros/([\w/]+\.py)`", section):
        if name not in files:
            files.append(name)
    return files


def test_architecture_lists_at_most_six_path_files() -> None:
    files = architecture_path_files()
    assert 0 < len(files) <= 6, files
    assert all((PACKAGE / f).is_file() for f in files), files


def test_one_frame_runs_each_stage_once_in_order_from_the_listed_files(ros_graph: Any) -> None:
    from node_fixtures import T0_NS, Probe, start_node

    wanted = {(str(PACKAGE / f), fn): label for label, f, fn in STAGES}
    calls: list[tuple[str, str]] = []  # (stage label, caller file) in call order
    tracing = threading.Event()

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event != "call" or not tracing.is_set():
            return
        label = wanted.get((frame.f_code.co_filename, frame.f_code.co_name))
        if label is not None:
            calls.append((label, frame.f_back.f_code.co_filename if frame.f_back else ""))

    threading.setprofile(profile)  # threads started from here on: the node's worker
    try:
        node = start_node(ros_graph, "frame_path", cloud_edge_filter=True, cloud_min_confidence=0.3)
        probe = Probe(ros_graph)
        probe.send(T0_NS)  # a first frame: caches (rays, kernels) warm, outside the traced one
        probe.wait_output("points", T0_NS)
        tracing.set()
        probe.send(T0_NS + 100_000_000)
        probe.wait_output("points", T0_NS + 100_000_000)
        tracing.clear()
    finally:
        threading.setprofile(None)  # type: ignore[arg-type]
        sys.setprofile(None)
    assert node.stats.frames_out == 2
    labels = [label for label, _ in calls]
    assert labels == [label for label, _, _ in STAGES], labels  # each stage once, in the mission's order
    path_files = {str(PACKAGE / f) for f in architecture_path_files()}
    callers = {label: caller for label, caller in calls}
    outside = {label: caller for label, caller in callers.items() if caller not in path_files}
    assert not outside, f"stages called from files the frame-path table does not list: {outside}"
