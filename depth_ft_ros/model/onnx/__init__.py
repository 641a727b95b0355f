"""ONNX Runtime execution of an exported folder (`depth-ft-ros export-onnx`): runtime.py runs the three
stages, loader.py builds a DepthFtPredictor around them."""
