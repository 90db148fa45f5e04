"""Client input is refused where it enters, as the client's error (ValueError/PermissionError
naming the field), never reported as an outage (ConnectionError) and never left to fail in a
worker: control characters in keys and free text, over-long or unprintable identities,
dates outside the calendar the task types can handle.  On PostgreSQL and on SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from taskbroker.adapters.memory import StubBroker
from taskbroker.app import App, build_app, load_app_plugins
from taskbroker.core.pipeline.errors import InvalidRequest, Unauthenticated
from taskbroker.core.pipeline.principal import Principal
from taskbroker.core.settings import Settings
from taskbroker.testing.in_process import in_process_taskbroker

ALICE = Principal("edge-alice", frozenset())
ADMIN = Principal("edge-admin", frozenset({"admin"}))


@pytest.fixture(params=["postgresql", "sqlite"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[App]:
    if request.param == "postgresql":
        yield request.getfixturevalue("dist_app")
        return
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'edge.db'}", data_dir=tmp_path,
                        redis_url=None, builtin_plugins=False, load_plugins="",
                        plugin_modules="tests.support.sample_plugin")
    yield build_app(settings, plugins=load_app_plugins(settings), broker=StubBroker())


def test_a_nul_in_an_idempotency_key_is_the_clients_error(app: App) -> None:
    with pytest.raises(InvalidRequest, match=r"^idempotency_key: contains the control "):
        app.service.start(ALICE, "test_echo", {}, idempotency_key="key\x00one")


def test_control_characters_in_params_name_their_path(app: App) -> None:
    with pytest.raises(InvalidRequest, match=r"^params\.message: contains the control "
                                             r"character '\\x00' at position 3"):
        app.service.start(ALICE, "test_fail", {"message": "abc\x00"})
    # free text keeps its newlines and tabs
    receipt = app.service.start(ALICE, "test_fail", {"message": "line 1\n\tline 2"})
    assert receipt.task_id


@pytest.mark.parametrize("user", ["x" * 201, "alice\x00", "bob\ntwo"])
def test_an_unusable_identity_is_refused_not_an_outage(app: App, user: str) -> None:
    with pytest.raises(Unauthenticated) as caught:
        app.service.start(Principal(user, frozenset()), "test_echo", {})
    assert isinstance(caught.value, PermissionError)
    assert user not in str(caught.value)
    with pytest.raises(Unauthenticated):
        app.service.list_active(Principal(user, frozenset()))


def test_far_dates_and_nul_in_a_crisis_reason_fail_validation_not_the_worker() -> None:
    tb = in_process_taskbroker(builtin_plugins=True, principal=ADMIN)
    for date in ("9999-12-31", "1900-01-01"):
        with pytest.raises(InvalidRequest, match=r"params\.start_date: "):
            tb.start("resilience_contingency", {"start_date": date})
        with pytest.raises(InvalidRequest, match=r"params\.start_date: "):
            tb.start("metrics_computation", {"start_date": date})
    with pytest.raises(InvalidRequest, match=r"^params\.reason: contains the control"):
        tb.start("resilience_crisis_activation", {"severity": "minor", "reason": "a\x00b"})
    assert tb.broker.published == [], "nothing refused was queued"
