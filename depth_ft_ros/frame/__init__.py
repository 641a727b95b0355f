"""One frame's path, ROS-free: the FrameProcessor (processor.py) that the node, the replay and batch engines
drive; the hand-over between threads (sync.py), counters (stats.py) and false-colour pictures (colorize.py)."""
