"""Run every benchmark and print one table: each figure beside its same-run baseline.

    .venv/bin/python bench/run_all.py            # full sizes (`make bench`), writes RESULTS.md
    .venv/bin/python bench/run_all.py --tiny     # smoke sizes, under a minute, writes nothing

The benchmark starts what it needs (a private redis-server, a fresh PostgreSQL database on
127.0.0.1:5432 or a throwaway cluster, workers, the MCP server and a peer server) and stops
all of it before it exits.  Missing a target does not fail the run: these are benchmarks,
not tests (exit status 0 unless something crashed).
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_mcp
import bench_service
from bench_common import ROOT, Figure, bench_environment

__all__ = ["EXPECTED_ROWS", "domain_figures", "format_table", "main"]

BENCH_DIR = Path(__file__).resolve().parent

#: a prefix of every row the full and the tiny run print (the smoke test checks them)
EXPECTED_ROWS = (
    "start: TaskService.start",
    "status: TaskService.status",
    "start -> handler running",
    "list_active (admin",
    "list_active (user",
    "console task list (admin, newest first",
    "console task list (user, newest first",
    "start while retention purges",
    "MCP start: calls/s, 1 client",
    "MCP start: calls/s, 16 clients",
    "MCP server CPU per start",
    "MCP status: calls/s, 1 client",
    "MCP status: calls/s, 16 clients",
    "MCP server CPU per status",
    "MCP server CPU per start vs FastMCP 4 + Docket",
    "MCP server CPU per status vs FastMCP 4 + Docket",
    "MCP server CPU per tasks/get vs FastMCP 4 + Docket",
    "MCP server CPU per second of a client polling tasks/get",
    "MCP server CPU per second of a client following a task by notifications",
    "MCP stdio server CPU per start vs FastMCP 4 + Docket",
    "MCP stdio server CPU per status vs FastMCP 4 + Docket",
    "idle server RSS",
    "worker RSS",
    "server RSS after",
    "MCP server CPU per waiting client per second (1 waiting)",
    "MCP server CPU per waiting client per second (",
    "N-1/N-2 contingency",
    "metrics_computation",
)

_FAST = re.compile(r"^fast\s+(\d+) faculty x\s+(\d+) days, +(\d+) services:\s+([\d.]+) s(.*?)"
                   r"(?:\(target < "
                   r"([\d.]+) s\))?$")
_ORACLE = re.compile(r"^oracle\s+(\d+) faculty x\s+(\d+) days:\s+([\d.]+) s")
_METRICS = re.compile(r"^metrics_computation: ([\d.]+) s .*target ([\d.]+) s")
_METRICS_BASE = re.compile(r"^baseline \(one pass summing hours\): ([\d.]+) ms")
_PROGRAM = re.compile(r"^program: (\d+) residents, (\d+) faculty, (\d+) days")


def _run_script(name: str, tiny: bool) -> str:
    """Run ``bench/<name>`` (unchanged, as its own process) and return its stdout."""
    argv = [sys.executable, str(BENCH_DIR / name)] + (["--tiny"] if tiny else [])
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=1800,
                          check=False)
    if done.returncode not in (0, 1):  # bench_metrics exits 1 when it misses its target
        raise RuntimeError(f"{name} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


def domain_figures(tiny: bool) -> list[Figure]:
    """The N-1/N-2 contingency and metrics_computation figures (their own scripts)."""
    figures: list[Figure] = []
    out = _run_script("bench_contingency.py", tiny)
    oracle: dict[tuple[int, int], float] = {}
    for line in out.splitlines():
        if m := _ORACLE.match(line.strip()):
            oracle[(int(m[1]), int(m[2]))] = float(m[3]) * 1000
    for line in out.splitlines():
        m = _FAST.match(line.strip())
        if not m:
            continue
        key = (int(m[1]), int(m[2]))
        services = int(m[3])
        value = float(m[4]) * 1000
        target = float(m[6]) if m[6] else None
        figures.append(Figure(
            f"N-1/N-2 contingency, {key[0]} faculty x {key[1]} days, {services} services",
            value, None, "ms",
            oracle.get(key), "brute-force oracle" if key in oracle else "",
            target=f"< {target:g} s" if target else "info",
            met=None if target is None else value < target * 1000,
            note="best single run incl. building the staffing model"))
    m_val: float | None = None
    m_base: float | None = None
    m_target = 0.0
    size = ""
    for line in _run_script("bench_metrics.py", tiny).splitlines():
        if m := _METRICS.match(line):
            m_val, m_target = float(m[1]) * 1000, float(m[2])
        elif m := _METRICS_BASE.match(line):
            m_base = float(m[1])
        elif m := _PROGRAM.match(line):
            size = f"{m[1]} residents x {m[3]} days"
    if m_val is None:
        raise RuntimeError("bench_metrics.py printed no metrics_computation line")
    figures.append(Figure(
        f"metrics_computation, {size}", m_val, None, "ms", m_base,
        "one pass summing hours", target=f"< {m_target:g} s" if not tiny else "info",
        met=None if tiny else m_val < m_target * 1000, note="best of 3"))
    return figures


def _num(value: float | None, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}" if abs(value) < 1 \
        else f"{value:.2f}"
    return f"{text} {unit}".strip()


def _row(fig: Figure) -> list[str]:
    met = "—" if fig.met is None else ("yes" if fig.met else "NO")
    base = _num(fig.baseline, fig.unit)
    if fig.baseline is not None and fig.baseline_label:
        base += f" ({fig.baseline_label})"
    ratio = "—" if fig.ratio is None else (f"{fig.ratio:.3f}x" if fig.ratio < 0.1
                                           else f"{fig.ratio:.2f}x")
    return [fig.name, _num(fig.median, fig.unit), _num(fig.p99, fig.unit), base, ratio,
            fig.target or "—", met]


HEADER = ["figure", "median", "p99", "baseline (same run)", "ratio", "target", "met?"]


def format_table(figures: list[Figure], *, markdown: bool) -> str:
    """The figures as an aligned text table or a markdown table."""
    rows = [_row(f) for f in figures]
    if markdown:
        lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    sep = "  ".join("-" * w for w in widths)
    return "\n".join([fmt.format(*HEADER), sep, *(fmt.format(*r) for r in rows)])


def _notes(figures: list[Figure]) -> str:
    return "\n".join(f"- {f.name}: {f.note}" for f in figures if f.note)


def main(argv: list[str] | None = None) -> int:
    """Run everything, print the table, write RESULTS.md (full runs only)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="smoke sizes; writes no RESULTS.md")
    ap.add_argument("--results", type=Path, default=None,
                    help="markdown output (default: bench/RESULTS.md on full runs)")
    ap.add_argument("--skip", default="", help="comma list of: service, mcp, domain")
    args = ap.parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    started = time.monotonic()
    figures: list[Figure] = []
    with bench_environment() as benv:
        if "service" not in skip:
            figures += bench_service.run(benv, args.tiny)
        if "mcp" not in skip:
            figures += bench_mcp.run(benv, args.tiny)
    if "domain" not in skip:
        figures += domain_figures(args.tiny)
    elapsed = time.monotonic() - started
    print()
    print(format_table(figures, markdown=False))
    print()
    print("notes:")
    print(_notes(figures))
    print(f"\n({'tiny' if args.tiny else 'full'} run, {elapsed:.0f} s)")
    results = args.results or (None if args.tiny else BENCH_DIR / "RESULTS.md")
    if results is not None:
        command = "make bench  # = .venv/bin/python bench/run_all.py" + \
            (" --tiny" if args.tiny else "")
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        results.write_text(
            f"# Benchmark results\n\nCommand: `{command}`  \nDate: {now}  \n"
            f"Machine: {platform.machine()}, {_cpus()} CPUs, Python "
            f"{platform.python_version()}; run took {elapsed:.0f} s.\n\n"
            "Ratios compare figures measured in the same run (the machine is shared and "
            "noisy; absolute numbers wander, ratios much less).\n\n"
            f"{format_table(figures, markdown=True)}\n\n## Notes\n\n{_notes(figures)}\n"
        )
        print(f"wrote {results}")
    return 0


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


if __name__ == "__main__":
    sys.exit(main())
