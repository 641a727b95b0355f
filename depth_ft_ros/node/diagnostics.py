"""/diagnostics message for the node: one DiagnosticStatus per camera with flat key/values, as diagnostic_updater
makes them.

Name "<fully qualified node name>: depth pipeline" (two nodes in two namespaces are two statuses), and with several
cameras "<node>: <camera> depth pipeline", each with its own level; hardware_id names the camera frame and the
model. The level comes from the camera's counters and typed states by the rules of frame/stats.py (assess_health:
ERROR for failed loading or recent internal errors, WARN for not configured, active conditions, recent bad input,
held or relative-only alignment, else OK), never from the text of a value. Counts within the window (`*.recent`)
and rates stand beside the totals."""

from __future__ import annotations

from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from depth_ft_ros.frame.stats import HealthInputs, NodeStats, assess_health


def build_diagnostics(name: str, stamp: Any, stats: NodeStats, extra: dict[str, str], configured: bool,
                      active: bool, hardware_id: str = "", configure_error: str = "",
                      conditions: list[str] | None = None, now_s: float | None = None) -> DiagnosticArray:
    """The single camera's /diagnostics message."""
    return diagnostic_array(stamp, [build_status(name, stats, extra, configured, active, hardware_id,
                                                 configure_error, conditions, now_s)])


def diagnostic_array(stamp: Any, statuses: list[DiagnosticStatus]) -> DiagnosticArray:
    array = DiagnosticArray()
    array.header.stamp = stamp
    array.status = statuses
    return array


def build_status(name: str, stats: NodeStats, extra: dict[str, str], configured: bool, active: bool,
                 hardware_id: str = "", configure_error: str = "", conditions: list[str] | None = None,
                 now_s: float | None = None, camera: str = "") -> DiagnosticStatus:
    """One camera's status from its counters (stats.recent), its values from their text snapshot."""
    label = f"{camera} depth pipeline" if camera else "depth pipeline"
    status = DiagnosticStatus(name=f"{name}: {label}", hardware_id=hardware_id)
    state = "active" if active else ("configured" if configured else "unconfigured")
    snapshot = stats.snapshot(now_s)
    values = {"state": state, **snapshot, **extra}
    level, status.message = assess_health(stats, HealthInputs(configured, configure_error, tuple(conditions or ())),
                                          now_s)
    status.level = bytes([int(level)]) if isinstance(DiagnosticStatus.OK, bytes) else int(level)
    status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
    return status
