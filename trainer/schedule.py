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


TRANSITIONS = ("step", "linear")


def kd_weight_at(step: int, *, weight: float, n_kd: int, transition: str = "step", transition_steps: int = 0) -> float:
    """KD weight for optimizer step ``step`` (0-based).

    ``weight`` for steps ``0 .. n_kd - 1`` (phase one). After that, ``step`` drops to 0 at once;
    ``linear`` gives step ``n_kd + i`` the weight ``weight * (1 - i / transition_steps)``, reaching 0
    at step ``n_kd + transition_steps``. A step whose weight is 0 needs no soft labels (phase two).
    """
    if transition not in TRANSITIONS:
        raise ValueError(f"unknown transition {transition!r}; choose one of {', '.join(TRANSITIONS)}")
    if step < n_kd:
        return weight
    if transition == "step" or transition_steps <= 0:
        return 0.0
    i = step - n_kd
    return max(0.0, weight * (1.0 - i / transition_steps))
