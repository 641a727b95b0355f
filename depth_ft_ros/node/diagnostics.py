"""/diagnostics message for the node: one DiagnosticStatus per camera with flat key/values, as diagnostic_updater
makes them.

Name "<fully qualified node name>: depth pipeline" (two nodes in two namespaces are two statuses), and with several
cameras "<node>: <camera> depth pipeline", each with its own level; hardware_id names the camera frame and the
model. Level, first match wins:
- ERROR: the models failed to load (configure failed), or an internal error within the last recent_window_s
  (it stays ERROR while they repeat, and recovers one window after the last);
- WARN: not configured; an active condition (incompatible QoS on an input, no image for input_timeout s); bad
  input within the window; alignment held or relative-only;
- OK: frames flow.
Counts within the window (`*.recent`) and rates stand beside the totals."""

from __future__ import annotations

from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from depth_ft_ros.frame.stats import NodeStats


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
    bad_recent, errors_recent = stats.recent(now_s)
    window = f"{stats.recent_window_s:g}"
    conditions = conditions or []
    if configure_error:
        status.level, status.message = DiagnosticStatus.ERROR, f"models failed to load: {configure_error}"
    elif not configured:
        status.level, status.message = DiagnosticStatus.WARN, "not configured (no model loaded)"
    elif errors_recent > 0:
        status.level = DiagnosticStatus.ERROR
        status.message = (f"{errors_recent} internal errors in the last {window} s; last: "
                          f"{stats.last_internal_error}")
    elif conditions:
        status.level, status.message = DiagnosticStatus.WARN, "; ".join(conditions)
    elif bad_recent > 0:
        status.level = DiagnosticStatus.WARN
        status.message = f"{bad_recent} bad inputs in the last {window} s; last: {stats.last_warning}"
    elif values.get("alignment.state") in ("relative-only", "held"):
        status.level = DiagnosticStatus.WARN
        status.message = f"alignment {values['alignment.state']}: {values.get('alignment.reason', '')}".strip()
    else:
        status.level, status.message = DiagnosticStatus.OK, "running"
    status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
    return status
