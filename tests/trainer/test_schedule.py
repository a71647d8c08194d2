"""The KD-weight schedules against hand-computed values."""

from __future__ import annotations

import math

import pytest

from trainer.schedule import kd_fall_steps, kd_weight_at


def test_kd_schedule_step() -> None:
    kw = dict(weight=0.5, end_step=10, transition="step")
    assert kd_weight_at(0, **kw) == 0.5
    assert kd_weight_at(9, **kw) == 0.5
    assert kd_weight_at(10, **kw) == 0.0
    assert kd_weight_at(1000, **kw) == 0.0


def test_kd_schedule_linear() -> None:
    kw = dict(weight=0.5, end_step=10, transition="linear", transition_steps=4)
    assert [kd_weight_at(s, **kw) for s in range(9, 16)] == pytest.approx([0.5, 0.5, 0.375, 0.25, 0.125, 0.0, 0.0])


def test_kd_schedule_cosine() -> None:
    kw = dict(weight=0.5, end_step=10, transition="cosine", transition_steps=4)
    half = [0.5 * (1 + math.cos(math.pi * i / 4)) / 2 for i in range(4)]
    assert [kd_weight_at(s, **kw) for s in range(9, 16)] == pytest.approx([0.5, *half, 0.0, 0.0])
    # By hand: cos(pi/4) = 0.7071..., so step 11 has 0.25 * 1.7071 = 0.42678.
    assert kd_weight_at(11, **kw) == pytest.approx(0.426777, abs=1e-6)


def test_kd_schedule_warmup_stable_decay() -> None:
    kw = dict(weight=0.6, end_step=6, transition="wsd", transition_steps=4, warmup_steps=3)
    # Ramp 0.2, 0.4, 0.6 over three steps; hold to step 6; then 0.6 * (1 - i / 4) for i = 0..4.
    assert [kd_weight_at(s, **kw) for s in range(12)] == pytest.approx(
        [0.2, 0.4, 0.6, 0.6, 0.6, 0.6, 0.6, 0.45, 0.3, 0.15, 0.0, 0.0])


def test_kd_schedule_wsd_without_warmup_is_linear_and_warmup_is_wsd_only() -> None:
    wsd = dict(weight=0.5, end_step=5, transition="wsd", transition_steps=2)
    lin = dict(weight=0.5, end_step=5, transition="linear", transition_steps=2)
    assert [kd_weight_at(s, **wsd) for s in range(9)] == [kd_weight_at(s, **lin) for s in range(9)]
    # The ramp belongs to wsd: the other shapes hold the full weight from step 0.
    assert kd_weight_at(0, weight=0.5, end_step=5, transition="linear", transition_steps=2, warmup_steps=4) == 0.5


def test_kd_schedule_an_early_end_starts_the_fall_there() -> None:
    """An end decided during the run (``--kd-until auto``) moves the whole fall with it."""
    kw = dict(weight=0.4, transition="linear", transition_steps=2)
    assert [kd_weight_at(s, end_step=3, **kw) for s in range(7)] == pytest.approx([0.4, 0.4, 0.4, 0.4, 0.2, 0, 0])
    assert [kd_weight_at(s, end_step=0, **kw) for s in range(3)] == pytest.approx([0.4, 0.2, 0.0])


def test_kd_fall_steps() -> None:
    assert kd_fall_steps("step", 7) == 0
    assert [kd_fall_steps(t, 7) for t in ("linear", "cosine", "wsd")] == [7, 7, 7]


def test_kd_schedule_rejects_unknown_transition() -> None:
    with pytest.raises(ValueError, match="unknown transition"):
        kd_weight_at(0, weight=0.5, end_step=1, transition="exponential")
