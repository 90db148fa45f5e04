"""Fairness: Gini by hand, the 3-person schedule, and hypothesis properties."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from metrics_programs import D0, day, three_person_program

from taskbroker.plugins.metrics.fairness import (
    cohort_fairness,
    fairness_index,
    fairness_metric,
    gini,
)
from taskbroker.plugins.metrics.workload import Window, absent_days, window_assignments

loads = st.lists(st.floats(min_value=0, max_value=1000, allow_nan=False), min_size=1,
                 max_size=40)


def pairwise_gini(values: list[float]) -> float:
    """Independent definition: mean absolute difference over ordered pairs / (2 * mean)."""
    n, total = len(values), sum(values)
    if total == 0:
        return 0.0
    diff = sum(abs(a - b) for a, b in itertools.product(values, repeat=2))
    return diff / (2 * n * n * (total / n))


def test_gini_by_hand() -> None:
    # [0, 10, 20]: ordered-pair |differences| sum to 2 * (10 + 20 + 10) = 80;
    # G = 80 / (2 * 3^2 * mean 10) = 80 / 180 = 0.4444...
    assert gini([0, 10, 20]) == pytest.approx(4 / 9)
    assert gini([10, 20, 0]) == pytest.approx(4 / 9)
    # two people a <= b: G = (b - a) / (2 (a + b))
    assert gini([240, 360]) == pytest.approx(0.1)
    assert gini([]) == 0.0
    assert gini([0, 0, 0]) == 0.0
    # one person carries everything among 4: G = (n - 1) / n
    assert gini([0, 0, 0, 8]) == pytest.approx(0.75)


def test_gini_rejects_negative_loads() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        gini([1, -1])


def test_three_person_fairness_by_hand() -> None:
    # Cohorts: faculty = {F} (one person: Gini 0, fairness 1);
    # pgy1 = {R1: 360 h, R2: 280 h}: G = 80 / (2 * 640) = 0.0625 -> fairness 0.9375.
    # Program value = size-weighted mean = (1 * 1 + 2 * 0.9375) / 3 = 0.958333...
    program = three_person_program()
    window = Window(D0, day(27))
    asg = window_assignments(program.current_run(), window)
    result = fairness_metric(program, window, asg, absent_days(program, window))
    assert result["value"] == pytest.approx(2.875 / 3, abs=1e-4)
    assert result["status"] == "good"  # >= 0.90
    cohorts = result["details"]["cohorts"]
    assert cohorts["faculty"]["value"] == 1.0
    assert cohorts["pgy1"]["gini"] == pytest.approx(0.0625)
    assert cohorts["pgy1"]["most_loaded"][0] == {"person": "R1", "name": "Res One",
                                                "hours": 360.0}
    assert cohorts["pgy1"]["least_loaded"][0]["person"] == "R2"
    assert result["details"]["least_fair_cohort"] == "pgy1"
    assert result["thresholds"]["warning_below"] == 0.90


def test_available_person_with_zero_load_counts() -> None:
    # In the first week only R1 works (R2 shifted out): pgy1 loads {R1: 90, R2: 0}
    # -> Gini = 90 / (2 * 90) = 0.5 -> pgy1 fairness 0.5; program (1 + 2 * 0.5) / 3 = 2/3.
    program = three_person_program()
    window = Window(D0, day(6))
    asg = [a for a in window_assignments(program.current_run(), window) if a.person != "R2"]
    cf = cohort_fairness(program, window, asg, absent_days(program, window))
    assert cf.cohorts["pgy1"]["value"] == pytest.approx(0.5)
    assert cf.cohorts["pgy1"]["unloaded_people"] == 1
    assert cf.value == pytest.approx(2 / 3)


def test_person_absent_whole_window_is_not_counted() -> None:
    from taskbroker.schedule.program import Absence

    base = three_person_program()
    program = base.model_copy(update={"absences": (
        *base.absences, Absence(person="R2", start=D0, end=day(6)))})
    window = Window(D0, day(6))
    asg = [a for a in window_assignments(program.current_run(), window) if a.person != "R2"]
    cf = cohort_fairness(program, window, asg, absent_days(program, window))
    assert cf.cohorts["pgy1"]["people"] == 1
    assert cf.value == 1.0


@settings(max_examples=200, deadline=None)
@given(loads)
def test_fairness_in_unit_interval_and_matches_pairwise_definition(values: list[float]) -> None:
    f = fairness_index(values)
    assert 0.0 <= f <= 1.0
    assert gini(values) == pytest.approx(pairwise_gini(values), abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(st.floats(min_value=0, max_value=1000, allow_nan=False), st.integers(1, 50))
def test_equal_loads_are_perfectly_fair(load: float, n: int) -> None:
    assert fairness_index([load] * n) == pytest.approx(1.0, abs=1e-12)


@settings(max_examples=300, deadline=None)
@given(loads, st.floats(min_value=0, max_value=1))
def test_moving_load_from_busiest_to_idlest_never_lowers_fairness(
    values: list[float], share: float
) -> None:
    hi = max(range(len(values)), key=values.__getitem__)
    lo = min(range(len(values)), key=values.__getitem__)
    amount = share * (values[hi] - values[lo])  # any amount up to the gap
    moved = list(values)
    moved[hi] -= amount
    moved[lo] += amount
    assert fairness_index(moved) >= fairness_index(values) - 1e-9


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=2, max_size=2))
def test_program_fairness_in_unit_interval(days_worked: list[int]) -> None:
    from metrics_programs import asg, make_program, make_run

    a = [asg("R1", day(k), "AM", 8) for k in range(days_worked[0])]
    a += [asg("R2", day(k), "AM", 8) for k in range(days_worked[1])]
    program = make_program([make_run("r", a)])
    window = Window(D0, day(6))
    cf = cohort_fairness(program, window, a, {})
    assert 0.0 <= cf.value <= 1.0
    if days_worked[0] == days_worked[1]:
        assert math.isclose(cf.value, 1.0)
