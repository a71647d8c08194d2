"""Reach, values at an exact step and wall-clock to a step, on hand-made curves."""

from __future__ import annotations

import pytest

from shared.errors import SaltError
from trainer.experiments.measures import leads, reach_label, reach_step, teacher_s_at, time_to, value_at

CURVE = [(0, 10.0), (50, 6.0), (100, 5.0), (150, 4.5), (200, 4.2), (250, 4.0)]


def test_value_at_interpolates_between_evaluations() -> None:
    assert value_at(CURVE, 175) == pytest.approx(4.35)  # the evaluation at or before it would say 4.5
    assert value_at(CURVE, 150) == 4.5
    assert value_at(CURVE, 0) == 10.0 and value_at(CURVE, 250) == 4.0
    assert value_at([(7, 3.0)], 7) == 3.0
    for outside in (-1, 251):
        with pytest.raises(SaltError, match="outside the evaluated steps"):
            value_at(CURVE, outside)
    with pytest.raises(SaltError, match="no evaluation"):
        value_at([], 0)


def test_no_crossing() -> None:
    assert reach_step(CURVE, 3.9) is None
    assert reach_label(None) == "never"


def test_crossing_between_evaluations() -> None:
    # 4.35 lies halfway between 4.5 (step 150) and 4.2 (step 200).
    assert reach_step(CURVE, 4.35) == pytest.approx(175.0)
    assert reach_label(175 / 250) == "70%"


def test_crossing_exactly_at_an_evaluation() -> None:
    assert reach_step(CURVE, 4.5) == pytest.approx(150.0)
    assert reach_step(CURVE, 10.0) == 0.0  # at or below from the first evaluation on


def test_crossing_only_at_the_last_evaluation_is_no_saving() -> None:
    # Between 4.2 (step 200) and 4.0 (step 250) the line crosses 4.1 at 225, but only the last evaluation
    # is at or below: the reach is the last step, 100% of the steps.
    assert reach_step(CURVE, 4.1) == 250.0
    assert reach_step(CURVE, 4.0) == 250.0  # the baseline against its own final loss, when it still falls
    assert reach_label(250 / 250) == "no saving"


def test_a_dip_below_that_rises_again_does_not_count() -> None:
    dip = [(0, 10.0), (50, 4.0), (100, 4.6), (150, 4.3), (200, 4.1), (250, 4.05)]
    # Below 4.5 at step 50, above it at 100: the reach is the crossing after which it stays below.
    assert reach_step(dip, 4.5) == pytest.approx(100 + 50 * (0.1 / 0.3))
    # A curve that ends above the target never reaches it, whatever it did before.
    assert reach_step([(0, 10.0), (50, 3.0), (100, 5.0)], 4.0) is None


def test_wall_clock_to_a_step() -> None:
    llm = [(0, 0.0), (100, 20.0), (200, 50.0)]
    # Phase one of 40 steps took 8 s of teacher time; the run's share of the SLM is 5 s.
    t = time_to(150, llm, 8.0, 40, 5.0)
    assert t == {"llm_s": pytest.approx(35.0), "teacher_s": 8.0, "slm_share_s": 5.0, "total_s": pytest.approx(48.0)}
    assert teacher_s_at(10, 8.0, 40) == pytest.approx(2.0)
    assert teacher_s_at(10, 0.0, 0) == 0.0  # a baseline asks no teacher
    assert time_to(200, llm, 0.0, 0, 0.0)["total_s"] == 50.0


def test_leads_read_where_phase_one_ended_at_80_percent_and_at_the_end_against_the_lead_needed() -> None:
    baseline = [(0, 9.0), (25, 6.0), (50, 5.0), (75, 4.5), (100, 4.0)]
    run = [(0, 9.0), (25, 5.0), (50, 4.2), (75, 3.8), (100, 3.7)]
    got = leads(run, baseline, 100, kd_end=40)
    assert got["kd_end"] == pytest.approx(5.4 - 4.52)  # interpolated on both curves at step 40
    assert got["at_80"] == pytest.approx(4.4 - 3.78)
    assert got["needed_80"] == pytest.approx(4.4 - 4.0)  # the baseline's fall over its last 20 steps
    assert got["end"] == pytest.approx(0.3)
    # A short run is not read past its last evaluation; nothing without a phase one or a full-length baseline.
    short = leads(run[:3], baseline, 100, kd_end=None)
    assert short["at_80"] is None and short["kd_end"] is None and short["end"] == pytest.approx(0.8)
    assert leads(run, baseline[:4], 100, kd_end=40)["needed_80"] is None
