"""Schedules as pure functions of the step, so a resumed run computes exactly the same values."""

from __future__ import annotations

import math


def lr_at(step: int, *, peak: float, warmup: int, total: int, min_ratio: float) -> float:
    """Learning rate for optimizer step ``step`` (0-based): linear warm-up, then cosine to ``min_ratio * peak``.

    Warm-up goes from ``peak / warmup`` at step 0 up to ``peak`` at step ``warmup - 1``; the cosine
    decay covers steps ``warmup .. total - 1`` and ends at ``min_ratio * peak``.
    """
    if step < warmup:
        return peak * (step + 1) / warmup
    decay_steps = max(1, total - 1 - warmup)
    progress = min(1.0, (step - warmup) / decay_steps)
    floor = min_ratio * peak
    return floor + 0.5 * (peak - floor) * (1.0 + math.cos(math.pi * progress))
