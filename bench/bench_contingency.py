"""Benchmark: N-1 + N-2 contingency on generated programs, against the brute-force oracle.

    python bench/bench_contingency.py          # 40 x 90 and 100 x 365 (+ oracle on 40 x 90)
    python bench/bench_contingency.py --tiny   # smoke run, a few seconds

Targets (this is a benchmark, not a test): under 1 s for 40 faculty x 90 days and under
10 s for 100 faculty x 365 days, with 6 services and with 16.  Times include building the
staffing model from the program, not generating it.  A growth table follows: faculty 50, 100,
200 and services 6, 11, 16 at 365 days.  The oracle re-solves every block for every single and pair
removal; its result must equal the fast one (checked here too).
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

from taskbroker.schedule.contingency import analyse
from taskbroker.schedule.generator import generate_program
from taskbroker.schedule.oracle import oracle_contingency
from taskbroker.schedule.staffing import build_model

START = dt.date(2030, 1, 7)


def _fast(program, days):  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    result = analyse(build_model(program, START, days))
    return time.perf_counter() - t, result


def main() -> None:
    """Run the benchmark and print one line per measurement."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (smoke run)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sizes = ([(8, 12, 7, 6), (16, 24, 14, 16)] if args.tiny else
             [(40, 60, 90, 6), (100, 150, 365, 6), (100, 150, 365, 16)])
    targets = {(40, 60, 90): 1.0, (100, 150, 365): 10.0}
    first = None
    for faculty, residents, days, services in sizes:
        program = generate_program(seed=args.seed, faculty=faculty, residents=residents,
                                   days=days, services=services, start=START)
        elapsed, result = _fast(program, days)
        target = targets.get((faculty, residents, days))
        verdict = "" if target is None else (" OK" if elapsed < target else " SLOW") + \
            f" (target < {target:g} s)"
        print(f"fast   {faculty:3d} faculty x {days:3d} days, {services:2d} services: "
              f"{elapsed:8.3f} s  blocks={result.blocks} n1={len(result.n1)} "
              f"n2={len(result.n2_counts)} unstaffed={len(result.unstaffed)}{verdict}")
        if first is None:
            first = (program, days, elapsed, result)
    if not args.tiny:
        print("growth at 365 days (seconds; rows faculty, columns services 6 / 11 / 16):")
        for faculty in (50, 100, 200):
            row = []
            for services in (6, 11, 16):
                program = generate_program(seed=args.seed, faculty=faculty,
                                           residents=faculty * 3 // 2, days=365,
                                           services=services, start=START)
                row.append(_fast(program, 365)[0])
            print(f"growth {faculty:3d} faculty: " + "  ".join(f"{t:7.3f}" for t in row))
    program, days, fast_time, fast_result = first
    t = time.perf_counter()
    n1, n2, base = oracle_contingency(program, START, days)
    oracle_time = time.perf_counter() - t
    same = (set(n1) == set(fast_result.n1) and len(n2) == len(fast_result.n2_counts)
            and len(base) == len(fast_result.unstaffed))
    print(f"oracle {sizes[0][0]:3d} faculty x {days:3d} days: {oracle_time:8.3f} s  "
          f"(brute force, same answer: {same})")
    print(f"ratio  oracle / fast = {oracle_time / max(fast_time, 1e-9):,.0f}x")


if __name__ == "__main__":
    main()
