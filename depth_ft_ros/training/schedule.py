"""The E2E-FT learning-rate schedule: linear warm-up, then exponential decay to a fraction of the peak."""

from __future__ import annotations


def lr_factor(step: int, total_steps: int, warmup_steps: int, final_fraction: float) -> float:
    """Multiplier of the peak learning rate for optimizer step `step` (0-based): (step + 1) / warmup during the
    warm-up, then final_fraction ** (progress through the remaining steps), reaching final_fraction at the end."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(total_steps - warmup_steps - 1, 1)
    progress = min((step - warmup_steps) / decay_steps, 1.0)
    return float(final_fraction**progress)
