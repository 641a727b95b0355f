"""depth_ft_ros: single-step diffusion depth and normals, metric-aligned, for ROS 2."""

__version__ = "0.1.0"
