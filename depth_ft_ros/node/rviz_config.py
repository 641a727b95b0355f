"""The bundled RViz config, rewritten for the launch arguments: the node's namespace, the LiDAR topic and the
fixed frame. config/depth_ft.rviz is written for the defaults (/depth_ft, /lidar/points, camera_optical_frame) and
stays usable on its own; the launch file renders a copy for other values. No rclpy here."""

from __future__ import annotations

from typing import Any

import yaml

DEFAULT_NAMESPACE = "/depth_ft"
DEFAULT_SPARSE_POINTS = "/lidar/points"


def _absolute(name: str) -> str:
    return name if name.startswith("/") else "/" + name


def render_rviz_config(text: str, namespace: str, sparse_points: str, fixed_frame: str) -> str:
    """The RViz config `text` with the node's output topics under `namespace`, the LiDAR display on
    `sparse_points` and `fixed_frame` as the global fixed frame."""
    config = yaml.safe_load(text)
    manager = config["Visualization Manager"]
    prefix = _absolute(namespace).rstrip("/")
    for display in manager.get("Displays", []):
        topic: dict[str, Any] | None = display.get("Topic")
        if not topic or "Value" not in topic:
            continue
        value = str(topic["Value"])
        if value == DEFAULT_SPARSE_POINTS:
            topic["Value"] = _absolute(sparse_points)
        elif value.startswith(DEFAULT_NAMESPACE + "/"):
            topic["Value"] = prefix + value[len(DEFAULT_NAMESPACE):]
    manager.setdefault("Global Options", {})["Fixed Frame"] = fixed_frame
    return yaml.safe_dump(config, sort_keys=False)
