"""The rclpy host: the lifecycle node, its parameters, subscriptions, publishers and /diagnostics. Needs rclpy."""
