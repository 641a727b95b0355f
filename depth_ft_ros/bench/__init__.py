"""Benchmarks behind `depth-ft-ros bench` and `bench-node` (not imported by the node)."""
