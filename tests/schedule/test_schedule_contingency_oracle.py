"""The fast N-1/N-2 against the brute-force oracle on many random small programs."""

from __future__ import annotations

import datetime as dt

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import taskbroker.schedule.contingency as contingency
from taskbroker.schedule.contingency import analyse
from taskbroker.schedule.oracle import oracle_contingency
from taskbroker.schedule.program import (
    Absence,
    Assignment,
    Person,
    Program,
    ProgramInfo,
    Run,
    Service,
)
from taskbroker.schedule.staffing import build_model

START = dt.date(2030, 3, 4)
HALVES = ("AM", "PM")


@st.composite
def programs(draw) -> tuple[Program, int]:
    """A random program: 1-4 services, 2-7 faculty, 0-5 residents, 1-3 days."""
    n_svc = draw(st.integers(1, 4))
    sids = [f"s{i}" for i in range(n_svc)]
    services = [Service(id=s, name=s, min_faculty=draw(st.integers(0, 2)),
                        max_residents_per_faculty={"1": draw(st.integers(1, 3)),
                                                   "2": draw(st.integers(1, 4))})
                for s in sids]
    n_fac = draw(st.integers(2, 7))
    n_res = draw(st.integers(0, 5))
    people = [Person(id=f"f{i}", name=f"f{i}", kind="faculty",
                     qualified=tuple(draw(st.lists(st.sampled_from(sids), unique=True))))
              for i in range(n_fac)]
    people += [Person(id=f"r{i}", name=f"r{i}", kind="resident", pgy=draw(st.integers(1, 3)))
               for i in range(n_res)]
    days = draw(st.integers(1, 3))
    assignments = []
    for d in range(days):
        for half in HALVES:
            for p in people:
                choice = draw(st.integers(-2, n_svc - 1))  # negative: not assigned
                if choice >= 0:
                    assignments.append(Assignment(person=p.id, date=START + dt.timedelta(d),
                                                  half=half, service=sids[choice]))
    absences = []
    for p in people:
        if draw(st.integers(0, 4)) == 0:
            first = draw(st.integers(0, days - 1))
            absences.append(Absence(
                person=p.id, start=START + dt.timedelta(first),
                end=START + dt.timedelta(first + draw(st.integers(0, 1))),
                status=draw(st.sampled_from(["approved", "approved", "pending", "denied"]))))
    program = Program(program=ProgramInfo(name="random"), services=tuple(services),
                      people=tuple(people), absences=tuple(absences),
                      runs=(Run(id="r", created_at=dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
                                assignments=tuple(assignments)),))
    return program, days


def _compare(program: Program, days: int) -> None:
    fast = analyse(build_model(program, START, days))
    n1, n2, base = oracle_contingency(program, START, days)

    def key(label: str) -> tuple[dt.date, str]:
        d, h = label.split()
        return dt.date.fromisoformat(d), h

    assert {f: {key(b) for b, _ in v} for f, v in fast.n1.items()} == n1
    assert dict(fast.n2_counts) == {p: len(b) for p, b in n2.items()}
    for pair, examples in fast.n2_examples.items():
        assert {key(b) for b, _ in examples} <= n2[pair]
    assert {key(b) for b, _ in fast.unstaffed} == base


@settings(max_examples=250, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_fast_matches_oracle(case: tuple[Program, int]) -> None:
    _compare(*case)


@settings(max_examples=80, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_matching_fallback_matches_oracle(case: tuple[Program, int]) -> None:
    old = contingency.MAX_HALL_SLOTS
    contingency.MAX_HALL_SLOTS = 0
    try:
        _compare(*case)
    finally:
        contingency.MAX_HALL_SLOTS = old


def test_generated_program_matches_oracle() -> None:
    from taskbroker.schedule.generator import generate_program

    p = generate_program(seed=5, faculty=9, residents=8, days=4, services=4, start=START)
    _compare(p, 4)


def test_many_services_match_the_oracle() -> None:
    """16 services, most slots staffed exactly: the slots with spare backups are left out of
    the subset enumeration, and the answer is still the oracle's."""
    from taskbroker.schedule.generator import generate_program

    for seed, absence in ((1, 0.05), (2, 0.2), (3, 0.35)):
        p = generate_program(seed=seed, faculty=22, residents=12, days=2, services=16,
                             absence_rate=absence, start=START)
        _compare(p, 2)
