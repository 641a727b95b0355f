"""Export tools (not imported by the node): `depth-ft-ros export-onnx` writes an ONNX export folder."""
