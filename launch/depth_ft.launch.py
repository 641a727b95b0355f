"""ros2 launch depth_ft_ros depth_ft.launch.py [camera:=/camera] [image:=...] [params_file:=...] [rviz:=true]
   ros2 launch depth_ft_ros depth_ft.launch.py cameras:=front,left,right [params_file:=...]

Starts depth_ft_node (configures and activates itself: autostart) with its topics remapped to a camera
namespace, and optionally RViz with the bundled display config rewritten for the namespace, the LiDAR topic and
`fixed_frame`. With `cameras`, one node serves every camera C with one copy of the models: C/image and
C/camera_info are remapped to /C/<camera_image> and /C/camera_info (a driver per camera namespace), the outputs
are <namespace>/C/depth/image, ...; RViz shows the first camera.
"""

import os
import tempfile

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node


def _cameras(context) -> list:
    return [c.strip() for c in LaunchConfiguration("cameras").perform(context).split(",") if c.strip()]


def _node(context) -> list:
    arg = LaunchConfiguration
    cameras = _cameras(context)
    shared = [("sparse_points", arg("sparse_points")), ("sparse_depth", arg("sparse_depth"))]
    if cameras:
        image = arg("camera_image").perform(context)
        remappings = [(f"{c}/{topic}", f"/{c}/{target}") for c in cameras for topic, target in (
            ("image", image), ("image/compressed", f"{image}/compressed"), ("camera_info", "camera_info"),
            ("sparse_points", "sparse_points"), ("sparse_depth", "sparse_depth"))] + shared
        parameters = [arg("params_file"), {"use_sim_time": arg("use_sim_time"), "cameras": cameras}]
    else:
        remappings = [("image", arg("image")), ("image/compressed", [arg("image"), "/compressed"]),
                      ("camera_info", arg("camera_info")), *shared]
        parameters = [arg("params_file"), {"use_sim_time": arg("use_sim_time")}]
    return [LifecycleNode(package="depth_ft_ros", executable="depth_ft_node", name="depth_ft_node",
                          namespace=arg("namespace"), output="screen", parameters=parameters,
                          remappings=remappings)]


def _rviz(context, share: str) -> list:
    from depth_ft_ros.node.rviz_config import render_rviz_config

    def value(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    cameras = _cameras(context)
    outputs = value("namespace") + (f"/{cameras[0]}" if cameras else "")
    with open(os.path.join(share, "config", "depth_ft.rviz"), encoding="utf-8") as handle:
        text = render_rviz_config(handle.read(), outputs, value("sparse_points"), value("fixed_frame"))
    with tempfile.NamedTemporaryFile("w", suffix=".rviz", prefix="depth_ft_", delete=False) as rendered:
        rendered.write(text)
    return [Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
                 arguments=["-d", rendered.name], parameters=[{"use_sim_time": value("use_sim_time") == "true"}])]


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory("depth_ft_ros")
    arg = LaunchConfiguration
    camera = arg("camera")

    def topic(name: str, default_suffix: str) -> DeclareLaunchArgument:
        return DeclareLaunchArgument(
            name, default_value=[camera, "/", default_suffix],
            description=f"input topic remapped to the node's `{default_suffix}` (default: <camera>/{default_suffix})")

    return LaunchDescription([
        DeclareLaunchArgument("camera", default_value="/camera", description="camera namespace"),
        topic("image", "image_raw"),
        topic("camera_info", "camera_info"),
        DeclareLaunchArgument("sparse_points", default_value="/lidar/points",
                              description="metric points (PointCloud2, any frame: tf or static extrinsics)"),
        DeclareLaunchArgument("sparse_depth", default_value="/sparse_depth",
                              description="sparse depth image (when sparse_input: depth)"),
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "depth_ft.yaml"),
                              description="parameters YAML"),
        DeclareLaunchArgument("namespace", default_value="depth_ft", description="namespace of the outputs"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock (bag replay)"),
        DeclareLaunchArgument("rviz", default_value="false", description="start RViz with config/depth_ft.rviz"),
        DeclareLaunchArgument("fixed_frame", default_value="camera_optical_frame",
                              description="RViz fixed frame (e.g. odom or map on a moving robot)"),
        DeclareLaunchArgument("cameras", default_value="",
                              description="several cameras, one node: comma list, e.g. front,left,right (empty: one "
                              "camera, the `camera` argument)"),
        DeclareLaunchArgument("camera_image", default_value="image_raw",
                              description="with `cameras`: each camera C's image topic is /C/<camera_image>"),
        OpaqueFunction(function=_node),
        OpaqueFunction(function=_rviz, args=[share], condition=IfCondition(arg("rviz"))),
    ])
