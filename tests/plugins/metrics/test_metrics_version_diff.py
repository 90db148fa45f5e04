"""metrics_version_diff on two runs differing by known edits."""

from __future__ import annotations

import pytest
from metrics_programs import D0, asg, day, make_program, make_run

from taskbroker.plugins.metrics import TASK_TYPES, data
from taskbroker.plugins.metrics.churn import diff_assignments
from taskbroker.testing import run_handler

DIFF = {t.name: t for t in TASK_TYPES}["metrics_version_diff"]
D1 = day(1)

# Run A (baseline) over D0 .. D1:
RUN_A = [asg("F", D0, "AM", 4), asg("F", D1, "AM", 4),
         asg("R1", D0, "AM", 6), asg("R1", D0, "PM", 6), asg("R1", D1, "AM", 6),
         asg("R2", D0, "AM", 6), asg("R2", D1, "AM", 6)]
# Run B: F adds D0 PM (added); R1's D1 AM moves to surgery (changed: service);
# R2's D0 AM becomes 8 h (changed: hours); R2's D1 AM is dropped (removed).
RUN_B = [asg("F", D0, "AM", 4), asg("F", D1, "AM", 4), asg("F", D0, "PM", 4),
         asg("R1", D0, "AM", 6), asg("R1", D0, "PM", 6), asg("R1", D1, "AM", 6, "surg"),
         asg("R2", D0, "AM", 8)]


@pytest.fixture
def two_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    program = make_program([make_run("A", RUN_A, hours_ago=24), make_run("B", RUN_B)])
    monkeypatch.setattr(data, "load_program", lambda: program)


def test_edits_counts_and_churn(two_runs: None) -> None:
    result, sink = run_handler(DIFF, {"run_id_1": "A", "run_id_2": "B"})
    c = result["changes"]
    # keys in either run: 8 = 4 unchanged + 1 added + 1 removed + 2 changed -> churn 4/8
    assert (c["added_count"], c["removed_count"], c["changed_count"], c["unchanged_count"]) == (
        1, 1, 2, 4)
    assert c["churn_rate"] == 0.5
    assert c["added"] == [{"person": "F", "date": D0.isoformat(), "half": "PM",
                           "service": "med", "hours": 4.0}]
    assert c["removed"][0]["person"] == "R2" and c["removed"][0]["date"] == D1.isoformat()
    changed = {(x["before"]["person"], x["after"]["service"], x["after"]["hours"])
               for x in c["changed"]}
    assert changed == {("R1", "surg", 6.0), ("R2", "med", 8.0)}
    assert result["per_person_churn"] == [
        {"person": "R2", "added": 0, "removed": 1, "changed": 1, "total": 2},
        {"person": "F", "added": 1, "removed": 0, "changed": 0, "total": 1},
        {"person": "R1", "added": 0, "removed": 0, "changed": 1, "total": 1},
    ]
    assert sink.reports[-1][0] == 100


def test_metric_deltas_by_hand(two_runs: None) -> None:
    result, _ = run_handler(DIFF, {"run_id_1": "A", "run_id_2": "B"})
    d = result["metric_deltas"]
    # Coverage A: slots D0 AM (F + 2 PGY-1: need 1, ok), D0 PM (R1, no faculty), D1 AM (ok)
    #   -> 2/3.  B: D0 AM ok, D0 PM (F + R1) ok, D1 AM med (F alone, min 1) ok,
    #   D1 AM surg (R1, no faculty) short -> 3/4.  Delta = 75 - 66.667 = +8.333.
    assert d["coverage"]["run_1"] == pytest.approx(200 / 3, abs=1e-4)
    assert d["coverage"]["run_2"] == 75.0
    assert d["coverage"]["direction"] == "improved"
    # Fairness A: pgy1 R1 18 h vs R2 12 h: G = 6/60 = 0.1 -> 0.9; program (1 + 1.8)/3.
    # B: R1 18 vs R2 8: G = 10/52 -> 0.80769; program (1 + 2 * 0.80769)/3 = 0.87179.
    fa, fb = (1 + 1.8) / 3, (1 + 2 * (1 - 10 / 52)) / 3
    assert d["fairness"]["run_1"] == pytest.approx(fa, abs=1e-4)
    assert d["fairness"]["run_2"] == pytest.approx(fb, abs=1e-4)
    assert d["fairness"]["delta"] == pytest.approx(fb - fa, abs=2e-4)
    assert d["fairness"]["direction"] == "declined"
    # Compliance: a 2-day window is under a week, not checked -> 100 both
    assert d["compliance"]["delta"] == 0.0
    s = result["summary"]
    # fairness declined beyond 0.01 -> not improved; churn 0.5 >= 0.10 -> significant
    assert s["improved"] is False
    assert s["significant_change"] is True
    assert "tolerance" in s["rules"]
    assert result["period"] == {"start_date": D0.isoformat(), "end_date": D1.isoformat(),
                                "days": 2}


def test_same_run_has_no_changes(two_runs: None) -> None:
    result, _ = run_handler(DIFF, {"run_id_1": "A", "run_id_2": "A"})
    assert result["changes"]["churn_rate"] == 0.0
    assert result["summary"] == {**result["summary"], "improved": False,
                                 "significant_change": False}


def test_improved_when_reversed_edit_only_helps(monkeypatch: pytest.MonkeyPatch) -> None:
    # B adds faculty to the uncovered PM slot and nothing else: coverage 2/3 -> 3/3.
    b = [*RUN_A, asg("F", D0, "PM", 4)]
    program = make_program([make_run("A", RUN_A, hours_ago=1), make_run("B", b)])
    monkeypatch.setattr(data, "load_program", lambda: program)
    result, _ = run_handler(DIFF, {"run_id_1": "A", "run_id_2": "B"})
    assert result["metric_deltas"]["coverage"]["delta"] == pytest.approx(100 / 3, abs=1e-3)
    assert result["summary"]["improved"] is True


def test_an_empty_run_is_never_improved(monkeypatch: pytest.MonkeyPatch) -> None:
    # B has no assignments: its coverage of zero required slots would read 100 % (an
    # "improvement" over A's 2/3); it is not comparable instead
    program = make_program([make_run("A", RUN_A, hours_ago=1), make_run("B", [])])
    monkeypatch.setattr(data, "load_program", lambda: program)
    result, _ = run_handler(DIFF, {"run_id_1": "A", "run_id_2": "B"})
    assert result["summary"]["improved"] is False and result["summary"]["comparable"] is False
    assert {d["direction"] for d in result["metric_deltas"].values()} == {"not comparable"}
    assert result["warnings"] == ["run B has no assignments in the compared period: its "
                                  "metrics are not comparable"]


def test_metrics_over_a_window_without_data_say_so(monkeypatch: pytest.MonkeyPatch) -> None:
    from taskbroker.plugins.metrics.computation import NO_DATA_STATUS

    computation = {t.name: t for t in TASK_TYPES}["metrics_computation"]
    program = make_program([make_run("A", RUN_A)])
    monkeypatch.setattr(data, "load_program", lambda: program)
    later = day(100).isoformat()
    result, _ = run_handler(computation, {"start_date": later, "end_date": later})
    analysis = result["schedule_analysis"]
    assert {m["status"] for m in analysis["metrics"].values()} == {NO_DATA_STATUS}
    assert analysis["data_coverage"]["days_with_data"] == 0
    assert analysis["warnings"][0].startswith("no schedule data in the window")
    half, _ = run_handler(computation, {"start_date": D0.isoformat(),
                                        "end_date": day(3).isoformat()})
    cov = half["schedule_analysis"]["data_coverage"]
    assert (cov["days_with_data"], cov["days_without_data"]) == (2, 2)
    assert "no schedule data for 2 of 4 days" in half["schedule_analysis"]["warnings"][0]
    statuses = {m["status"] for m in half["schedule_analysis"]["metrics"].values()}
    assert NO_DATA_STATUS not in statuses


@pytest.mark.parametrize("params,missing", [({"run_id_1": "nope", "run_id_2": "B"}, "nope"),
                                            ({"run_id_1": "A", "run_id_2": "gone"}, "gone")])
def test_missing_run_id_is_a_value_error_naming_it(two_runs: None, params: dict,
                                                   missing: str) -> None:
    with pytest.raises(ValueError, match=repr(missing)):
        run_handler(DIFF, params)


def test_missing_params_are_validation_errors() -> None:
    with pytest.raises(ValueError, match="run_id_2"):
        DIFF.params.model_validate({"run_id_1": "A"})


def test_diff_changed_definition() -> None:
    # same person and block: different service or hours is "changed"; same both: unchanged
    old = [asg("R1", D0, "AM", 4), asg("R1", D0, "PM", 4), asg("R2", D0, "AM", 4)]
    new = [asg("R1", D0, "AM", 4, "surg"), asg("R1", D0, "PM", 4.5), asg("R2", D0, "AM", 4)]
    diff = diff_assignments(old, new)
    assert (len(diff.added), len(diff.removed), len(diff.changed), diff.unchanged) == (0, 0, 2, 1)
    # a move to another block is removed + added, not changed
    moved = diff_assignments([asg("R2", D0, "AM", 4)], [asg("R2", D0, "PM", 4)])
    assert (len(moved.added), len(moved.removed), len(moved.changed)) == (1, 1, 0)
