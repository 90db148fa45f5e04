"""Benchmark: metrics_computation on 100 residents x 365 days (target < 2 s).

Times the ``metrics_computation`` handler on an in-memory program (the store is bypassed so
the number is the metrics work itself), best of a few repeats, and prints it next to a
baseline measured in the same run: one plain pass over the same assignments summing hours
per person (the least any metric must do).  ``--tiny`` runs a seconds-long smoke version.

    .venv/bin/python bench/bench_metrics.py [--tiny] [--repeat N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from taskbroker.plugins.metrics import TASK_TYPES, data
from taskbroker.schedule.program import Program
from taskbroker.testing import run_handler

TARGET_SECONDS = 2.0
START = dt.date(2025, 1, 6)


def build_program(residents: int, faculty: int, days: int) -> Program:
    """The synthetic program of the schedule generator (seeded, deterministic)."""
    from taskbroker.schedule.generator import generate_program

    return generate_program(seed=42, faculty=faculty, residents=residents, days=days,
                            start=START)


def best_of(repeat: int, fn: Callable[[], Any]) -> float:
    """Smallest wall time of ``repeat`` calls of ``fn``."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit status 1 when the full run misses the target."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="10 residents x 28 days smoke run")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    residents, faculty, days = (10, 6, 28) if args.tiny else (100, 60, 365)

    t0 = time.perf_counter()
    program = build_program(residents, faculty, days)
    gen = time.perf_counter() - t0
    current = program.current_run()
    assert current is not None
    n_asg = len(current.assignments)
    data.load_program = lambda: program  # type: ignore[assignment]  # bypass the store
    computation = {t.name: t for t in TASK_TYPES}["metrics_computation"]
    params = {"start_date": START.isoformat(),
              "end_date": (START + dt.timedelta(days=days - 1)).isoformat()}

    result: dict[str, Any] = {}

    def compute() -> None:
        result.update(run_handler(computation, params)[0])

    def baseline() -> None:
        loads: dict[str, float] = defaultdict(float)
        for a in current.assignments:
            loads[a.person] += a.hours

    t_metrics = best_of(args.repeat, compute)
    t_base = best_of(args.repeat, baseline)
    m = result["schedule_analysis"]["metrics"]
    print(f"program: {residents} residents, {faculty} faculty, {days} days, "
          f"{n_asg} assignments in the current run, {len(program.runs)} runs "
          f"(generated in {gen:.2f} s)")
    print(f"metrics_computation: {t_metrics:.3f} s (best of {args.repeat}); "
          f"target {TARGET_SECONDS:.1f} s -> {t_metrics / TARGET_SECONDS:.2f} of target")
    print(f"baseline (one pass summing hours): {t_base * 1000:.1f} ms -> metrics = "
          f"{t_metrics / t_base:.0f}x baseline")
    print(f"values: fairness {m['fairness']['value']} ({m['fairness']['status']}), "
          f"coverage {m['coverage']['value']} ({m['coverage']['status']}), "
          f"compliance {m['compliance']['value']} ({m['compliance']['status']}), "
          f"churn {result['schedule_analysis']['stability']['churn_rate']}")
    if not args.tiny and t_metrics >= TARGET_SECONDS:
        print("FAILED: over target", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
