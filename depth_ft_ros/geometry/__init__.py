"""Camera geometry, ROS-free: PinholeCamera (REP 118/104), rectification, poses, sparse points -> pixels, and the
organized cloud arrays."""
