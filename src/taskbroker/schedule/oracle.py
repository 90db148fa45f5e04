"""Brute-force reference for staffing, N-1 and N-2 (for tests and benchmarks only).

Deliberately naive and independent of :mod:`taskbroker.schedule.staffing`: it works on plain
sets straight from the :class:`Program`, and for every removal set it re-solves every block
from scratch with an augmenting-path matching.  Cost grows with faculty^2 x blocks.
"""

from __future__ import annotations

import datetime as dt
import math
from itertools import combinations

from taskbroker.schedule.program import Program

__all__ = ["OracleBlock", "oracle_blocks", "oracle_contingency", "oracle_failing_blocks"]

BlockKey = tuple[dt.date, str]
# slot: (service id, requirement, assigned faculty ids)
OracleBlock = tuple[BlockKey, list[tuple[str, int, frozenset[str]]], frozenset[str]]


def oracle_blocks(program: Program, start: dt.date, days: int) -> list[OracleBlock]:
    """Every block of the window with its slots and free faculty, from first principles."""
    end = start + dt.timedelta(days=days - 1)
    run = program.current_run()
    people = {p.id: p for p in program.people}
    services = {s.id: s for s in program.services}
    faculty = {p.id for p in program.people if p.kind == "faculty"}

    def absent(pid: str, day: dt.date) -> bool:
        return any(
            a.person == pid and a.status == "approved" and a.start <= day <= a.end
            for a in program.absences
        )

    cells: dict[BlockKey, dict[str, list]] = {}
    for a in run.assignments if run else ():
        if not start <= a.date <= end:
            continue
        cell = cells.setdefault((a.date, a.half), {}).setdefault(a.service, [set(), []])
        if absent(a.person, a.date):
            continue
        if people[a.person].kind == "faculty":
            cell[0].add(a.person)
        else:
            cell[1].append(people[a.person].pgy)
    out: list[OracleBlock] = []
    for key in sorted(cells):
        slots = []
        busy: set[str] = set()
        for sid, (fac, pgys) in sorted(cells[key].items()):
            svc = services[sid]
            req = svc.min_faculty
            for p in set(pgys):
                req = max(req, math.ceil(pgys.count(p) / svc.ratio_for(p)))
            slots.append((sid, req, frozenset(fac)))
            busy |= fac
        free = frozenset(f for f in faculty - busy if not absent(f, key[0]))
        out.append((key, slots, free))
    return out


def _holds(program: Program, block: OracleBlock, removed: frozenset[str]) -> bool:
    _, slots, free = block
    qualified = {p.id: set(p.qualified) for p in program.people}
    units = []
    for sid, req, fac in slots:
        units += [sid] * max(0, req - len(fac - removed))
    pool = sorted(free - removed)
    match: dict[str, int] = {}

    def try_unit(u: int, seen: set[str]) -> bool:
        for f in pool:
            if units[u] in qualified[f] and f not in seen:
                seen.add(f)
                if f not in match or try_unit(match[f], seen):
                    match[f] = u
                    return True
        return False

    return all(try_unit(u, set()) for u in range(len(units)))


def oracle_failing_blocks(
    program: Program, blocks: list[OracleBlock], removed: frozenset[str]
) -> set[BlockKey]:
    """Keys of the blocks that fail after removing ``removed``."""
    return {b[0] for b in blocks if not _holds(program, b, removed)}


def oracle_contingency(
    program: Program, start: dt.date, days: int
) -> tuple[dict[str, set[BlockKey]], dict[tuple[str, str], set[BlockKey]], set[BlockKey]]:
    """(N-1: faculty -> blocks it breaks, N-2: pair -> blocks newly broken, unstaffed)."""
    blocks = oracle_blocks(program, start, days)
    faculty = sorted(p.id for p in program.people if p.kind == "faculty")
    base = oracle_failing_blocks(program, blocks, frozenset())
    single = {f: oracle_failing_blocks(program, blocks, frozenset({f})) for f in faculty}
    n1 = {f: fails - base for f, fails in single.items() if fails - base}
    n2: dict[tuple[str, str], set[BlockKey]] = {}
    for a, b in combinations(faculty, 2):
        fails = oracle_failing_blocks(program, blocks, frozenset({a, b}))
        new = fails - single[a] - single[b]
        if new:
            n2[(a, b)] = new
    return n1, n2, base
