"""The bundled RViz config follows the launch arguments: output topics under the node's namespace, the LiDAR
display on the sparse-points topic, the fixed frame; and it shows topics the node really publishes (asked of a
running node's publishers, not copied from the README)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from node_fixtures import start_node

from depth_ft_ros.node.rviz_config import render_rviz_config

RVIZ = Path(__file__).resolve().parents[1] / "config" / "depth_ft.rviz"
# Topics every node has, not outputs of this one.
_NOT_OUTPUTS = {"/rosout", "/parameter_events", "/diagnostics"}


def _topics(text: str) -> list[str]:
    config = yaml.safe_load(text)
    return [d["Topic"]["Value"] for d in config["Visualization Manager"]["Displays"] if "Topic" in d]


def _published_by_a_running_node(ros_graph: Any) -> set[str]:
    """The output topics a configured node has publishers on, relative to its namespace (asked of the ROS graph)."""
    node = start_node(ros_graph, "rviz_topics", namespace="/depth_ft")
    lister = ros_graph.node("lister")
    topics: set[str] = set()

    def listed() -> bool:
        names = lister.get_publisher_names_and_types_by_node(node.get_name(), node.get_namespace())
        topics.update(name for name, _ in names)
        return "/depth_ft/depth/image" in topics

    assert ros_graph.wait_for(listed, 10.0), topics
    return {t[len("/depth_ft/"):] for t in topics - _NOT_OUTPUTS
            if t.startswith("/depth_ft/") and not t.endswith("/transition_event")}


def test_bundled_config_shows_node_outputs_under_the_default_namespace(ros_graph: Any) -> None:
    published = _published_by_a_running_node(ros_graph)
    assert {"depth/image", "depth/confidence", "points"} <= published  # sanity of the listing itself
    topics = _topics(RVIZ.read_text())
    outputs = [t for t in topics if t != "/lidar/points"]
    assert outputs and all(t.startswith("/depth_ft/") and t[len("/depth_ft/"):] in published for t in outputs), \
        (outputs, published)


def test_render_follows_namespace_lidar_and_fixed_frame() -> None:
    text = render_rviz_config(RVIZ.read_text(), "robot1/front_depth", "/ouster/points", "odom")
    config = yaml.safe_load(text)
    assert config["Visualization Manager"]["Global Options"]["Fixed Frame"] == "odom"
    topics = _topics(text)
    assert "/ouster/points" in topics and "/lidar/points" not in topics
    outputs = [t for t in topics if t != "/ouster/points"]
    bundled = [t.removeprefix("/depth_ft/") for t in _topics(RVIZ.read_text()) if t != "/lidar/points"]
    assert [t.removeprefix("/robot1/front_depth/") for t in outputs] == bundled  # the same outputs, moved
    assert all(t.startswith("/robot1/front_depth/") for t in outputs)
    # Everything else is kept (RViz reads the same keys).
    before = yaml.safe_load(RVIZ.read_text())
    assert [d["Class"] for d in config["Visualization Manager"]["Displays"]] == [
        d["Class"] for d in before["Visualization Manager"]["Displays"]]
