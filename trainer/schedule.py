"""Schedules as pure functions of the step, so a resumed run computes exactly the same values."""

from __future__ import annotations

import math

from trainer.config.choices import TRANSITIONS


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


def kd_weight_at(step: int, *, weight: float, end_step: int, transition: str = "step", transition_steps: int = 0,
                 warmup_steps: int = 0) -> float:
    """KD weight for optimizer step ``step`` (0-based); phase one's full weight ends at ``end_step``.

    ``weight`` for steps ``0 .. end_step - 1`` (phase one). After that, ``step`` drops to 0 at once;
    ``linear`` gives step ``end_step + i`` the weight ``weight * (1 - i / transition_steps)``, reaching 0
    at step ``end_step + transition_steps``; ``cosine`` falls over the same span along a half cosine,
    ``weight * (1 + cos(pi * i / transition_steps)) / 2`` (gentle at both ends). ``wsd`` (warmup-stable-
    decay) first ramps up as the learning rate does, ``weight * (step + 1) / warmup_steps`` for steps
    ``0 .. warmup_steps - 1``, holds ``weight`` until ``end_step`` and falls linearly as ``linear`` does. A step
    whose weight is 0 needs no soft labels (phase two).
    """
    if transition not in TRANSITIONS:
        raise ValueError(f"unknown transition {transition!r}; choose one of {', '.join(TRANSITIONS)}")
    if step < end_step:
        if transition == "wsd" and step < warmup_steps:
            return weight * (step + 1) / warmup_steps
        return weight
    if transition == "step" or transition_steps <= 0:
        return 0.0
    frac = min(1.0, (step - end_step) / transition_steps)
    if transition == "cosine":
        return weight * 0.5 * (1.0 + math.cos(math.pi * frac))
    return max(0.0, weight * (1.0 - frac))


def kd_fall_steps(transition: str, transition_steps: int) -> int:
    """Steps after ``end_step`` whose KD weight is still above 0 (0 for ``step``)."""
    return 0 if transition == "step" else transition_steps
