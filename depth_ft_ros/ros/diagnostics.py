"""/diagnostics message for the node: one DiagnosticStatus with flat key/values."""

from __future__ import annotations

from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue


def build_diagnostics(node_name: str, stamp: Any, stats: dict[str, str], extra: dict[str, str],
                      configured: bool, active: bool) -> DiagnosticArray:
    status = DiagnosticStatus(name=f"{node_name}: depth pipeline", hardware_id=extra.get("device", ""))
    values = {"state": "active" if active else ("configured" if configured else "unconfigured"), **stats, **extra}
    if not configured:
        status.level, status.message = DiagnosticStatus.WARN, "not configured (no model loaded)"
    elif values.get("alignment.state") in ("relative-only", "held"):
        status.level = DiagnosticStatus.WARN
        status.message = f"alignment {values['alignment.state']}: {values.get('alignment.reason', '')}".strip()
    elif int(stats.get("bad_inputs", "0")) > 0:
        status.level, status.message = DiagnosticStatus.OK, f"running; last bad input: {stats.get('last_warning', '')}"
    else:
        status.level, status.message = DiagnosticStatus.OK, "running"
    status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
    array = DiagnosticArray()
    array.header.stamp = stamp
    array.status = [status]
    return array
