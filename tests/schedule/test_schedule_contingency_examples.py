"""N-1 / N-2 on tiny programs whose answers are worked out by hand in the comments."""

from __future__ import annotations

import pytest
from schedule_builders import at, away, day, fac, program, res, svc

import taskbroker.schedule.contingency as contingency
from taskbroker.schedule.contingency import analyse
from taskbroker.schedule.oracle import oracle_contingency
from taskbroker.schedule.staffing import block_holds, build_model


@pytest.fixture(params=["hall", "matching"])
def mode(request, monkeypatch):
    """Run every example through the subset (Hall) path and the explicit-matching path."""
    if request.param == "matching":
        monkeypatch.setattr(contingency, "MAX_HALL_SLOTS", 0)
    return request.param


def blocks_of(items):
    return {label for label, _ in items}


def test_one_spare_covers_either_loss_but_not_both(mode):
    # Block day0 AM: A needs 1 (f1 assigned), B needs 1 (f3 assigned); f2 free, qualified A+B.
    # N-1: losing f1 -> f2 covers A; losing f3 -> f2 covers B; losing f2 changes nothing.
    #      => n1_pass, 0 vulnerabilities.
    # N-2: {f1,f3}: A and B both short, only f2 free -> fails   (fatal)
    #      {f1,f2}: A short, no free faculty left          -> fails   (fatal)
    #      {f2,f3}: B short, no free faculty left          -> fails   (fatal)
    p = program([svc("A"), svc("B")],
                [fac("f1", "A"), fac("f2", "A", "B"), fac("f3", "B")],
                [at("f1", 0, "AM", "A"), at("f3", 0, "AM", "B")])
    r = analyse(build_model(p, day(0), 1))
    assert r.n1_pass and not r.n1
    assert set(r.n2_counts) == {("f1", "f2"), ("f1", "f3"), ("f2", "f3")}
    assert all(n == 1 for n in r.n2_counts.values())
    assert not r.unstaffed


def test_second_spare_removes_all_but_one_fatal_pair(mode):
    # As above plus f4 free, qualified for A only.
    # {f1,f3}: A<-f4, B<-f2 holds. {f1,f2}: A<-f4 holds. {f1,f4}: A<-f2 holds.
    # {f3,f4}: B<-f2 holds. {f2,f4}: nothing short holds.
    # {f2,f3}: B short, only f4 free and not qualified for B -> fatal.  N-1: pass.
    p = program([svc("A"), svc("B")],
                [fac("f1", "A"), fac("f2", "A", "B"), fac("f3", "B"), fac("f4", "A")],
                [at("f1", 0, "AM", "A"), at("f3", 0, "AM", "B")])
    r = analyse(build_model(p, day(0), 1))
    assert r.n1_pass
    assert dict(r.n2_counts) == {("f2", "f3"): 1}
    assert r.n2_examples[("f2", "f3")][0][1] == ("B",)


def test_ratio_absence_surplus_and_unstaffed(mode):
    # Services: C (min 1, 2 PGY-1 per faculty), D (min 1), E (min 1, nobody qualified).
    # X = day0 AM: C has f1, f2 and three PGY-1 -> requirement max(1, ceil(3/2)) = 2, no
    #     surplus; f3 (qualified C) is on approved absence, nobody else free.
    #     Losing f1 or f2 leaves C short -> f1, f2 are N-1 vulnerabilities (block X).
    # Y = day1 AM: C has f1 and one PGY-1 (requirement 1); f2, f3 free and qualified for C.
    #     Any single loss or pair is covered (two spares) -> nothing.
    # Z = day2 AM: D has f2, f3 (requirement 1, surplus 1); f1 free but only qualified C.
    #     f2 or f3 alone: still one left.  Both: D short, f1 cannot cover -> fatal {f2,f3}.
    # W = day3 AM: E has a resident and needs 1 faculty nobody is qualified for: unstaffed
    #     before any loss; C there has f1 -> its failures count against no one.
    # A pending absence of f2 on day0 changes nothing (only approved absences remove).
    p = program(
        [svc("C", p1=2), svc("D"), svc("E")],
        [fac("f1", "C"), fac("f2", "C", "D"), fac("f3", "C", "D"),
         res("r1"), res("r2"), res("r3")],
        [at("f1", 0, "AM", "C"), at("f2", 0, "AM", "C"), at("r1", 0, "AM", "C"),
         at("r2", 0, "AM", "C"), at("r3", 0, "AM", "C"),
         at("f1", 1, "AM", "C"), at("r1", 1, "AM", "C"),
         at("f2", 2, "AM", "D"), at("f3", 2, "AM", "D"),
         at("f1", 3, "AM", "C"), at("r1", 3, "AM", "E")],
        [away("f3", 0), away("f2", 0, status="pending")],
    )
    r = analyse(build_model(p, day(0), 4))
    assert {f: blocks_of(v) for f, v in r.n1.items()} == {
        "f1": {f"{day(0)} AM"}, "f2": {f"{day(0)} AM"}}
    assert dict(r.n2_counts) == {("f2", "f3"): 1}
    assert blocks_of(r.n2_examples[("f2", "f3")]) == {f"{day(2)} AM"}
    assert [label for label, _ in r.unstaffed] == [f"{day(3)} AM"]
    assert r.unstaffed[0][1] == ("E",)
    # and the brute-force oracle agrees
    n1, n2, base = oracle_contingency(p, day(0), 4)
    assert set(n1) == {"f1", "f2"} and set(n2) == {("f2", "f3")} and len(base) == 1


def test_assigned_faculty_count_even_unqualified_and_absent_assigned_do_not():
    # f1 is assigned to A without being qualified: the schedule put them there, they count.
    # f2 is assigned to B but on approved absence: they do not count, B is short and f3
    # (free, qualified B) covers it.  Losing f3 then breaks the block.
    p = program([svc("A"), svc("B")],
                [fac("f1"), fac("f2", "B"), fac("f3", "B")],
                [at("f1", 0, "AM", "A"), at("f2", 0, "AM", "B")], [away("f2", 0)])
    m = build_model(p, day(0), 1)
    (block,) = m.blocks
    assert block_holds(block, m.qual)
    r = analyse(m)
    assert set(r.n1) == {"f1", "f3"}


def test_window_excludes_days_outside():
    p = program([svc("A")], [fac("f1", "A")], [at("f1", 0, "AM", "A"), at("f1", 5, "AM", "A")])
    assert [b.date for b in build_model(p, day(1), 3).blocks] == []
    assert len(build_model(p, day(0), 6).blocks) == 2
