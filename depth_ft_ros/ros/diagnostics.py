"""/diagnostics message for the node: one DiagnosticStatus with flat key/values, as diagnostic_updater makes them.

Name "<fully qualified node name>: depth pipeline" (two nodes in two namespaces are two statuses); hardware_id
names the camera frame and the model. Level, first match wins:
- ERROR: the models failed to load (configure failed), or an internal error within the last recent_window_s
  (it stays ERROR while they repeat, and recovers one window after the last);
- WARN: not configured; an active condition (incompatible QoS on an input, no image for input_timeout s); bad
  input within the window; alignment held or relative-only;
- OK: frames flow.
Counts within the window (`*.recent`) and rates stand beside the totals."""

from __future__ import annotations

from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue


def build_diagnostics(name: str, stamp: Any, stats: dict[str, str], extra: dict[str, str], configured: bool,
                      active: bool, hardware_id: str = "", configure_error: str = "",
                      conditions: list[str] | None = None) -> DiagnosticArray:
    status = DiagnosticStatus(name=f"{name}: depth pipeline", hardware_id=hardware_id)
    state = "active" if active else ("configured" if configured else "unconfigured")
    values = {"state": state, **stats, **extra}
    conditions = conditions or []
    if configure_error:
        status.level, status.message = DiagnosticStatus.ERROR, f"models failed to load: {configure_error}"
    elif not configured:
        status.level, status.message = DiagnosticStatus.WARN, "not configured (no model loaded)"
    elif int(stats.get("internal_errors.recent", "0")) > 0:
        status.level = DiagnosticStatus.ERROR
        status.message = (f"{stats['internal_errors.recent']} internal errors in the last "
                          f"{stats['recent_window_s']} s; last: {stats.get('last_internal_error', '')}")
    elif conditions:
        status.level, status.message = DiagnosticStatus.WARN, "; ".join(conditions)
    elif int(stats.get("bad_inputs.recent", "0")) > 0:
        status.level = DiagnosticStatus.WARN
        status.message = (f"{stats['bad_inputs.recent']} bad inputs in the last {stats['recent_window_s']} s; "
                          f"last: {stats.get('last_warning', '')}")
    elif values.get("alignment.state") in ("relative-only", "held"):
        status.level = DiagnosticStatus.WARN
        status.message = f"alignment {values['alignment.state']}: {values.get('alignment.reason', '')}".strip()
    else:
        status.level, status.message = DiagnosticStatus.OK, "running"
    status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
    array = DiagnosticArray()
    array.header.stamp = stamp
    array.status = [status]
    return array
