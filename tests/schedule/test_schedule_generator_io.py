"""The generator (deterministic, realistic) and the program JSON file."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from taskbroker.schedule.contingency import analyse
from taskbroker.schedule.generator import generate_program
from taskbroker.schedule.io import ProgramLoadError, program_from_json, program_to_json
from taskbroker.schedule.staffing import build_model

START = dt.date(2030, 2, 4)


def test_deterministic_for_a_seed() -> None:
    a = generate_program(seed=7, days=20, start=START)
    assert a == generate_program(seed=7, days=20, start=START)
    assert a != generate_program(seed=8, days=20, start=START)


def test_realistic_shape() -> None:
    p = generate_program(seed=1, faculty=40, residents=60, days=90, start=START)
    fac = [x for x in p.people if x.kind == "faculty"]
    res = [x for x in p.people if x.kind == "resident"]
    assert (len(fac), len(res), len(p.services)) == (40, 60, 6)
    assert {x.pgy for x in res} == {1, 2, 3}
    assert all(x.qualified for x in fac)
    assert {a.status for a in p.absences} == {"approved", "pending", "denied"}
    assert sum(s.essential for s in p.services) >= 2
    ok = [r for r in p.runs if r.status == "success"]
    assert len(ok) >= 2 and p.current_run() is max(ok, key=lambda r: r.created_at)
    assert p.current_run().assignments != ok[0].assignments
    assert min(a.date for a in p.current_run().assignments) == START
    result = analyse(build_model(p, START, 90))
    # weak spots exist, but not every faculty member is one
    assert 0 < len(result.n1) < 40
    assert len(result.unstaffed) < 0.1 * result.blocks


def test_sizes_are_configurable() -> None:
    p = generate_program(seed=2, faculty=5, residents=0, days=3, services=1, start=START)
    assert len(p.people) == 5 and len(p.services) == 1
    with pytest.raises(ValueError):
        generate_program(faculty=0)


def test_json_round_trip() -> None:
    p = generate_program(seed=3, faculty=6, residents=6, days=7, start=START)
    data = json.loads(json.dumps(program_to_json(p)))
    assert set(data) == {"program", "services", "people", "absences", "runs"}
    assert data["runs"][0]["assignments"][0].keys() == {"person", "date", "half", "service",
                                                        "hours"}
    assert program_from_json(data) == p


def _doc() -> dict:
    return program_to_json(generate_program(seed=4, faculty=3, residents=2, days=2,
                                            services=2, start=START))


def test_load_errors_name_the_record() -> None:
    doc = _doc()
    doc["runs"][-1]["assignments"][1]["person"] = "ghost"
    run_id = doc["runs"][-1]["id"]
    with pytest.raises(ProgramLoadError, match=rf"runs\[{run_id}\]\.assignments\[1\]\.person"):
        program_from_json(doc)

    doc = _doc()
    resident = next(i for i, p in enumerate(doc["people"]) if p["kind"] == "resident")
    doc["people"][resident]["pgy"] = None
    with pytest.raises(ProgramLoadError, match=r"people\[res-001\]: a resident needs a pgy"):
        program_from_json(doc)

    doc = _doc()
    run = doc["runs"][-1]
    run["assignments"].append(dict(run["assignments"][0]))
    with pytest.raises(ProgramLoadError, match="assigned twice in block"):
        program_from_json(doc)

    doc = _doc()
    doc["people"][0]["kind"] = "nurse"
    with pytest.raises(ProgramLoadError, match=r"people\[0:fac-001\]\.kind"):
        program_from_json(doc)

    with pytest.raises(ProgramLoadError, match="JSON object"):
        program_from_json([1, 2])


@pytest.mark.parametrize("kind", ["people", "services", "runs"])
def test_a_duplicate_id_names_both_records(kind: str) -> None:
    doc = _doc()
    doc[kind].append(dict(doc[kind][0]))
    n, first = len(doc[kind]) - 1, doc[kind][0]["id"]
    with pytest.raises(ProgramLoadError) as raised:
        program_from_json(doc)
    message = str(raised.value)
    assert message == (f"invalid program file: {kind}[{n}:{first}]: duplicate id {first!r} "
                       f"(the same as {kind}[0]); every id must be unique")
    assert "Traceback" not in message and "IntegrityError" not in message


def test_an_unknown_time_zone_is_refused_naming_the_field() -> None:
    doc = _doc()
    doc["program"]["timezone"] = "Mars/Olympus_Mons"
    with pytest.raises(ProgramLoadError, match=r"program\.timezone: unknown time zone "
                                               r"'Mars/Olympus_Mons'; accepted: an IANA"):
        program_from_json(doc)


def test_generated_programs_start_today_where_they_are() -> None:
    import datetime as dt
    from zoneinfo import ZoneInfo

    program = generate_program(seed=1, faculty=2, residents=1, days=7, services=1)
    assert program.program.timezone == "America/New_York"
    before = dt.datetime.now(ZoneInfo("America/New_York")).date()
    first = min(a.date for r in program.runs for a in r.assignments)
    after = dt.datetime.now(ZoneInfo("America/New_York")).date()
    # the first scheduled day is today there (or the Monday after, when today is a weekend)
    assert 0 <= (first - before).days <= 2 and (first - after).days <= 2
