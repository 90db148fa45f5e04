"""Metric values after a scripted sequence of calls: server counters, worker counters, gauges."""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from taskbroker.app import App, build_app, default_middleware, load_app_plugins
from taskbroker.core.pipeline.chain import Call, Middleware
from taskbroker.core.pipeline.errors import (
    InvalidRequest,
    RateLimited,
    TaskNotFound,
    Unauthenticated,
)
from taskbroker.core.pipeline.principal import Principal
from taskbroker.core.settings import Settings
from taskbroker.observability import metrics
from tests.support.procs import Proc, wait_for

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class _FloodLimiter(Middleware):
    """Refuses starts of the type name "flood" as the rate limiter would."""

    def before(self, call: Call) -> None:
        if call.args.get("task_type") == "flood":
            raise RateLimited("too many starts", limit="start: 1/minute", retry_after=30)


@pytest.fixture(scope="module")
def metered_app(obs_settings: Settings) -> Iterator[App]:
    """The default chain (observability outermost) plus a limiter that refuses "flood"."""
    plugins = load_app_plugins(obs_settings)
    probe = build_app(obs_settings, plugins=plugins, middleware=[])
    chain = default_middleware(obs_settings, plugins, probe.ledger)
    chain.insert(1, _FloodLimiter())
    app = build_app(obs_settings, plugins=plugins, middleware=chain)
    yield app


def local_samples(*names: str) -> Samples:
    """Current samples of ``names`` in this process's default registry."""
    out: Samples = {}
    for family in REGISTRY.collect():
        for s in family.samples:
            if s.name in names:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def scrape(port: int) -> Samples:
    """A worker's /metrics, parsed."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def delta(after: Samples, before: Samples, name: str) -> dict[tuple[str, ...], float]:
    """Non-zero increases of ``name`` keyed by label values (label names sorted)."""
    out = {}
    for (n, labels), value in after.items():
        if n == name:
            d = value - before.get((n, labels), 0.0)
            if d:
                out[tuple(v for _, v in labels if _ != "le")] = d
    return out


def test_metric_values_after_a_scripted_sequence(metered_app: App, obs_worker: Proc,
                                                 obs_settings: Settings,
                                                 alice: Principal) -> None:
    svc, ledger = metered_app.service, metered_app.ledger
    port = obs_settings.worker_metrics_port
    server_names = ("taskbroker_operations_total", "taskbroker_rate_limit_denials_total",
                    "taskbroker_operation_duration_seconds_count")
    before, worker_before = local_samples(*server_names), scrape(port)

    counts = [svc.start(alice, "test_count", {"n": 2, "step_ms": 10}) for _ in range(2)]
    failing = svc.start(alice, "test_fail", {"message": "expected"})
    sleeper = svc.start(alice, "test_sleep", {"seconds": 60})
    with pytest.raises(InvalidRequest):
        svc.start(alice, "no_such_type", {})
    with pytest.raises(Unauthenticated):
        svc.start(None, "test_count", {})
    with pytest.raises(TaskNotFound):
        svc.status(alice, "00000000-0000-0000-0000-000000000000")
    with pytest.raises(RateLimited):
        svc.start(alice, "flood", {})
    wait_for(lambda: ledger.get(sleeper.task_id).status == "started", timeout=60,
             what="sleeper started")
    assert svc.status(alice, sleeper.task_id).status == "started"

    # the active-task gauge is read from the ledger at scrape time (own database: exact)
    assert REGISTRY.get_sample_value(
        "taskbroker_active_tasks", {"task_type": "test_sleep", "state": "started"}) == 1
    assert REGISTRY.get_sample_value(
        "taskbroker_active_tasks", {"task_type": "test_sleep", "state": "queued"}) == 0

    svc.list_active(alice)
    svc.list_types(alice)
    svc.cancel(alice, sleeper.task_id)

    after = local_samples(*server_names)
    assert delta(after, before, "taskbroker_operations_total") == {
        # label order: operation, outcome, task_type
        ("start", "ok", "test_count"): 2,
        ("start", "ok", "test_fail"): 1,
        ("start", "ok", "test_sleep"): 1,
        ("start", "invalid", "unknown"): 1,
        ("start", "denied", "unknown"): 1,  # refused before the type was resolved
        ("start", "rate_limited", "unknown"): 1,
        ("status", "not_found", "none"): 1,
        ("status", "ok", "test_sleep"): 1,
        ("list", "ok", "none"): 1,
        ("list_types", "ok", "none"): 1,
        ("cancel", "ok", "test_sleep"): 1,
    }
    assert delta(after, before, "taskbroker_rate_limit_denials_total") == {("start",): 1}
    durations = delta(after, before, "taskbroker_operation_duration_seconds_count")
    assert durations[("start", "test_count")] == 2
    assert sum(durations.values()) == 12  # one observation per call

    ended = {c.task_id: "success" for c in counts} | {failing.task_id: "failure",
                                                       sleeper.task_id: "revoked"}
    wait_for(lambda: all((r := ledger.get(t)) and r.status == s and r.ended_at is not None
                         for t, s in ended.items()),
             timeout=60, what="every task finished")
    expected_states = {("started", "test_count"): 2, ("succeeded", "test_count"): 2,
                       ("started", "test_fail"): 1, ("failed", "test_fail"): 1,
                       ("started", "test_sleep"): 1, ("revoked", "test_sleep"): 1}
    # label order: state, task_type
    worker_after = wait_for(
        lambda: (w := scrape(port)) and delta(w, worker_before, "taskbroker_tasks_total")
        == expected_states and w,
        timeout=30, what=f"worker counters {expected_states}")
    per_type = Counter({"test_count": 2, "test_fail": 1, "test_sleep": 1})
    for hist in ("taskbroker_task_runtime_seconds_count",
                 "taskbroker_task_queue_wait_seconds_count"):
        assert Counter({k[0]: v for k, v in delta(worker_after, worker_before, hist).items()}
                       ) == per_type, hist
    assert worker_after[("taskbroker_worker_up", ())] == 1
    # every registered type is exported at 0 from the start (rate() has a series at once)
    assert worker_after[("taskbroker_tasks_total",
                         (("state", "retried"), ("task_type", "test_echo")))] == 0

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as resp:
        assert resp.status == 200 and json.load(resp) == {"status": "ok"}


def test_task_type_labels_stay_bounded() -> None:
    """Names nobody registered collapse into one label value."""
    from taskbroker.core.pipeline.chain import Call
    from taskbroker.observability.middleware import task_type_label

    assert task_type_label(Call("start", None, {"task_type": "x" * 500})) == "unknown"
    assert task_type_label(Call("list_types", None, {})) == metrics.NO_TASK_TYPE
