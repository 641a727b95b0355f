"""launch/depth_ft.launch.py, where launch_ros is importable (a ROS install; not the pip wheels)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

launch = pytest.importorskip("launch", reason="launch / launch_ros come with a ROS install, not from pip")
launch_ros = pytest.importorskip("launch_ros")
REPO = Path(__file__).resolve().parents[1]


def load_description() -> object:
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    try:
        get_package_share_directory("depth_ft_ros")
    except PackageNotFoundError:
        pytest.skip("depth_ft_ros is not installed in an ament index: colcon build and source install/setup.bash")
    spec = importlib.util.spec_from_file_location("depth_ft_launch", REPO / "launch/depth_ft.launch.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


def test_launch_declares_the_documented_arguments_and_the_node() -> None:
    from launch.actions import DeclareLaunchArgument
    from launch_ros.actions import LifecycleNode

    description = load_description()
    arguments = {e.name: e for e in description.entities if isinstance(e, DeclareLaunchArgument)}
    assert {"camera", "image", "camera_info", "sparse_points", "params_file", "namespace", "use_sim_time",
            "rviz", "cameras", "camera_image"} <= set(arguments)
    # The node and RViz are made when launched (their topics depend on `cameras`): make them with the defaults.
    context = launch.LaunchContext()
    for argument in arguments.values():
        context.launch_configurations[argument.name] = launch.utilities.perform_substitutions(
            context, argument.default_value)
    functions = [e for e in description.entities if isinstance(e, launch.actions.OpaqueFunction)]
    made = [action for f in functions[:1] for action in f.execute(context) or []]
    assert len(made) == 1 and isinstance(made[0], LifecycleNode)
    context.launch_configurations["cameras"] = "front,left,right"
    assert len([a for a in functions[0].execute(context) or []]) == 1  # one node for three cameras
