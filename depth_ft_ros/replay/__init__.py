"""rosbag2 bags: reading and writing with the pure-Python `rosbags` library (no rclpy in rosbag_io, messages,
topics, transforms, playback, demo_scene, preview, report), and the replay of a bag through the real node over
rclpy (replay.py, session.py, analysis.py)."""
