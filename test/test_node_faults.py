"""Every input fault is named, counted and survived; internal errors are told apart; parameters change safely.

Through a real rclpy graph with tiny checkpoints: the warnings are read where an operator reads them (/rosout,
as rqt_console shows them), counters and levels from /diagnostics."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from node_fixtures import ROSOUT_QOS, T0_NS, Probe, camera_info_msg, cloud_msg, node_params, scene, start_node

pytestmark = pytest.mark.ros
INFO, WARN, ERROR = 20, 30, 40  # rcl_interfaces/msg/Log levels
OK_LEVEL, WARN_LEVEL, ERROR_LEVEL = 0, 1, 2  # diagnostic_msgs/DiagnosticStatus levels


def lidar_from_camera(points_cam: np.ndarray) -> np.ndarray:
    """Camera-frame points -> the scene's LiDAR frame (the inverse of its T_camera_lidar)."""
    t = scene().T_camera_lidar
    return (points_cam - t[:3, 3]) @ t[:3, :3]


def wait_log(probe: Probe, level: int, *parts: str, timeout_s: float = 10.0) -> str:
    found: list[str] = []

    def logged() -> bool:
        found[:] = [m for m in probe.logs(level) if all(p in m for p in parts)]
        return bool(found)

    assert probe.graph.wait_for(logged, timeout_s), f"no log at level {level} with {parts}: {probe.logs(level)}"
    return found[-1]


def test_sparse_point_faults_are_named_counted_per_frame_and_the_frame_is_processed(ros_graph: Any) -> None:
    node = start_node(ros_graph, "faults_sparse")
    probe = Probe(ros_graph)
    lidar = scene().lidar_points
    probe.send(T0_NS)
    probe.wait_output("depth/image", T0_NS)
    assert ros_graph.wait_for(lambda: node.stats.last_frame_points.get("input") == len(lidar), 5.0)

    # Half the cloud NaN or inf, plus points behind the camera and beside the image (placed in the camera frame).
    rng = np.random.default_rng(0)
    n_bad = len(lidar) // 2
    bad_rows = rng.choice(len(lidar), n_bad, replace=False)
    points = lidar.copy()
    points[bad_rows[: n_bad // 2], 0] = np.nan
    points[bad_rows[n_bad // 2:], 2] = np.inf
    behind = lidar_from_camera(np.array([[0.0, 0.0, -2.0], [0.5, 0.1, -0.5], [0.0, 0.0, -10.0]]))
    beside = lidar_from_camera(np.array([[50.0, 0.0, 2.0], [-50.0, 0.0, 3.0]]))  # x/z = 25: u far outside
    points = np.vstack([points, behind, beside])
    bad_before = node.stats.warnings["bad_sparse_points.non_finite"]
    stamp_ns = T0_NS + 100_000_000
    probe.send(stamp_ns, points=cloud_msg(points, stamp_ns))
    probe.wait_output("depth/image", stamp_ns)  # the frame itself is still processed, with the finite points

    assert ros_graph.wait_for(lambda: node.stats.last_frame_points.get("input") == len(points), 5.0)
    counts = node.stats.last_frame_points
    assert counts["non_finite"] == n_bad
    # Expected from the geometry: finite points moved into the camera frame, z <= 0 behind it.
    t = scene().T_camera_lidar
    finite = points[np.isfinite(points).all(axis=1)]
    z_cam = (finite @ t[:3, :3].T + t[:3, 3])[:, 2]
    assert counts["behind_camera"] == np.count_nonzero(z_cam <= 0) >= 3
    assert counts["outside_image"] >= 2
    assert counts["used"] + sum(v for k, v in counts.items() if k not in ("input", "used")) == len(points)
    assert node.stats.warnings["bad_sparse_points.non_finite"] == bad_before + 1
    wait_log(probe, WARN, "sparse_points", f"{n_bad} of {len(points)} points dropped", "x/y/z not finite")
    # The normal culling of a LiDAR sweep is counted and logged at INFO: WARN is for what a person must act on.
    wait_log(probe, INFO, "sparse_points", "behind the camera", "z <= 0")
    wait_log(probe, INFO, "sparse_points", "outside the image", "(u, v)")
    assert not [m for m in probe.logs(WARN) if "behind the camera" in m or "outside the image" in m]

    def diag_has_counts() -> bool:
        values = probe.diagnostic_status()[2]
        return (values.get("sparse_points.last_frame.non_finite") == str(n_bad)
                and int(values.get("bad_input.bad_sparse_points.non_finite", "0")) >= 1)

    assert ros_graph.wait_for(diag_has_counts, 5.0)
    assert probe.graph.wait_for(lambda: probe.diagnostic_status()[0] == WARN_LEVEL, 5.0)  # bad input: WARN

    stamp_ns += 100_000_000  # the next good frame: processed, its own counts
    probe.send(stamp_ns)
    probe.wait_output("depth/image", stamp_ns)
    assert ros_graph.wait_for(lambda: node.stats.last_frame_points.get("non_finite") == 0, 5.0)
    assert node.stats.internal_errors == 0


def test_camera_info_and_stamp_faults_are_named_and_do_not_outlive_their_frame(ros_graph: Any) -> None:
    node = start_node(ros_graph, "faults_info", sync_wait=0.3)
    probe = Probe(ros_graph)
    s = scene()
    stamp_ns = T0_NS
    for model, n_coefficients in (("plumb_bob", 3), ("plumb_bob", 20), ("equidistant", 2)):
        stamp_ns += 100_000_000
        info = camera_info_msg(s.camera, stamp_ns)
        info.distortion_model, info.d = model, [0.01] * n_coefficients
        before = node.stats.warnings["bad_camera_info"], node.stats.dropped["bad_input"]
        probe.send(stamp_ns, info=info)
        assert ros_graph.wait_for(lambda b=before: (node.stats.warnings["bad_camera_info"],
                                                    node.stats.dropped["bad_input"]) == (b[0] + 1, b[1] + 1), 10.0)
        wait_log(probe, WARN, "camera_info", "d (D)", f"has {n_coefficients} coefficients", repr(model))
        stamp_ns += 100_000_000
        probe.send(stamp_ns)  # the next good frame is processed
        probe.wait_output("depth/image", stamp_ns)

    # An image stamped an hour ahead of the clock: refused; later, correctly stamped frames are not disturbed
    # (accepted, it would make every later stamp "go backwards" and reset the alignment).
    future_ns = time.time_ns() + 3600 * 10**9
    probe.send(future_ns)
    assert ros_graph.wait_for(lambda: node.stats.warnings["bad_image_stamp"] == 1, 10.0)
    wait_log(probe, WARN, "image header.stamp", "ahead of the node's clock", "max_future_stamp")
    for _ in range(2):
        stamp_ns += 100_000_000
        probe.send(stamp_ns)
        probe.wait_output("depth/image", stamp_ns)
    assert node.stats.warnings["stamp_backwards"] == 0
    assert ros_graph.wait_for(lambda: node.last_alignment.get("alignment.state") == "fitted", 5.0)
    assert node.stats.internal_errors == 0


def test_internal_errors_are_their_own_counter_logged_once_with_traceback_and_error_while_recent(
        ros_graph: Any) -> None:
    node = start_node(ros_graph, "faults_internal")
    probe = Probe(ros_graph)
    node.stats.recent_window_s = 1.5  # the recovery below in test time
    assert node.processor is not None
    rectifier = node.processor._rectifier
    failures = {"left": 3}

    def failing_rectifier(*args: Any, **kwargs: Any) -> Any:  # a bug inside the frame path, not the input's fault
        if failures["left"] > 0:
            failures["left"] -= 1
            raise RuntimeError("simulated fault in the pipeline")
        return rectifier(*args, **kwargs)

    node.processor._rectifier = failing_rectifier  # type: ignore[method-assign]
    bad_inputs = sum(node.stats.warnings.values())
    for i in range(3):
        probe.send(T0_NS + i)
        assert ros_graph.wait_for(lambda n=i + 1: node.stats.internal_errors == n, 10.0)
    wait_log(probe, ERROR, "internal error", "simulated fault in the pipeline", "Traceback", "RuntimeError")
    time.sleep(0.5)  # the log of the later two, if any, has arrived too
    assert sum("Traceback" in m for m in probe.logs(ERROR)) == 1  # logged once with the traceback
    assert sum(node.stats.warnings.values()) == bad_inputs  # not counted as bad input
    assert node.stats.dropped["internal_error"] == 3
    assert ros_graph.wait_for(lambda: probe.diagnostic_status()[0] == ERROR_LEVEL, 5.0)
    _, message, values = probe.diagnostic_status()
    assert "internal error" in message and values["internal_errors"] == "3"

    probe.send(T0_NS + 10)  # the next frame is processed; ERROR ends one window after the last error
    probe.wait_output("depth/image", T0_NS + 10)
    assert ros_graph.wait_for(lambda: probe.diagnostic_status()[0] == OK_LEVEL, 5.0)


def test_parameters_changed_at_100_hz_while_frames_flow_never_mix_in_a_frame(ros_graph: Any) -> None:
    from rclpy.parameter import Parameter

    node = start_node(ros_graph, "faults_params", alignment="global")
    probe = Probe(ros_graph)
    settings = [  # two configurations, each changing values the frame reads at different moments
        [Parameter("cloud_stride", value=1), Parameter("hold_seconds", value=1.0),
         Parameter("alignment", value="global"), Parameter("smoothing_seconds", value=0.0),
         Parameter("see_through_margin", value=0.3)],
        [Parameter("cloud_stride", value=2), Parameter("hold_seconds", value=2.0),
         Parameter("alignment", value="local"), Parameter("smoothing_seconds", value=0.5),
         Parameter("see_through_margin", value=0.0)],
    ]
    stop = threading.Event()
    accepted: list[bool] = []

    def churn() -> None:
        i = 0
        next_s = time.monotonic()
        while not stop.is_set():
            accepted.append(node.set_parameters_atomically(settings[i % 2]).successful)
            i += 1
            next_s += 0.01  # 100 Hz
            time.sleep(max(0.0, next_s - time.monotonic()))

    churner = threading.Thread(target=churn, daemon=True)
    churner.start()
    try:
        sent = []
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline:
            stamp_ns = T0_NS + len(sent) * 100_000_000
            probe.send(stamp_ns)
            sent.append(stamp_ns)
            time.sleep(0.1)
    finally:
        stop.set()
        churner.join(5.0)
    assert all(accepted) and len(accepted) > 150
    assert ros_graph.wait_for(lambda: node.stats.frames_finished() == len(sent), 30.0)
    generations = list(node.frame_config_generations)
    assert len(generations) >= 5 and node.stats.frames_out == len(generations)
    mixed = [g for g in generations if g[0] != g[1] or g[0] < 0]
    assert not mixed, f"frames that ran with two configurations: {mixed}"
    assert len({g[0] for g in generations}) >= 3  # changes did land between frames
    assert node.stats.internal_errors == 0 and node.stats.dropped["internal_error"] == 0
    assert node._worker is not None and node._worker.is_alive()
    # Once idle the worker applies the newest change; what runs is what was declared.
    assert ros_graph.wait_for(lambda: node.config == node._declared, 2.0)
    assert node.processor is not None and node.processor.config is node.config


def test_a_busy_worker_never_runs_beside_a_new_one(ros_graph: Any) -> None:
    from rclpy.lifecycle import TransitionCallbackReturn

    def workers() -> int:
        return [t.name for t in threading.enumerate()].count("depth_ft_worker")

    node = start_node(ros_graph, "faults_worker")
    probe = Probe(ros_graph)
    node.worker_join_timeout_s = 0.2
    running = workers()  # this node's, and any another test's node has not finished stopping
    entered, release = threading.Event(), threading.Event()
    predict = node.models.predict

    def stuck_predict(*args: Any) -> Any:  # a frame that takes long in the network
        entered.set()
        release.wait(30.0)
        return predict(*args)

    node.models.predict = stuck_predict
    probe.send(T0_NS)
    assert entered.wait(10.0)
    old = node._worker
    node.trigger_deactivate()
    assert old is not None and old.is_alive()
    assert node.trigger_activate() == TransitionCallbackReturn.FAILURE  # the old worker still has the pipeline
    wait_log(probe, ERROR, "activate refused", "previous worker is still processing a frame")
    assert node._worker is old
    assert workers() <= running

    release.set()
    assert ros_graph.wait_for(lambda: not old.is_alive(), 5.0)  # its own stop event ends it after the frame
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    assert node._worker is not old
    probe.send(T0_NS + 100_000_000)
    probe.wait_output("depth/image", T0_NS + 100_000_000)
    assert workers() <= running


def test_set_parameter_with_a_wrong_type_is_refused_naming_it(ros_graph: Any) -> None:
    """Through the node's set_parameters service, as `ros2 param set` calls it."""
    from rcl_interfaces.msg import Parameter as ParameterMsg
    from rcl_interfaces.msg import ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    node = start_node(ros_graph, "faults_types")
    client = ros_graph.node("param_client").create_client(SetParameters, "/faults_types/set_parameters")
    assert client.wait_for_service(timeout_sec=10.0)

    def set_remote(name: str, value: ParameterValue) -> Any:
        future = client.call_async(SetParameters.Request(parameters=[ParameterMsg(name=name, value=value)]))
        assert ros_graph.wait_for(future.done, 10.0)
        return future.result().results[0]

    result = set_remote("max_depth", ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=10))
    assert not result.successful
    assert "max_depth" in result.reason and "expected double" in result.reason and "integer" in result.reason
    result = set_remote("alignment", ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=True))
    assert not result.successful and "alignment" in result.reason and "expected string" in result.reason
    result = set_remote("alignment", ParameterValue(type=ParameterType.PARAMETER_NOT_SET))
    assert not result.successful and "alignment" in result.reason
    assert node.has_parameter("alignment") and node.get_parameter("alignment").value == "local"
    result = set_remote("max_depth", ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=10.0))
    assert result.successful
    assert ros_graph.wait_for(lambda: node.config.max_depth == 10.0, 2.0)


@pytest.mark.parametrize("bad_folder", ["missing", "no_model_index"])
def test_model_load_errors_name_the_parameter(ros_graph: Any, tmp_path: Path, bad_folder: str) -> None:
    from rcl_interfaces.msg import Log
    from rclpy.parameter import Parameter

    from depth_ft_ros.node.node import DepthFtNode

    folder = tmp_path / bad_folder
    if bad_folder == "no_model_index":
        (folder / "unet").mkdir(parents=True)
    params = node_params(normals_model=str(folder))
    name = f"depth_ft_node_{bad_folder}"  # rcl's /rosout publisher is per logger name: one per test
    node = DepthFtNode(name, context=ros_graph.context,
                       parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    ros_graph.add_node(node)
    logs: list[Any] = []
    rosout = ros_graph.node("log_probe").create_subscription(Log, "/rosout", logs.append, ROSOUT_QOS)
    assert ros_graph.wait_for(lambda: rosout.get_publisher_count() >= 2, 10.0)  # the node's and its own
    node.trigger_configure()
    assert node.processor is None
    expected = "does not exist" if bad_folder == "missing" else "model_index.json"

    def logged() -> bool:
        return any(m.level == ERROR and m.name == name and "configure failed" in m.msg
                   and "parameter normals_model: " in m.msg and expected in m.msg and str(folder) in m.msg
                   for m in list(logs))

    assert ros_graph.wait_for(logged, 10.0), [m.msg for m in logs]


@pytest.mark.parametrize("argument", ["depth_model:=", "depth_model", "max_depth:=[1,"])
def test_main_with_a_malformed_argument_exits_with_a_message(argument: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "depth_ft_ros.node.entry", "--ros-args", "-p", argument],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert f"depth_ft_node: invalid ROS arguments: Couldn't parse parameter override rule: '-p {argument}'" \
        in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_an_image_of_extreme_aspect_ratio_is_bad_input_and_the_next_frame_comes_out(ros_graph: Any) -> None:
    """8000x64 at processing_resolution 768 (a fuzzing client's case): refused as bad input naming the image,
    no internal error, no traceback in the log; the next ordinary frame is processed."""
    from node_fixtures import image_msg

    from depth_ft_ros.geometry.camera import PinholeCamera

    node = start_node(ros_graph, "faults_aspect", processing_resolution=768)
    probe = Probe(ros_graph)
    thin = PinholeCamera.from_intrinsics(500.0, 500.0, 4000.0, 32.0, 8000, 64)
    probe.send(T0_NS, image=image_msg(np.zeros((64, 8000, 3), np.uint8), T0_NS), info=camera_info_msg(thin, T0_NS),
               with_points=False)
    assert ros_graph.wait_for(lambda: node.stats.warnings["bad_image"] >= 1, 30.0)
    message = wait_log(probe, WARN, "8000x64")
    assert "processing size" in message and "Traceback" not in message
    assert node.stats.internal_errors == 0 and node.stats.dropped["bad_input"] == 1
    probe.send(T0_NS + 100_000_000)
    probe.wait_output("depth/image", T0_NS + 100_000_000, timeout_s=60.0)
    assert not any("Traceback" in m for m in probe.logs(WARN) + probe.logs(ERROR))
