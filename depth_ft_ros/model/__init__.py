"""The networks, ROS-free: DepthFtPredictor (one checkpoint: families/, or an ONNX export: onnx/) and the
shared networks of a process (networks.py: one copy of each model, frames batched by processing size)."""
