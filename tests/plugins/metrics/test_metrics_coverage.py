"""Coverage: the 3-person schedule by hand, supervision ratios, a generated program."""

from __future__ import annotations

import math
from collections import defaultdict

import pytest
from metrics_programs import D0, MED, asg, day, make_program, make_run, three_person_program

from taskbroker.plugins.metrics.coverage import coverage_metric
from taskbroker.plugins.metrics.workload import Window, absent_days, window_assignments
from taskbroker.schedule.program import Person


def _coverage(program, window):  # type: ignore[no-untyped-def]
    asg_ = window_assignments(program.current_run(), window)
    return coverage_metric(program, asg_, absent_days(program, window))


def test_three_person_coverage_by_hand() -> None:
    # Slots (date, half, med): AM on all 28 days (R2 always there) + PM on R1's 24 days = 52.
    # Every slot needs 1 faculty (min_faculty 1; <= 2 PGY-1 residents -> ceil(2/2) = 1).
    # F covers AM Monday..Friday = 20 slots, but is on approved absence on D0 -> 19 staffed.
    # Coverage = 19 / 52 = 36.538 % -> critical (< 95).
    result = _coverage(three_person_program(), Window(D0, day(27)))
    d = result["details"]
    assert (d["slots"], d["required_slots"], d["staffed_slots"]) == (52, 52, 19)
    assert result["value"] == pytest.approx(100 * 19 / 52, abs=1e-4)
    assert result["status"] == "critical"
    assert d["unstaffed_total"] == 33
    assert d["assignments_on_approved_absence"] == 1
    assert d["unstaffed_slots"][0] == {"date": D0.isoformat(), "half": "AM", "service": "med",
                                       "required_faculty": 1, "present_faculty": 0,
                                       "deficit": 1}


def test_supervision_ratio_drives_requirement() -> None:
    # 5 PGY-1 residents in one slot: ceil(5 / 2) = 3 faculty needed; 1 assigned -> deficit 2.
    # 4 PGY-2 residents in another: ceil(4 / 4) = 1 -> staffed by its 1 faculty.
    people = [Person(id=f"F{i}", name=f"F{i}", kind="faculty") for i in range(2)]
    people += [Person(id=f"P1-{i}", name="p", kind="resident", pgy=1) for i in range(5)]
    people += [Person(id=f"P2-{i}", name="p", kind="resident", pgy=2) for i in range(4)]
    a = [asg("F0", D0, "AM", 4)] + [asg(f"P1-{i}", D0, "AM", 4) for i in range(5)]
    a += [asg("F1", D0, "AM", 4, "surg")] + [asg(f"P2-{i}", D0, "AM", 4, "surg")
                                             for i in range(4)]
    program = make_program([make_run("r", a)], people=people)
    result = _coverage(program, Window(D0, D0))
    assert result["value"] == 50.0
    (short,) = result["details"]["unstaffed_slots"]
    assert (short["service"], short["required_faculty"], short["deficit"]) == ("med", 3, 2)


def test_no_slots_is_full_coverage_with_note() -> None:
    result = _coverage(make_program([make_run("r", [])]), Window(D0, D0))
    assert result["value"] == 100.0
    assert result["details"]["note"]


def test_generated_program_matches_independent_count() -> None:
    from taskbroker.schedule.generator import generate_program

    program = generate_program(seed=3, faculty=10, residents=15, days=21, start=D0)
    window = Window(D0, day(20))
    result = _coverage(program, window)
    # independent count, straight from the DESIGN.md definition
    services = {s.id: s for s in program.services}
    kinds = {p.id: p for p in program.people}
    away = {(ab.person, d) for ab in program.absences if ab.status == "approved"
            for d in (ab.start + (day(k) - D0) for k in range((ab.end - ab.start).days + 1))}
    fac: dict = defaultdict(int)
    res: dict = defaultdict(lambda: defaultdict(int))
    for a in program.current_run().assignments:
        key = (a.date, a.half, a.service)
        res[key]
        if (a.person, a.date) in away:
            continue
        if kinds[a.person].kind == "faculty":
            fac[key] += 1
        else:
            res[key][kinds[a.person].pgy] += 1
    need = {k: max([services[k[2]].min_faculty]
                   + [math.ceil(n / services[k[2]].ratio_for(p)) for p, n in v.items()])
            for k, v in res.items()}
    required = [k for k in need if need[k] > 0]
    staffed = sum(1 for k in required if fac[k] >= need[k])
    assert result["details"]["required_slots"] == len(required)
    assert result["details"]["staffed_slots"] == staffed
    assert result["value"] == pytest.approx(100 * staffed / len(required), abs=1e-4)
    assert MED.ratio_for(1) == 2
