"""Evaluation and simulation, apart from the runtime core: ground truth (Middlebury), simulated LiDAR, synthetic
model-like predictions, depth metrics and tiny random checkpoints. Used by tests, the demo, bench and eval-alignment;
depth_ft_ros.core never imports from here."""
