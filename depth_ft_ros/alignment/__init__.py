"""Affine-invariant prediction -> metric depth, ROS-free: MetricAligner (aligner.py) over the global fit
(scale_shift.py), the temporal filter (temporal.py) and the local correction (local.py); per-pixel confidence and
the flying-pixel mask (confidence.py)."""
