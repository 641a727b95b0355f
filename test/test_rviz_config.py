"""The bundled RViz config follows the launch arguments: output topics under the node's namespace, the LiDAR
display on the sparse-points topic, the fixed frame; and it shows topics the node really publishes."""

from __future__ import annotations

from pathlib import Path

import yaml

from depth_ft_ros.node.rviz_config import render_rviz_config

RVIZ = Path(__file__).resolve().parents[1] / "config" / "depth_ft.rviz"
# What the node publishes (README's topic table; image_transport pairing of depth/image with depth/camera_info).
NODE_OUTPUTS = {"depth/image", "depth/camera_info", "depth/relative", "depth/colorized", "normals/image",
                "normals/camera_info", "normals/colorized", "points"}


def _topics(text: str) -> list[str]:
    config = yaml.safe_load(text)
    return [d["Topic"]["Value"] for d in config["Visualization Manager"]["Displays"] if "Topic" in d]


def test_bundled_config_shows_node_outputs_under_the_default_namespace() -> None:
    topics = _topics(RVIZ.read_text())
    outputs = [t for t in topics if t != "/lidar/points"]
    assert outputs and all(t.startswith("/depth_ft/") and t[len("/depth_ft/"):] in NODE_OUTPUTS for t in outputs)


def test_render_follows_namespace_lidar_and_fixed_frame() -> None:
    text = render_rviz_config(RVIZ.read_text(), "robot1/front_depth", "/ouster/points", "odom")
    config = yaml.safe_load(text)
    assert config["Visualization Manager"]["Global Options"]["Fixed Frame"] == "odom"
    topics = _topics(text)
    assert "/ouster/points" in topics and "/lidar/points" not in topics
    outputs = [t for t in topics if t != "/ouster/points"]
    assert {t.removeprefix("/robot1/front_depth/") for t in outputs} <= NODE_OUTPUTS
    assert all(t.startswith("/robot1/front_depth/") for t in outputs)
    # Everything else is kept (RViz reads the same keys).
    before = yaml.safe_load(RVIZ.read_text())
    assert [d["Class"] for d in config["Visualization Manager"]["Displays"]] == [
        d["Class"] for d in before["Visualization Manager"]["Displays"]]
