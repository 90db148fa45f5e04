"""Lost-message recovery, in process: the stub broker loses its queue (a Redis without
persistence restarting); the reaper notices in two scans and publishes again, fails what it
cannot rebuild, and leaves a legitimately waiting queue alone."""

from __future__ import annotations

import datetime as dt

from taskbroker.core.pipeline.principal import Principal
from taskbroker.core.reaper import Reaper
from taskbroker.core.settings import Settings
from taskbroker.testing.in_process import InProcessTaskbroker, in_process_taskbroker

LOST_AFTER = 60.0


def _reaper(tb: InProcessTaskbroker) -> Reaper:
    return Reaper(tb.ledger, tb.broker, tb.app.plugins.registry, stale_after=60, interval=1,
                  retention_days=None, tombstone_days=1, lost_after=LOST_AFTER)


def _later(seconds: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)


def test_lost_messages_are_published_again_after_two_scans() -> None:
    tb = in_process_taskbroker(plugin_modules=["tests.support.sample_plugin"])
    ids = [tb.start("test_echo").task_id for _ in range(5)]
    assert {m.task_id for m in tb.broker.lose_messages()} == set(ids)
    reaper = _reaper(tb)
    assert reaper.run_once(_later(10)).recovered == 0, "too young to be suspected"
    first = reaper.run_once(_later(LOST_AFTER + 1))
    assert first.recovered == 0 and tb.broker.pending == [], "one scan only suspects"
    second = reaper.run_once(_later(LOST_AFTER + 1 + LOST_AFTER / 4))
    assert second.recovered == 5
    assert sorted(m.task_id for m in tb.broker.pending) == sorted(ids)
    outcomes = tb.run_pending()
    assert [o.status for _, o in outcomes] == ["success"] * 5
    assert all(tb.status(i).result == {"owner": "tester"} for i in ids)


def test_a_waiting_queue_is_never_published_twice() -> None:
    tb = in_process_taskbroker(plugin_modules=["tests.support.sample_plugin"])
    ids = [tb.start("test_echo").task_id for _ in range(50)]
    reaper = _reaper(tb)
    for step in range(6):
        report = reaper.run_once(_later(LOST_AFTER + 1 + step * LOST_AFTER))
        assert report.recovered == 0
    assert [m.task_id for m in tb.broker.published] == ids, "no message was published again"


def test_two_reapers_publish_a_lost_message_once() -> None:
    tb = in_process_taskbroker(plugin_modules=["tests.support.sample_plugin"])
    task_id = tb.start("test_echo").task_id
    tb.broker.lose_messages()
    one, two = _reaper(tb), _reaper(tb)
    for reaper in (one, two):
        reaper.run_once(_later(LOST_AFTER + 1))
    at = _later(LOST_AFTER + 1 + LOST_AFTER / 4)
    assert one.run_once(at).recovered + two.run_once(at).recovered == 1
    assert [m.task_id for m in tb.broker.pending] == [task_id]


def test_a_lost_message_with_secret_params_is_failed_not_rebuilt() -> None:
    tb = in_process_taskbroker(plugin_modules=["tests.support.sample_plugin"],
                               principal=Principal("alice", frozenset()))
    receipt = tb.start("test_secret", {"api_key": "hunter2"})
    tb.broker.lose_messages()
    reaper = _reaper(tb)
    reaper.run_once(_later(LOST_AFTER + 1))
    assert reaper.run_once(_later(LOST_AFTER + 1 + LOST_AFTER / 4)).abandoned == 1
    status = tb.status(receipt.task_id)
    assert status.status == "failure" and status.error.startswith("lost by the broker: ")
    assert tb.broker.pending == []


def test_settings_name_the_delay() -> None:
    assert Settings(lost_message_after=5).lost_message_after == 5
