"""/diagnostics levels from the node's counters: ERROR while internal errors repeat, WARN for recent bad input."""

from __future__ import annotations

import pytest

pytest.importorskip("diagnostic_msgs.msg", reason="diagnostic_msgs not importable (needs the ROS 2 wheels)")

from diagnostic_msgs.msg import DiagnosticStatus

from depth_ft_ros.enums import AlignmentState, BadInput, DropReason
from depth_ft_ros.frame.stats import Health, HealthInputs, NodeStats, assess_health
from depth_ft_ros.node.diagnostics import build_diagnostics

pytestmark = pytest.mark.ros
FITTED = {"alignment.state": "fitted"}


def status_at(stats: NodeStats, now_s: float, extra: dict[str, str] = FITTED) -> DiagnosticStatus:
    array = build_diagnostics("/depth_ft_node", None, stats, extra, configured=True, active=True, now_s=now_s)
    return array.status[0]


def test_internal_errors_are_error_while_they_repeat_then_clear() -> None:
    stats = NodeStats(recent_window_s=10.0)
    assert status_at(stats, 100.0).level == DiagnosticStatus.OK
    stats.internal_error("internal error while processing: RuntimeError('x')", now_s=100.0)
    status = status_at(stats, 101.0)
    assert status.level == DiagnosticStatus.ERROR and "RuntimeError('x')" in status.message
    stats.internal_error("again", now_s=108.0)  # repeats: still ERROR after the first one's window
    assert status_at(stats, 115.0).level == DiagnosticStatus.ERROR
    assert status_at(stats, 118.5).level == DiagnosticStatus.OK  # 10 s after the last
    values = {kv.key: kv.value for kv in status_at(stats, 118.5).values}
    assert values["internal_errors"] == "2" and values["internal_errors.recent"] == "0"
    assert values["bad_inputs"] == "0"  # not mixed with bad input


def test_recent_bad_input_is_warn_and_an_error_outranks_it() -> None:
    stats = NodeStats(recent_window_s=10.0)
    stats.warn("bad_camera_info", "camera_info refused: d (D) has 3 coefficients", now_s=50.0)
    status = status_at(stats, 55.0)
    assert status.level == DiagnosticStatus.WARN and "d (D) has 3 coefficients" in status.message
    assert status_at(stats, 61.0).level == DiagnosticStatus.OK
    stats.warn("bad_image", "image: unknown encoding", now_s=70.0)
    stats.internal_error("boom", now_s=70.0)
    assert status_at(stats, 71.0).level == DiagnosticStatus.ERROR
    values = {kv.key: kv.value for kv in status_at(stats, 71.0).values}
    assert values["bad_input.bad_camera_info"] == "1" and values["bad_inputs.recent"] == "1"


def test_dropped_sparse_points_per_frame_and_in_total() -> None:
    stats = NodeStats()
    stats.sparse_points(100, 60, {"non_finite": 30, "behind_camera": 10, "see_through": 0})
    stats.sparse_points(50, 45, {"non_finite": 0, "behind_camera": 5, "see_through": 0})
    values = stats.snapshot()
    assert values["sparse_points.last_frame.input"] == "50" and values["sparse_points.last_frame.used"] == "45"
    assert values["sparse_points.last_frame.non_finite"] == "0"
    assert values["sparse_points.dropped.non_finite"] == "30"
    assert values["sparse_points.dropped.behind_camera"] == "15"


def test_level_follows_the_typed_alignment_state_not_the_text_of_a_value() -> None:
    stats = NodeStats(recent_window_s=10.0)
    # A value that reads "held" is only shown: the level comes from what the frames reported.
    assert status_at(stats, 100.0, {"alignment.state": "held"}).level == DiagnosticStatus.OK
    stats.aligned(AlignmentState.HELD, "too few points: 3 usable, need 10")
    status = status_at(stats, 100.0)
    assert status.level == DiagnosticStatus.WARN
    assert status.message == "alignment held: too few points: 3 usable, need 10"
    stats.aligned("relative-only")  # a string naming a state is that state
    assert status_at(stats, 100.0).level == DiagnosticStatus.WARN
    stats.aligned(AlignmentState.FITTED)
    status = status_at(stats, 100.0)
    assert status.level == DiagnosticStatus.OK
    values = {kv.key: kv.value for kv in status.values}
    assert (values["alignment_frames.held"], values["alignment_frames.relative-only"],
            values["alignment_frames.fitted"]) == ("1", "1", "1")
    with pytest.raises(ValueError):
        stats.aligned("almost")


def test_drop_and_bad_input_reasons_are_enum_members_and_still_their_text() -> None:
    stats = NodeStats()
    stats.drop("superseded")
    stats.drop(DropReason.SUPERSEDED, 2)
    stats.warn("no_camera_info", "no camera_info within 0.06 s")
    stats.warn(BadInput.NO_CAMERA_INFO, "no camera_info within 0.06 s")
    assert stats.dropped == {DropReason.SUPERSEDED: 3} and stats.dropped["superseded"] == 3
    assert all(type(k) is DropReason for k in stats.dropped) and all(type(k) is BadInput for k in stats.warnings)
    assert stats.warnings[BadInput.NO_CAMERA_INFO] == 2
    values = stats.snapshot()
    assert values["dropped.superseded"] == "3" and values["bad_input.no_camera_info"] == "2"


def test_health_rules() -> None:
    # One place, first match wins: failed loading, then not configured, internal errors, conditions, bad input,
    # alignment; each rule checked against the next one down.
    stats = NodeStats(recent_window_s=10.0)
    stats.aligned(AlignmentState.HELD)
    stats.warn("bad_image", "image refused", now_s=100.0)
    stats.internal_error("RuntimeError('x')", now_s=100.0)
    cases = [
        (HealthInputs(configured=False, configure_error="no such model"), Health.ERROR, "models failed to load"),
        (HealthInputs(configured=False), Health.WARN, "not configured"),
        (HealthInputs(configured=True, conditions=("no image on image for 6.0 s",)), Health.ERROR, "internal errors"),
    ]
    for inputs, level, text in cases:
        got, message = assess_health(stats, inputs, now_s=100.0)
        assert got == level and text in message, (inputs, got, message)
    # 11 s later the internal error and the bad input are out of the window: the condition, then the alignment.
    assert assess_health(stats, HealthInputs(True, conditions=("silent",)), now_s=111.0)[0] == Health.WARN
    assert assess_health(stats, HealthInputs(True), now_s=111.0) == (Health.WARN, "alignment held")
    assert assess_health(stats, HealthInputs(True), now_s=105.0)[1].startswith("1 internal errors")
