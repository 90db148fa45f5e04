"""A real Prometheus scrapes a real server and worker; every dashboard and alert query has data.

The workload goes through MCP over HTTP (``taskbroker serve --no-worker`` subprocess), so
this also checks the trace from the MCP server process to the worker, both exporting OTLP.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import yaml

from tests.conftest import LOG_DIR
from tests.support.mcp_client import http_client, run_with
from tests.support.procs import Proc, free_port, start_process, taskbroker_argv, wait_for

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "helm" / "taskbroker" / "dashboards" / "taskbroker.json"
ALERTS = ROOT / "helm" / "taskbroker" / "files" / "alerts.yaml"
NAMESPACE = "tb-obs-test"
RATE_INTERVAL = "1m"


# --------------------------------------------------------------------- the queries


def dashboard_exprs() -> list[str]:
    """Every panel query of the dashboard, Grafana variables substituted."""
    dash = json.loads(DASHBOARD.read_text())
    exprs: list[str] = []

    def walk(panels: list[dict]) -> None:
        for p in panels:
            exprs.extend(t["expr"] for t in p.get("targets", []) if t.get("expr"))
            walk(p.get("panels", []))

    walk(dash["panels"])
    return [e.replace("$__rate_interval", RATE_INTERVAL).replace("$namespace", NAMESPACE)
            .replace("$task_type", ".*") for e in exprs]


def dashboard_variables() -> list[tuple[str, str]]:
    """(metric, label) of every ``label_values`` template variable."""
    dash = json.loads(DASHBOARD.read_text())
    out = []
    for var in dash.get("templating", {}).get("list", []):
        q = var.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        if var.get("type") == "query" and q:
            m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", q.strip())
            assert m, q
            out.append((m.group(1), m.group(2)))
    return out


def alert_exprs() -> dict[str, str]:
    """Alert name -> expression."""
    doc = yaml.safe_load(ALERTS.read_text())
    return {r["alert"]: r["expr"] for g in doc["groups"] for r in g["rules"]}


_OPEN, _CLOSE = "([{", ")]}"
_LEVELS = [  # PromQL binary operators from the loosest binding
    re.compile(r"\bor\b"),
    re.compile(r"\b(?:and|unless)\b"),
    re.compile(r"==|!=|>=|<=|>|<"),
]
_MODIFIERS = re.compile(r"^\s*(?:bool\b|(?:on|ignoring|group_left|group_right)\s*\([^)]*\))\s*")
_NUMBER = re.compile(r"^\s*[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[-+]?\d+)?\s*$", re.I)


def _scan(expr: str) -> Iterator[tuple[int, str, int]]:
    """``(position, character, depth after it)`` for every character outside strings."""
    depth, quote = 0, ""
    for i, ch in enumerate(expr):
        if quote:
            quote = "" if ch == quote and expr[i - 1] != "\\" else quote
            continue
        if ch in "\"'`":
            quote = ch
            continue
        if ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth -= 1
        yield i, ch, depth


def _top_level(expr: str) -> list[int]:
    """Positions of ``expr`` outside brackets and strings."""
    return [i for i, ch, depth in _scan(expr)
            if depth == 0 and ch not in _OPEN and ch not in _CLOSE]


def _unwrap(expr: str) -> str:
    """Drop parentheses around the whole expression."""
    expr = expr.strip()
    while expr.startswith("(") and _first_close(expr) == len(expr) - 1:
        expr = expr[1:-1].strip()
    return expr


def _first_close(expr: str) -> int:
    return next((i for i, ch, depth in _scan(expr) if ch in _CLOSE and depth == 0), -1)


def signals(expr: str) -> list[str]:
    """The operands an alert compares or combines: each must return series on live data.

    Splits at top-level ``or``, ``and``/``unless`` and comparison operators, drops number
    literals and group modifiers, and looks inside ``absent(...)``; arithmetic stays whole.
    """
    expr = _unwrap(expr)
    outside = set(_top_level(expr))
    for level in _LEVELS:
        for m in level.finditer(expr):
            if m.start() in outside:
                left, right = expr[:m.start()], _MODIFIERS.sub("", expr[m.end():])
                return [s for part in (left, right) for s in signals(part)]
    m = re.fullmatch(r"absent\s*\((.*)\)", expr, re.S)
    if m:
        return signals(m.group(1))
    return [] if _NUMBER.match(expr) else [expr]


def test_signals_split_alerts_into_what_they_compare() -> None:
    got = signals('max by (ns) (a{s="x>y"}) > 0 unless on (ns) sum(rate(b[5m])) > 0')
    assert got == ['max by (ns) (a{s="x>y"})', "sum(rate(b[5m]))"]
    assert signals("absent(up) or sum(up) == 0") == ["up", "sum(up)"]
    assert signals("((c / d)) > 0.1") == ["c / d"]
    assert signals("(x or y * 0) / z > 1") == ["(x or y * 0) / z"]


# --------------------------------------------------------------------- processes


@pytest.fixture(scope="module")
def server(obs_env: dict[str, str], obs_worker: Proc) -> Iterator[tuple[Proc, int]]:
    """``taskbroker serve --no-worker`` over HTTP without auth, exporting OTLP spans."""
    port = free_port()
    env = dict(obs_env, TASKBROKER_HTTP_AUTH="none",
               TASKBROKER_RATE_LIMITS="list_types: 2/minute")  # real denials in the workload
    proc = start_process(taskbroker_argv("serve", "--port", str(port), "--no-worker"),
                         env=env, name="obs-server", log_dir=LOG_DIR)
    try:
        # /readyz opens the broker and database connections
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200,
                 timeout=60, what="server ready")
        yield proc, port
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def prometheus(server: tuple[Proc, int], obs_settings) -> Iterator[str]:
    """A real Prometheus scraping the server and the worker every second, with our rules."""
    exe = shutil.which("prometheus")
    assert exe, "prometheus is not installed: run scripts/install-test-deps.sh (make test does)"
    workdir = Path(tempfile.mkdtemp(prefix="tb-prom-"))
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [
            {"job_name": "taskbroker-server", "static_configs": [
                {"targets": [f"127.0.0.1:{server[1]}"], "labels": {"namespace": NAMESPACE}}]},
            {"job_name": "taskbroker-worker", "static_configs": [
                {"targets": [f"127.0.0.1:{obs_settings.worker_metrics_port}"],
                 "labels": {"namespace": NAMESPACE}}]},
        ],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    proc = start_process([exe, f"--config.file={workdir / 'prometheus.yml'}",
                          f"--storage.tsdb.path={workdir / 'data'}",
                          f"--web.listen-address=127.0.0.1:{port}"],
                         env={"PATH": "/usr/bin:/bin"}, name="prometheus", log_dir=LOG_DIR)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{url}/-/ready").status_code == 200, timeout=60,
                 what=f"prometheus ready ({proc.log()[-500:]})")
        yield url
    finally:
        proc.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def query(url: str, expr: str) -> list[dict[str, Any]]:
    """Evaluate ``expr`` now; fail on a PromQL error."""
    r = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=30)
    body = r.json()
    assert body.get("status") == "success", (expr, body)
    return body["data"]["result"]


# --------------------------------------------------------------------- the workload


FINISHED = ("success", "failure", "revoked")


def mcp_workload(url: str) -> dict[str, str]:
    """Starts, failures, a cancel, refusals, polls and lists through MCP; returns task ids.

    Each wait has a generous deadline (a hang guard, not a performance bound).
    """

    async def body(c: Any) -> dict[str, str]:
        async def start(task_type: str, params: dict) -> Any:
            return await c.call_tool("start_background_task_tool",
                                     {"task_type": task_type, "params": params})

        async def status(task_id: str) -> str:
            r = await c.call_tool("get_task_status_tool", {"task_id": task_id})
            return r.structured_content["status"]

        async def wait_status(task_id: str, wanted: tuple[str, ...]) -> None:
            with anyio.fail_after(60):
                while await status(task_id) not in wanted:
                    await anyio.sleep(0.05)

        ids = {}
        for i in range(3):
            r = await start("test_count", {"n": 2, "step_ms": 10})
            assert not r.is_error
            ids[f"count{i}"] = r.structured_content["task_id"]
        ids["fail"] = (await start("test_fail", {})).structured_content["task_id"]
        ids["sleep"] = (await start("test_sleep", {"seconds": 60})).structured_content["task_id"]
        assert (await start("no_such_type", {})).is_error
        assert (await c.call_tool("get_task_status_tool", {"task_id": "nope"})).is_error
        refused = [(await c.call_tool("list_task_types_tool", {})).is_error for _ in range(4)]
        assert refused == [False, False, True, True]  # list_types: 2/minute
        await wait_status(ids["sleep"], ("started",))
        await c.call_tool("list_active_tasks_tool", {})
        assert not (await c.call_tool("cancel_task_tool", {"task_id": ids["sleep"]})).is_error
        for task_id in ids.values():
            await wait_status(task_id, FINISHED)
        return ids

    return run_with(http_client(url), body)


@pytest.fixture(scope="module")
def workload(server: tuple[Proc, int], prometheus: str) -> dict[str, str]:
    """Run the workload once Prometheus has a first scrape of both targets; wait for data."""

    def targets_up() -> bool:
        active = httpx.get(f"{prometheus}/api/v1/targets").json()["data"]["activeTargets"]
        return len(active) == 2 and all(t["health"] == "up" for t in active)

    wait_for(targets_up, timeout=60, what="both targets scraped")
    # a first start warms the server's broker connection (narrows the Ledger.create race)
    run_with(http_client(f"http://127.0.0.1:{server[1]}/mcp"), lambda c: c.call_tool(
        "start_background_task_tool", {"task_type": "test_echo"}))
    ids = mcp_workload(f"http://127.0.0.1:{server[1]}/mcp")
    wait_for(lambda: query(prometheus, 'sum(taskbroker_tasks_total{state="started"}) >= 4'),
             timeout=60, what="worker counters scraped")
    wait_for(lambda: query(prometheus, 'sum(taskbroker_rate_limit_denials_total'
                                       '{operation="list_types"}) == 2'),
             timeout=60, what="rate-limit denials scraped")
    # series the workload created need two samples before rate() and increase() see them
    wait_for(lambda: query(prometheus, 'count_over_time(taskbroker_operations_total'
                                       '{operation="cancel"}[1m]) >= 3'),
             timeout=60, what="server counters scraped")
    return ids


# --------------------------------------------------------------------- the checks


def test_every_dashboard_query_returns_series(prometheus: str, workload: dict) -> None:
    exprs = dashboard_exprs()
    assert len(exprs) >= 10
    empty = [e for e in exprs if not query(prometheus, e)]
    assert not empty, f"dashboard queries without data: {empty}"
    for metric, label in dashboard_variables():
        values = httpx.get(f"{prometheus}/api/v1/label/{label}/values",
                           params={"match[]": metric}).json()["data"]
        assert values, (metric, label)


def test_every_alert_signal_returns_series(prometheus: str, workload: dict) -> None:
    for name, expr in alert_exprs().items():
        query(prometheus, expr)  # the whole rule is valid PromQL that evaluates
        parts = signals(expr)
        assert parts, name
        empty = [p for p in parts if not query(prometheus, p)]
        assert not empty, f"{name}: no data for {empty}"

    def evaluated() -> list[dict]:
        groups = httpx.get(f"{prometheus}/api/v1/rules").json()["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        done = all(not r["lastEvaluation"].startswith("0001") for r in rules)
        return done and rules

    rules = wait_for(evaluated, timeout=30, what="rules evaluated")
    assert {r["name"] for r in rules} == set(alert_exprs())
    assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError"))
                                                     for r in rules]


def test_every_metric_named_is_exported(prometheus: str, workload: dict) -> None:
    text = DASHBOARD.read_text() + ALERTS.read_text()
    names = set(re.findall(r"\btaskbroker_[a-z_]+\b", text))
    assert len(names) >= 8
    missing = [n for n in sorted(names) if not query(prometheus, f'count({{__name__="{n}"}})')]
    assert not missing, f"named but not exported: {missing}"


def test_promtool_accepts_the_rules() -> None:
    exe = shutil.which("promtool")
    assert exe, "promtool is not installed: run scripts/install-test-deps.sh (make test does)"
    proc = subprocess.run([exe, "check", "rules", str(ALERTS)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mcp_call_and_worker_share_one_trace(otlp_collector, workload: dict) -> None:
    task_id = workload["count0"]
    start = wait_for(lambda: otlp_collector.find("taskbroker.start", task__id=task_id),
                     timeout=30, what="the server's start span")[0]
    run = wait_for(lambda: otlp_collector.find("taskbroker.task test_count", task__id=task_id),
                   timeout=30, what="the worker's span")[0]
    assert start.service == "taskbroker-server" and run.service == "taskbroker-worker"
    assert run.trace_id == start.trace_id and run.parent_span_id == start.span_id
