"""The thin ROS 2 layer: message <-> numpy conversion and the node. Needs rclpy."""
