"""Rate-limit leases (core.pipeline.middleware.ratelimit_leases): fewer round trips for busy
callers, and never a call over the limit, however many replicas lease at once.

The unit part runs the `limits` library's real strategies over its in-process store (the
store's semantics are the library's, not ours); the last tests count EVALSHA calls in a real
Redis through the middleware the settings build.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
import redis
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import (
    FixedWindowRateLimiter,
    MovingWindowRateLimiter,
    RateLimiter,
    SlidingWindowCounterRateLimiter,
)

from taskbroker.core.pipeline.chain import Call
from taskbroker.core.pipeline.errors import RateLimited
from taskbroker.core.pipeline.middleware.ratelimit import build_rate_limit_middleware
from taskbroker.core.pipeline.middleware.ratelimit_leases import MAX_LEASE_SHARE, TokenLeases
from taskbroker.core.pipeline.principal import Principal
from taskbroker.core.settings import Settings
from tests.support.procs import Redis


class CountingLimiter(MovingWindowRateLimiter):
    """The library's moving window, counting how often the store is asked."""

    def __init__(self, storage: Any) -> None:
        super().__init__(storage)
        self.asked = 0

    def hit(self, item: RateLimitItem, *identifiers: str, cost: int = 1) -> bool:
        self.asked += 1
        return super().hit(item, *identifiers, cost=cost)


@pytest.mark.parametrize("strategy", [MovingWindowRateLimiter, SlidingWindowCounterRateLimiter,
                                      FixedWindowRateLimiter])
def test_replicas_leasing_at_once_never_exceed_the_limit(strategy: type[RateLimiter]) -> None:
    item = parse("200/hour")
    shared = strategy(MemoryStorage())  # the one store every replica counts in
    replicas = [TokenLeases(shared, lease_seconds=60) for _ in range(3)]
    allowed = [0, 0, 0]
    lock = threading.Lock()

    def caller(i: int) -> None:
        for _ in range(300):
            if replicas[i].hit(item, "status", "alice"):
                with lock:
                    allowed[i] += 1

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(3) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    # every admitted call holds a token of the store; tokens still leased are counted but
    # unspent (at most one lease per replica: 200 // MAX_LEASE_SHARE = 4 tokens each)
    assert sum(allowed) <= 200
    assert sum(allowed) >= 200 - 3 * (200 // MAX_LEASE_SHARE)
    # the limit binds everybody: another call is refused on every replica
    assert not any(r.hit(item, "status", "alice") for r in replicas)
    # and another user is not affected
    assert replicas[0].hit(item, "status", "bob")


def test_limits_under_one_hundred_are_counted_call_by_call() -> None:
    limiter = CountingLimiter(MemoryStorage())
    leases = TokenLeases(limiter, lease_seconds=60)
    item = parse("30/hour")
    results = [leases.hit(item, "start", "alice") for _ in range(40)]
    assert results == [True] * 30 + [False] * 10
    assert limiter.asked == 40


def test_a_busy_caller_asks_the_store_rarely() -> None:
    limiter = CountingLimiter(MemoryStorage())
    leases = TokenLeases(limiter, lease_seconds=60)
    item = parse("100000/hour")
    assert all(leases.hit(item, "status", "alice") for _ in range(1000))
    # leases double while they run out early: 1, 2, 4, ... 512 covers 1,000 calls
    assert limiter.asked <= 11
    stats = limiter.get_window_stats(item, "status", "alice")
    assert 1000 <= 100000 - stats.remaining <= 1000 + 512  # what was taken, spent or not


def test_unspent_tokens_expire_counted_and_the_next_lease_shrinks() -> None:
    limiter = CountingLimiter(MemoryStorage())
    leases = TokenLeases(limiter, lease_seconds=0.05)
    item = parse("100000/hour")
    for _ in range(100):
        assert leases.hit(item, "status", "alice")
    taken = 100000 - limiter.get_window_stats(item, "status", "alice").remaining
    time.sleep(0.1)  # the lease ends with tokens left: they are not spent any more
    asked = limiter.asked
    assert leases.hit(item, "status", "alice")
    assert limiter.asked == asked + 1  # a new lease from the store
    after = 100000 - limiter.get_window_stats(item, "status", "alice").remaining
    # sized by what the last lease spent, not doubled
    assert 1 <= after - taken <= 100


def test_near_the_limit_tokens_are_taken_one_at_a_time() -> None:
    limiter = CountingLimiter(MemoryStorage())
    item = parse("100/hour")  # leases of at most 2
    other = MovingWindowRateLimiter(limiter.storage)
    for _ in range(97):  # another replica spent 97 of 100
        assert other.hit(item, "status", "alice")
    leases = TokenLeases(limiter, lease_seconds=60)
    results = [leases.hit(item, "status", "alice") for _ in range(5)]
    assert results == [True, True, True, False, False]


def test_lease_off_is_one_store_call_per_hit() -> None:
    limiter = CountingLimiter(MemoryStorage())
    leases = TokenLeases(limiter, lease_seconds=0)
    item = parse("100000/hour")
    for _ in range(50):
        assert leases.hit(item, "status", "alice")
    assert limiter.asked == 50


# --- through the middleware, against a real Redis ------------------------------------------


def _evalsha_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


@pytest.mark.parametrize(("lease_seconds", "most_round_trips"), [(1.0, 40), (0.0, 300)])
def test_status_polls_of_a_busy_user_cost_few_redis_round_trips(
        redis_server: Redis, lease_seconds: float, most_round_trips: int) -> None:
    mw = build_rate_limit_middleware(Settings(
        redis_url=redis_server.url, rate_limits="status: 100000/hour",
        rate_limit_lease_seconds=lease_seconds), None)
    who = Principal(f"busy-{uuid.uuid4().hex[:8]}", frozenset())
    client = redis.Redis.from_url(redis_server.url)
    before = _evalsha_calls(client)
    for _ in range(300):
        mw.before(Call("status", who, {}))
    used = _evalsha_calls(client) - before
    assert used <= most_round_trips
    assert used >= (1 if lease_seconds else 300)


def test_a_leased_limit_still_refuses_past_it_in_redis(redis_server: Redis) -> None:
    mw = build_rate_limit_middleware(Settings(
        redis_url=redis_server.url, rate_limits="status: 150/hour"), None)
    who = Principal(f"flood-{uuid.uuid4().hex[:8]}", frozenset())
    admitted = 0
    for _ in range(200):
        try:
            mw.before(Call("status", who, {}))
            admitted += 1
        except RateLimited as refused:
            assert refused.limit == "150 per 1 hour" and refused.retry_after > 0
    assert 150 - 150 // MAX_LEASE_SHARE <= admitted <= 150
