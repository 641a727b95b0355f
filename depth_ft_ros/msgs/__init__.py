"""ROS message <-> numpy conversions (sensor_msgs types; rclpy only to deserialize raw bytes) and the topic names."""
