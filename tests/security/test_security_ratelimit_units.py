"""Units of the rate-limit layer: the limit-string parser, the middleware on in-memory storage,
and failing closed when Redis is unreachable (a port nobody listens on: no Redis needed)."""

from __future__ import annotations

import pytest
from limits import RateLimitItemPerHour, RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.storage import MemoryStorage

from taskbroker.core.pipeline.chain import Call
from taskbroker.core.pipeline.errors import BrokerUnavailable, RateLimited, Unauthenticated
from taskbroker.core.pipeline.middleware.ratelimit import (
    ACTIVE_CAP_RETRY_AFTER,
    RateLimitConfigError,
    RateLimitMiddleware,
    build_rate_limit_middleware,
    parse_rate_limits,
)
from taskbroker.core.pipeline.principal import Principal
from taskbroker.core.settings import Settings
from tests.support.procs import free_port

USER = Principal("carol", frozenset())
ADMIN = Principal("root", frozenset({"admin"}))


def call(op: str, who: Principal | None = USER) -> Call:
    """A call as the identity layer leaves it."""
    return Call(op, who, {})


# --- parser -------------------------------------------------------------------------------


def test_default_setting_parses_to_every_operation() -> None:
    limits = parse_rate_limits(Settings().rate_limits)
    # retry is counted as the start it makes
    assert set(limits) == {"start", "status", "cancel", "list", "list_types", "search",
                           "inspect", "workers"}
    assert limits["start"] == (RateLimitItemPerMinute(30),)
    assert limits["status"] == (RateLimitItemPerMinute(600),)


def test_named_operations_override_and_the_rest_keep_defaults() -> None:
    limits = parse_rate_limits(" start : 5/second, 100/hour ;status: 2 per 10 seconds; ")
    assert limits["start"] == (RateLimitItemPerSecond(5), RateLimitItemPerHour(100))
    assert limits["status"] == (RateLimitItemPerSecond(2, 10),)
    assert limits["cancel"] == (RateLimitItemPerMinute(60),)  # default kept


def test_none_disables_one_operation_in_any_case() -> None:
    limits = parse_rate_limits("status: none; list: NONE")
    assert "status" not in limits and "list" not in limits
    assert "start" in limits


def test_without_defaults_only_named_operations_are_limited() -> None:
    assert parse_rate_limits("cancel: 3/minute", defaults=None) == {
        "cancel": (RateLimitItemPerMinute(3),)
    }
    assert parse_rate_limits("", defaults=None) == {}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("start 30/minute", "is not 'operation: limit'"),
        ("start:", "is not 'operation: limit'"),
        ("poll: 30/minute", "unknown operation 'poll'"),
        ("start: 30/fortnight", "cannot parse the limit '30/fortnight' of 'start'"),
        ("start: lots", "cannot parse the limit 'lots'"),
        ("start: 0/minute", "allows no call at all"),
        ("start: 1/minute; start: 2/minute", "operation 'start' is given twice"),
    ],
)
def test_malformed_settings_name_the_setting(text: str, expected: str) -> None:
    with pytest.raises(RateLimitConfigError) as err:
        parse_rate_limits(text)
    assert str(err.value).startswith("TASKBROKER_RATE_LIMITS: ")
    assert expected in str(err.value)


def test_build_refuses_a_malformed_setting_at_startup() -> None:
    with pytest.raises(ValueError, match="TASKBROKER_RATE_LIMITS"):
        build_rate_limit_middleware(Settings(rate_limits="start=30/minute"), None)


# --- middleware on memory storage -----------------------------------------------------------


@pytest.mark.parametrize("strategy", ["moving-window", "sliding-window-counter", "fixed-window"])
def test_denial_names_the_limit_and_when_to_retry(strategy: str) -> None:
    mw = RateLimitMiddleware(parse_rate_limits("list: 3/hour", defaults=None),
                             storage=MemoryStorage(), strategy=strategy)
    for _ in range(3):
        mw.before(call("list"))
    with pytest.raises(RateLimited) as err:
        mw.before(call("list"))
    exc = err.value
    assert str(exc) == "rate limit exceeded for list: 3 per 1 hour"
    assert exc.limit == "3 per 1 hour"
    assert 0 < exc.retry_after <= 3600
    # other users and other operations have their own counters
    mw.before(call("list", Principal("dave", frozenset())))
    mw.before(call("status"))


def test_admins_are_limited_too() -> None:
    mw = RateLimitMiddleware(parse_rate_limits("start: 1/hour", defaults=None))
    mw.before(call("start", ADMIN))
    with pytest.raises(RateLimited):
        mw.before(call("start", ADMIN))


class KeyRecorder(MemoryStorage):
    """In-memory storage that remembers the counter keys the moving window asks for."""

    def __init__(self) -> None:
        super().__init__()
        self.keys: list[str] = []

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        self.keys.append(key)
        return super().acquire_entry(key, limit, expiry, amount)


def test_a_slash_in_a_user_id_cannot_reach_another_key() -> None:
    # Counter keys are LIMITER/<operation>/<user>/<amount>/<multiples>/<granularity>: the
    # user id must stay one segment (quoted), or "x/status/y" reads as user "x" followed by
    # extra segments and the key no longer says unambiguously whose counter it is.
    storage = KeyRecorder()
    mw = RateLimitMiddleware(parse_rate_limits("status: 1/hour", defaults=None),
                             storage=storage)
    for user in ("x/status/y", "x"):
        mw.before(call("status", Principal(user, frozenset())))
    assert storage.keys == ["LIMITER/status/x%2Fstatus%2Fy/1/1/hour",
                            "LIMITER/status/x/1/1/hour"]
    with pytest.raises(RateLimited):  # each spent its own budget
        mw.before(call("status", Principal("x", frozenset())))


def test_no_identity_is_refused_not_counted() -> None:
    mw = RateLimitMiddleware({})
    with pytest.raises(Unauthenticated):
        mw.before(call("status", None))


class FakeLedger:
    """Counts active tasks per owner like the ledger does."""

    def __init__(self, active: int) -> None:
        self.active = active

    def count_active(self, owner: str) -> int:
        return self.active


def test_active_cap_refuses_starts_only() -> None:
    ledger = FakeLedger(2)
    mw = RateLimitMiddleware({}, ledger=ledger, max_active=2)
    with pytest.raises(RateLimited) as err:
        mw.before(call("start"))
    assert err.value.limit == "max_active_per_user=2"
    assert err.value.retry_after == ACTIVE_CAP_RETRY_AFTER
    assert "rate limit exceeded for start: max_active_per_user=2" in str(err.value)
    mw.before(call("status"))  # other operations are not capped
    ledger.active = 1
    c = call("start")
    mw.before(c)
    mw.after(c)  # releases the per-user lock
    c2 = call("start")
    mw.before(c2)  # would deadlock if the lock had leaked
    mw.after(c2)


def test_zero_cap_means_no_cap() -> None:
    mw = RateLimitMiddleware({}, ledger=FakeLedger(10_000), max_active=0)
    mw.before(call("start"))


def test_unknown_strategy_is_a_config_error() -> None:
    with pytest.raises(RateLimitConfigError, match="TASKBROKER_RATE_LIMIT_STRATEGY"):
        RateLimitMiddleware({}, strategy="leaky-bucket")


# --- fail closed ----------------------------------------------------------------------------


def test_unreachable_redis_refuses_the_call() -> None:
    settings = Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0", broker_timeout=1.0)
    mw = build_rate_limit_middleware(settings, None)
    with pytest.raises(BrokerUnavailable) as err:
        mw.before(call("status"))
    assert isinstance(err.value, ConnectionError)
    assert "rate limiter unavailable" in str(err.value)
    assert "redis://" not in str(err.value)  # no URL (it may carry a password)


def test_ledger_failure_at_the_cap_check_refuses_the_start() -> None:
    class Flaky:
        broken = True

        def count_active(self, owner: str) -> int:
            if self.broken:
                raise OSError("database gone")
            return 0

    ledger = Flaky()
    mw = RateLimitMiddleware({}, ledger=ledger, max_active=5)
    with pytest.raises(BrokerUnavailable):
        mw.before(call("start"))
    ledger.broken = False
    c = call("start")
    mw.before(c)  # would deadlock if the failed check had kept the per-user lock
    mw.after(c)
