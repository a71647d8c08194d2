"""Measures over a run's evaluation curve that cannot flatter it: pure functions over (step, value) points.

A curve is known at its evaluations only; between two of them it is taken as the straight line. So a
value "at 70% of the steps" is read at exactly that step, and the step at which a run reaches a target
loss is found between evaluations, not rounded to the evaluation at or after it. Two rules keep the
reach honest:

- a run reaches the target where it goes at or below it *for good*: a dip below that rises above again
  does not count, only the last crossing after which every evaluation stays at or below;
- a run whose only evaluation at or below the target is its last one reaches it at that last
  evaluation's step (no interpolation inside the last interval): for a run of the baseline's length
  that is 100% of the steps, no saving.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

from shared.errors import SaltError

Point = tuple[float, float]
"""(step, value) of one evaluation; steps ascending."""


def value_at(points: Sequence[Point], step: float) -> float:
    """The value at ``step`` on the straight line between the evaluations around it."""
    if not points:
        raise SaltError("a curve with no evaluation has no value at any step", "evaluate the run at least once")
    first, last = points[0][0], points[-1][0]
    if not first <= step <= last:
        raise SaltError(f"step {step:g} lies outside the evaluated steps {first:g}-{last:g}",
                        "read the curve inside the run's evaluations")
    for (s0, v0), (s1, v1) in pairwise(points):
        if s0 <= step <= s1:
            return v0 if s1 == s0 else v0 + (v1 - v0) * (step - s0) / (s1 - s0)
    return points[-1][1]  # one evaluation, at exactly ``step``


def reach_step(points: Sequence[Point], target: float) -> float | None:
    """The (fractional) step from which the curve stays at or below ``target``; None when it ends above it.

    The crossing is interpolated between the last evaluation above the target and the next one, unless
    that next one is the last evaluation: then the reach is the last evaluation's step.
    """
    if not points or points[-1][1] > target:
        return None
    above = [i for i, (_, v) in enumerate(points) if v > target]
    if not above:
        return float(points[0][0])
    i = above[-1]
    if i == len(points) - 2:
        return float(points[-1][0])
    (s0, v0), (s1, v1) = points[i], points[i + 1]
    return s0 + (s1 - s0) * (v0 - target) / (v0 - v1)


def reach_label(fraction: float | None) -> str:
    """A reach fraction as the tables show it: a percentage, ``no saving`` (100% or more) or ``never``."""
    if fraction is None:
        return "never"
    return "no saving" if fraction >= 1.0 else f"{fraction:.0%}"


def teacher_s_at(step: float, teacher_s: float, teacher_steps: int) -> float:
    """The teacher's time up to ``step``: its total over the run, pro-rated over the steps that asked it."""
    if teacher_steps <= 0 or teacher_s <= 0.0:
        return 0.0
    return teacher_s * min(step, teacher_steps) / teacher_steps


def time_to(step: float, llm_s: Sequence[Point], teacher_s: float, teacher_steps: int,
            slm_share_s: float) -> dict[str, float]:
    """Wall-clock to ``step``: the LLM's own time there (cumulative, between evaluations), the teacher's time
    up to there, and the run's share of the SLM's training; ``total_s`` their sum."""
    parts = {"llm_s": value_at(llm_s, step), "teacher_s": teacher_s_at(step, teacher_s, teacher_steps),
             "slm_share_s": slm_share_s}
    return {**parts, "total_s": sum(parts.values())}


LEAD_AT = 0.8
"""Where the lead that a reach of at most this fraction of the baseline's steps needs is read."""


def leads(run: Sequence[Point], baseline: Sequence[Point], budget: int,
          kd_end: float | None) -> dict[str, float | None]:
    """How far a run's loss is below its baseline's (the lead, in nats), and the lead it would need.

    ``kd_end``: the lead where phase one ended; ``at_80``: at 80% of the baseline's ``budget`` steps;
    ``needed_80``: the baseline's own fall over its last 20% of steps, which is the lead at 80% that reaching
    the baseline's final loss by then takes (a run with ``at_80 >= needed_80`` is at or below that loss
    there); ``end``: at the run's last step, when the baseline was evaluated there too. A value the curves do
    not cover is None.
    """

    def lead_at(step: float | None) -> float | None:
        if step is None or not (run and baseline):
            return None
        lo, hi = max(run[0][0], baseline[0][0]), min(run[-1][0], baseline[-1][0])
        return value_at(baseline, step) - value_at(run, step) if lo <= step <= hi else None

    at = LEAD_AT * budget
    covered = bool(baseline) and baseline[0][0] <= at <= baseline[-1][0] and baseline[-1][0] == budget
    return {"kd_end": lead_at(kd_end), "at_80": lead_at(at),
            "needed_80": value_at(baseline, at) - baseline[-1][1] if covered else None,
            "end": lead_at(run[-1][0]) if run else None}
