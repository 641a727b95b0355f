"""rosbag2 files through the pure-Python `rosbags` library: no rclpy here, so bags are written and read on any
machine. The replay verb (depth_ft_ros.tools.replay) joins this to the ROS graph."""
