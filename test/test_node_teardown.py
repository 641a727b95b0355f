"""Teardown that cannot race with the worker, and a worker that survives a bug in its handler.

- cleanup after a deactivate whose join timed out (a frame still in hand) waits for that frame: the frame finishes
  with its streams and models intact (published, no internal error), then everything is released;
- an exception escaping the worker's handler is logged once with its traceback, counted per frame, reported at
  ERROR in /diagnostics, and the worker takes the next frame."""

from __future__ import annotations

import threading
import time
from typing import Any

from node_fixtures import T0_NS, Probe, stamp_ns_of, start_node

from depth_ft_ros.node.worker import FrameWorker

ERROR = 40  # rcl_interfaces/msg/Log
ERROR_LEVEL = 2  # diagnostic_msgs/DiagnosticStatus


def _first_output(probe: Probe) -> int:
    """Send frames until one comes out (the node is active); its stamp."""
    for i in range(20):
        stamp_ns = T0_NS + i * 100_000_000
        probe.send(stamp_ns)
        if probe.graph.wait_for(lambda s=stamp_ns: any(stamp_ns_of(m) == s for m in probe.out["depth/image"]), 5.0):
            return stamp_ns
    raise AssertionError("no output")


def test_cleanup_waits_for_the_frame_in_hand(ros_graph: Any) -> None:
    node = start_node(ros_graph, "teardown_wait", sync_wait=3.0, alignment="global")
    probe = Probe(ros_graph)
    stamp_ns = _first_output(probe) + 10_000_000_000  # after every frame sent so far
    # Every frame sent so far done with (a loaded machine may still be on the second): the next one is the busy one.
    assert ros_graph.wait_for(lambda: node.stats.frames_finished() == node.stats.frames_in
                              and node._worker.busy_since_s is None, 30.0)
    frames_before = node.stats.frames_in
    node.worker_join_timeout_s = 0.05  # deactivate gives up on the busy worker at once
    probe.send(stamp_ns, with_points=False)  # the worker waits up to sync_wait for points that never come
    assert ros_graph.wait_for(lambda: node.stats.frames_in > frames_before and node._worker is not None
                              and node._worker.busy_since_s is not None, 5.0)
    worker = node._worker
    node.trigger_deactivate()
    assert worker.is_alive()  # still in its frame: deactivate could not join it
    models = node.models
    node.trigger_cleanup()  # must wait for the frame: it reads the streams and the models
    assert not worker.is_alive() and node._worker is None and node.models is None
    assert node.stats.internal_errors == 0, node.stats.last_internal_error
    # The frame in hand ran to its end with its streams and models (its outputs go to publishers that deactivate
    # switched off, as lifecycle publishers are).
    assert node.stats.frames_out >= 2 and node.stats.frames_finished() == node.stats.frames_in
    assert models is not None


def test_an_exception_in_the_handler_is_logged_once_counted_and_the_worker_goes_on(ros_graph: Any) -> None:
    node = start_node(ros_graph, "teardown_bug", alignment="global")
    probe = Probe(ros_graph)
    stamp_ns = _first_output(probe)
    stream = node.streams[0]
    prepare = stream.prepare

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("a bug in the frame path")

    stream.prepare = broken  # escapes _handle_batch: only the worker's guard catches it
    errors_before, internal_drops_before = node.stats.internal_errors, node.stats.dropped["internal_error"]
    for _ in range(2):
        stamp_ns += 100_000_000
        probe.send(stamp_ns)
        target = errors_before + _ + 1
        assert ros_graph.wait_for(lambda t=target: node.stats.internal_errors >= t, 10.0)
    assert node.stats.dropped["internal_error"] - internal_drops_before == 2
    assert ros_graph.wait_for(lambda: probe.diagnostic_status()[0] == ERROR_LEVEL, 5.0)
    assert "ZeroDivisionError" in probe.diagnostic_status()[1]
    assert ros_graph.wait_for(lambda: any("ZeroDivisionError" in m for m in probe.logs(ERROR)), 5.0)
    time.sleep(0.5)
    logged = [m for m in probe.logs(ERROR) if "ZeroDivisionError" in m]
    assert sum("Traceback" in m for m in logged) == 1  # once with its traceback, the repeat without
    assert "in broken" in next(m for m in logged if "Traceback" in m)
    stream.prepare = prepare  # the worker is still there: the next frame comes out
    stamp_ns += 100_000_000
    probe.send(stamp_ns)
    probe.wait_output("depth/image", stamp_ns)


def test_worker_reports_a_failing_step_and_takes_the_next_batch() -> None:
    handled: list[dict[int, str]] = []
    failures: list[tuple[Exception, dict[int, str]]] = []
    done = threading.Event()

    def handle(batch: dict[int, str]) -> None:
        handled.append(batch)
        if batch[0] == "bad":
            raise ValueError("bug")
        done.set()

    worker: FrameWorker[str] = FrameWorker(handle, lambda: None, lambda camera, item: None,
                                           lambda exc, batch: failures.append((exc, batch)), idle_poll_s=0.01)
    worker.start()
    worker.put(0, "bad")
    deadline = time.monotonic() + 5.0
    while not failures and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.put(0, "good")
    assert done.wait(5.0)
    worker.stop()
    assert worker.join(5.0)
    assert [b[0] for b in handled] == ["bad", "good"]
    assert len(failures) == 1 and isinstance(failures[0][0], ValueError) and failures[0][1] == {0: "bad"}
