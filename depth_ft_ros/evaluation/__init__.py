"""Evaluation and simulation, apart from the runtime core: ground truth (Middlebury), simulated LiDAR, synthetic
model-like predictions, depth metrics and tiny random checkpoints. Used by tests, the demo, bench and eval-alignment;
the runtime (model, geometry, alignment, frame) never imports from here."""
