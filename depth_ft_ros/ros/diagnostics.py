"""/diagnostics message for the node: one DiagnosticStatus with flat key/values.

Level, first match wins: not configured -> WARN; an internal error within the last recent_window_s -> ERROR
(it stays ERROR while they repeat, and recovers one window after the last); bad input within that window ->
WARN; alignment held or relative-only -> WARN; else OK."""

from __future__ import annotations

from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue


def build_diagnostics(node_name: str, stamp: Any, stats: dict[str, str], extra: dict[str, str],
                      configured: bool, active: bool) -> DiagnosticArray:
    status = DiagnosticStatus(name=f"{node_name}: depth pipeline", hardware_id=extra.get("device", ""))
    values = {"state": "active" if active else ("configured" if configured else "unconfigured"), **stats, **extra}
    if not configured:
        status.level, status.message = DiagnosticStatus.WARN, "not configured (no model loaded)"
    elif int(stats.get("internal_errors.recent", "0")) > 0:
        status.level = DiagnosticStatus.ERROR
        status.message = (f"{stats['internal_errors.recent']} internal errors in the last "
                          f"{stats['recent_window_s']} s; last: {stats.get('last_internal_error', '')}")
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
