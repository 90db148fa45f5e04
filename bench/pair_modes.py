"""Paired turns: server CPU per MCP call of two taskbroker servers that differ by settings
(by default: starts and status reads on the event loop against a worker thread per call), and
FastMCP 4 + Docket, in alternating turns on one machine.

    .venv/bin/python bench/pair_modes.py [--op start|status] [--rounds 10]
        [--b-env TASKBROKER_SERVE_ON_LOOP=false] [--clients 16] [--per 40] [--stdio]

Each turn runs ``--clients`` SDK sessions x ``--per`` calls on each server, the order
reversed every other turn; the ratios are taken turn by turn (paired), so a machine that
slows down for a minute slows all servers of that turn alike.  Prints every turn and the
median of the paired ratios.  Not part of `make bench` (about 2 minutes per 10 turns).

``--stdio``: one stdio client per server instead (``--per`` calls a turn, 200 if not given),
as the stdio rows of `make bench` measure.  To compare two versions of the code, check the
other one out beside this one and give server B its sources first on the path, e.g.
``git worktree add /tmp/before HEAD~1`` and
``--b-env PYTHONPATH=/tmp/before/src:$PWD --stdio``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import anyio
from bench_common import DOCKET_PYTHON, PARKED_PARAMS, BenchEnv, bench_environment, paired_ratio
from bench_flows import _stdio_rounds, docket_over_stdio, ours_over_stdio
from bench_mcp import _docket_server, _sdk_batch, _served

from tests.support.procs import free_port, taskbroker_argv


def main(argv: list[str] | None = None) -> int:
    """Run the turns and print them."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--op", choices=("start", "status"), default="start")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--per", type=int, default=None,
                    help="calls per client per turn (40; over stdio 200)")
    ap.add_argument("--b-env", default="TASKBROKER_SERVE_ON_LOOP=false",
                    help="K=V[,K=V...]: the settings of server B")
    ap.add_argument("--stdio", action="store_true", help="one stdio client per server")
    args = ap.parse_args(argv)
    args.per = args.per or (200 if args.stdio else 40)
    start_args = {"task_type": "test_parked", "params": PARKED_PARAMS}
    with bench_environment() as benv, contextlib.ExitStack() as stack:
        env_a = dict(benv.env, TASKBROKER_REAPER_INTERVAL="3600")
        env_b = dict(env_a, **dict(kv.split("=", 1) for kv in args.b_env.split(",") if kv))
        if args.stdio:
            cpu = _stdio_turns(benv, env_a, env_b, args.op, args.rounds, args.per)
            _report(cpu, f"server CPU ms per {args.op} over stdio, 1 client x {args.per} calls "
                         f"per turn; B: {args.b_env}")
            return 0
        servers: list[tuple[str, int, str, str, str]] = []
        for label, env in (("A", env_a), ("B", env_b)):
            port = free_port()
            proc = stack.enter_context(_served(
                taskbroker_argv("serve", "--port", str(port), "--no-worker"), env, label, port))
            servers.append((label, proc.pid, f"http://127.0.0.1:{port}/mcp",
                            "start_background_task_tool", "get_task_status_tool"))
        docket = stack.enter_context(_docket_server(benv))
        if docket is not None:
            servers.append(("Docket", docket.proc.pid, docket.url, "start", "status"))
        ids: dict[str, list[str]] = {s[0]: [] for s in servers}
        for label, pid, url, start_tool, _ in servers:  # warm-up; ids to poll
            anyio.run(_sdk_batch, url, args.clients, 5, start_tool, lambda: dict(start_args),
                      pid, ids[label])
        cpu: dict[str, list[float]] = {s[0]: [] for s in servers}
        for turn in range(args.rounds):
            for label, pid, url, start_tool, status_tool in (
                    servers if turn % 2 == 0 else servers[::-1]):
                if args.op == "start":
                    call: Any = (start_tool, lambda: dict(start_args))
                else:
                    cycle = itertools.cycle(ids[label])
                    call = (status_tool, lambda cycle=cycle: {"task_id": next(cycle)})
                _, per_call, _ = anyio.run(_sdk_batch, url, args.clients, args.per, call[0],
                                           call[1], pid)
                cpu[label].append(per_call)
    _report(cpu, f"server CPU ms per {args.op}, {args.clients} clients x {args.per} calls per "
                 f"turn; B: {args.b_env}")
    return 0


def _stdio_turns(benv: BenchEnv, env_a: dict[str, str], env_b: dict[str, str], op: str,
                 rounds: int, per: int) -> dict[str, list[float]]:
    """Server CPU ms per ``op`` of A, B and Docket over stdio, in turns."""
    servers = [ours_over_stdio("A", env_a), ours_over_stdio("B", env_b)]
    if DOCKET_PYTHON.exists():
        servers.append(docket_over_stdio(benv, "Docket"))
    got = anyio.run(_stdio_rounds, servers, rounds, per)
    return {label: turns[op] for label, turns in got.items()}


def _report(cpu: dict[str, list[float]], title: str) -> None:
    print(title)
    for label, values in cpu.items():
        print(f"  {label:7} " + " ".join(f"{v:.2f}" for v in values)
              + f"   median {statistics.median(values):.3f}")
    for label in [k for k in cpu if k != "A"]:
        print(f"  A / {label}: {paired_ratio(cpu['A'], cpu[label]):.3f} (median of the turns' "
              "ratios)")


if __name__ == "__main__":
    sys.exit(main())
