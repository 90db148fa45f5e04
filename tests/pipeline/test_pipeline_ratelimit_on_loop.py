"""Rate limits checked on the event loop (an MCP server's starts and status reads) share the
counters of the same limits checked in worker threads: the `limits.aio` twin of the strategy
over the same Redis, awaited on the loop, never the blocking client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from taskbroker.core.loop_bridge import close_loop_locals, run_on_loop
from taskbroker.core.pipeline.chain import Call
from taskbroker.core.pipeline.errors import BrokerUnavailable, RateLimited
from taskbroker.core.pipeline.middleware.ratelimit import (
    RateLimitMiddleware,
    build_rate_limit_middleware,
)
from taskbroker.core.pipeline.principal import Principal
from taskbroker.core.settings import Settings
from tests.support.procs import Redis

ALICE = Principal("alice", frozenset())


def _middleware(redis: Redis, tmp_path: Path, strategy: str) -> tuple[RateLimitMiddleware,
                                                                list[str]]:
    settings = Settings(redis_url=redis.url, data_dir=tmp_path, broker_timeout=0.5,
                        rate_limits="start: 5/minute; status: 400/minute",
                        rate_limit_strategy=strategy)
    middleware = build_rate_limit_middleware(settings, ledger=None)
    blocking: list[str] = []  # every call that reached the blocking limiter
    sync_hit = middleware.limiter.hit

    def spy(*args: Any, **kwargs: Any) -> bool:
        blocking.append("hit")
        return sync_hit(*args, **kwargs)

    middleware.limiter.hit = spy  # type: ignore[method-assign]
    return middleware, blocking


def _on_loop(middleware: RateLimitMiddleware, operation: str, times: int) -> list[str]:
    """``times`` calls of ``operation`` on one event loop: "ok" or the refusal's class name."""
    def one() -> str:
        try:
            middleware.before(Call(operation, ALICE, {}))
        except (RateLimited, BrokerUnavailable) as exc:
            return type(exc).__name__
        return "ok"

    async def main() -> list[str]:
        try:
            return [await run_on_loop(one) for _ in range(times)]
        finally:
            await close_loop_locals()

    return anyio.run(main)


@pytest.mark.parametrize("strategy", ["moving-window", "sliding-window-counter", "fixed-window"])
def test_calls_on_the_loop_and_in_threads_count_against_one_limit(
        private_redis: Redis, tmp_path: Path, strategy: str) -> None:
    middleware, blocking = _middleware(private_redis, tmp_path, strategy)
    for _ in range(2):  # two starts the usual way (a worker thread's blocking client)
        middleware.before(Call("start", ALICE, {}))
    assert blocking == ["hit", "hit"]
    # three more fit in 5/minute on the loop; the sixth is refused there with its retry time
    assert _on_loop(middleware, "start", 4) == ["ok", "ok", "ok", "RateLimited"]
    assert blocking == ["hit", "hit"]  # the loop never used the blocking client
    with pytest.raises(RateLimited) as refused:
        middleware.before(Call("start", ALICE, {}))
    assert 0 < refused.value.retry_after <= 60


def test_leased_tokens_are_taken_on_the_loop(private_redis: Redis, tmp_path: Path) -> None:
    middleware, blocking = _middleware(private_redis, tmp_path, "moving-window")
    assert _on_loop(middleware, "status", 30) == ["ok"] * 30
    assert blocking == []
    # 400/minute is leased a few tokens at a time: far fewer store round trips than calls,
    # and every token taken is counted in Redis (what a thread's check sees)
    stats = middleware.limiter.get_window_stats(middleware.limits["status"][0], "status",
                                                "alice")
    assert 30 <= 400 - stats.remaining < 60


def test_redis_down_refuses_calls_on_the_loop(private_redis: Redis, tmp_path: Path) -> None:
    middleware, _ = _middleware(private_redis, tmp_path, "moving-window")
    assert _on_loop(middleware, "start", 1) == ["ok"]
    private_redis.stop()
    assert _on_loop(middleware, "start", 2) == ["BrokerUnavailable"] * 2  # fail closed
