"""`depth-ft-ros bench-node --overload`: the node as its own process, a separate client flooding it.

The client's counts (images sent, depth images received) are checked against the node's own /diagnostics
counters, two independent views of the same flood."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import pytest

from depth_ft_ros.bench.overload import _drops, _run_client, _stop_node

# A stand-in for a node serving two cameras with one model: each image is "processed" for 80 ms of CPU time on the
# one executor thread (a busy loop on the process clock: at least 80 ms of wall and CPU time each), then its bytes
# go back out as that camera's depth/image (same header).
WORK_CPU_S = 0.08
FAKE_TWO_CAMERA_NODE = textwrap.dedent(f"""
    import time, rclpy
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import CameraInfo, Image
    rclpy.init()
    node = rclpy.create_node("fake_depth_node")
    for camera in ("front", "left"):
        pub = node.create_publisher(Image, f"{{camera}}/depth/image", QoSProfile(depth=5))
        def work(data, pub=pub):
            start = time.process_time()
            while time.process_time() - start < {WORK_CPU_S}:
                pass
            pub.publish(data)
        node.create_subscription(Image, f"{{camera}}/image", work, QoSProfile(depth=1), raw=True)
        node.create_subscription(CameraInfo, f"{{camera}}/camera_info", lambda data: None, 10, raw=True)
    rclpy.spin(node)
""")


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
    relaxed = re.search(r"^-\s+relaxed\s+(\d+)\s+(\d+)\s", out.stdout, re.M)
    flood = re.search(r"^-\s+overload x4\s+(\d+)\s+(\d+)\s", out.stdout, re.M)
    assert relaxed and flood, out.stdout
    assert relaxed.groups() == ("3", "3")  # one output per frame when relaxed
    sent, received = int(flood.group(1)), int(flood.group(2))
    assert 0 < received < sent
    counters = dict(re.findall(r"(dropped\.\w+|frames_in|frames_out) (-?\d+)", out.stdout))
    assert int(counters["dropped.superseded"]) > 0  # the flood is real: the node replaced unprocessed frames
    assert int(counters["frames_in"]) <= sent  # the node cannot have seen more images than were sent
    assert re.search(r"output rate overloaded / relaxed: \d+\.\d\d", out.stdout)


@pytest.mark.ros
def test_client_floods_every_camera_and_times_each_cameras_outputs() -> None:
    """The client as `--param cameras=[front,left]` runs it, against a two-camera stand-in node."""
    node = subprocess.Popen([sys.executable, "-c", FAKE_TWO_CAMERA_NODE])
    try:
        spec = {"width": 320, "height": 240, "lidar_lines": 0, "frames": 4, "warmup": 1, "factor": 4.0,
                "seconds": 2.0, "node_name": "fake_depth_node", "cameras": ["front", "left"],
                "diagnostics_period": 0.2, "node_pid": node.pid}
        result = _run_client(spec, node)
    finally:
        _stop_node(node)
    assert "error" not in result, result
    assert set(result["cameras"]) == {"front", "left"}
    for camera in result["cameras"].values():
        assert len(camera["relaxed_latency_s"]) == 4
        assert min(camera["relaxed_latency_s"]) >= 0.08  # no output before its image was processed
        assert len(camera["relaxed_intervals_s"]) == 3
        assert 0 < camera["flood_outputs"] < result["flood_sent"]  # one model cannot keep up with 4x
        assert min(camera["flood_latency_s"]) >= 0.08
    # The node's CPU time over the flood, read by the client from /proc, against the work the outputs prove: each
    # took WORK_CPU_S of CPU (one may have started before the flood); and no more than its cores could give.
    outputs = sum(camera["flood_outputs"] for camera in result["cameras"].values())
    assert WORK_CPU_S * (outputs - 1) <= result["node_cpu_flood_s"] <= result["flood_seconds"] * os.cpu_count() + 0.1
