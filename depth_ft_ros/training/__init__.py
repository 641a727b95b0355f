"""Fine-tuning on a robot's own bags (the E2E-FT recipe, LiDAR supervision). Not imported by the node."""
