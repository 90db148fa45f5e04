"""Per-user, per-operation rate limits and the per-user cap on active tasks.

Limits come from ``TASKBROKER_RATE_LIMITS`` (``Settings.rate_limits``)::

    start: 30/minute; status: 600/minute; cancel: 60/minute; list: 120/minute

Each ``op: spec`` names one of the operations (start, status, cancel, list, list_types) and a
limit in the `limits` library's notation (``N/second``, ``N per 5 minutes``...; several for one
operation separated by commas, e.g. ``start: 5/second, 30/minute``).  ``op: none`` disables the
operation's limit; an operation the setting does not mention keeps its default.  A malformed
setting is an error at startup naming ``TASKBROKER_RATE_LIMITS``.

The counters live in Redis in distributed mode (``TASKBROKER_REDIS_URL``; the `limits` library's
Lua scripts make every check atomic across processes) and in memory in embedded mode.  They
are keyed by operation and user id (never by token).  Admins are limited like everybody else.

The middleware fails closed: when Redis cannot be reached the call is refused with
:class:`~taskbroker.core.pipeline.errors.BrokerUnavailable` rather than let through.  A normal
call costs one Redis round trip per configured limit of its operation (one with the
defaults), or none while a lease of tokens lasts (limits of 100 or more per window, for a busy
caller: :mod:`.ratelimit_leases`); a refused call costs one more, to read when the window
frees up.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import quote

from limits import RateLimitItem, parse_many
from limits.aio import strategies as aio_strategies
from limits.storage import MemoryStorage, RedisStorage, Storage
from limits.strategies import (
    FixedWindowRateLimiter,
    MovingWindowRateLimiter,
    RateLimiter,
    SlidingWindowCounterRateLimiter,
)

from taskbroker.core.loop_bridge import LoopLocal, acquire
from taskbroker.core.pipeline.chain import OPERATIONS, Call, Middleware
from taskbroker.core.pipeline.errors import (
    BrokerUnavailable,
    InvalidRequest,
    RateLimited,
    Unauthenticated,
)
from taskbroker.core.pipeline.middleware.ratelimit_leases import TokenLeases
from taskbroker.core.pipeline.middleware.validation import check_text
from taskbroker.core.settings import Settings

__all__ = [
    "ACTIVE_CAP_RETRY_AFTER",
    "DEFAULT_RATE_LIMITS",
    "KEY_PREFIX",
    "RateLimitConfigError",
    "RateLimitMiddleware",
    "build_rate_limit_middleware",
    "parse_rate_limits",
]

log = logging.getLogger("taskbroker.ratelimit")

#: the setting's default, which operations not named in the setting keep
DEFAULT_RATE_LIMITS: str = Settings.model_fields["rate_limits"].default

#: prefix of every rate-limit key in Redis
KEY_PREFIX = "taskbroker:ratelimit"

#: seconds a caller at the active-task cap is told to wait (a typical polling interval: a
#: slot frees only when one of their tasks ends, which the server cannot predict)
ACTIVE_CAP_RETRY_AFTER = 10.0

_STRATEGIES: dict[str, type[RateLimiter]] = {
    "moving-window": MovingWindowRateLimiter,
    "sliding-window-counter": SlidingWindowCounterRateLimiter,
    "fixed-window": FixedWindowRateLimiter,
}

#: the same strategies over `limits.aio` storage (same keys and scripts), for calls on the loop
_AIO_STRATEGIES: dict[str, Any] = {
    "moving-window": aio_strategies.MovingWindowRateLimiter,
    "sliding-window-counter": aio_strategies.SlidingWindowCounterRateLimiter,
    "fixed-window": aio_strategies.FixedWindowRateLimiter,
}

_SETTING = "TASKBROKER_RATE_LIMITS"


class RateLimitConfigError(ValueError):
    """``TASKBROKER_RATE_LIMITS`` (or the strategy) cannot be understood."""


class ActiveCounter(Protocol):
    """What the active-task cap (and idempotent replays) need from the ledger."""

    def count_active(self, owner: str) -> int:
        """How many non-terminal tasks ``owner`` has."""
        ...

    def by_idempotency_key(self, owner: str, key: str) -> Any:
        """The task ``owner`` started with idempotency ``key``, if any."""
        ...


def parse_rate_limits(
    text: str, *, defaults: str | None = DEFAULT_RATE_LIMITS
) -> dict[str, tuple[RateLimitItem, ...]]:
    """Parse ``"op: N/period; op: none; ..."`` into the limits of every operation.

    Operations the text does not name keep their limits from ``defaults`` (none when
    ``defaults`` is None); ``none`` (any case) disables an operation's limit, which is then
    absent from the result.

    Raises:
        RateLimitConfigError: the text is malformed (unknown operation, an operation named
            twice, a missing ``:``, an unparseable or zero limit); the message names the
            setting and the offending part.
    """
    limits: dict[str, tuple[RateLimitItem, ...]] = (
        dict(parse_rate_limits(defaults, defaults=None)) if defaults else {}
    )
    seen: set[str] = set()
    for raw in text.split(";"):
        part = raw.strip()
        if not part:
            continue
        op, colon, spec = part.partition(":")
        op, spec = op.strip(), spec.strip()
        if not colon or not op or not spec:
            raise RateLimitConfigError(
                f"{_SETTING}: {part!r} is not 'operation: limit' (e.g. 'start: 30/minute'; "
                f"operations: {', '.join(OPERATIONS)})"
            )
        if op not in OPERATIONS:
            raise RateLimitConfigError(
                f"{_SETTING}: unknown operation {op!r} in {part!r}; known operations: "
                f"{', '.join(OPERATIONS)}"
            )
        if op in seen:
            raise RateLimitConfigError(f"{_SETTING}: operation {op!r} is given twice")
        seen.add(op)
        if spec.lower() == "none":
            limits.pop(op, None)
            continue
        try:
            items = tuple(parse_many(spec))
        except ValueError:
            items = ()
        if not items:
            raise RateLimitConfigError(
                f"{_SETTING}: cannot parse the limit {spec!r} of {op!r}; write N/period "
                "(second, minute, hour, day; e.g. '30/minute' or '10 per 5 seconds'), several "
                "separated by commas, or 'none'"
            )
        if any(item.amount < 1 for item in items):
            raise RateLimitConfigError(
                f"{_SETTING}: the limit {spec!r} of {op!r} allows no call at all; use a "
                "positive count (or 'none' to disable the limit)"
            )
        limits[op] = items
    return limits


def _user_key(user: str) -> str:
    # user ids are free text: quote them so a "/" cannot forge another operation's key
    return quote(user, safe="@.-_+")


class _UserLocks:
    """One lock per user, created on demand and dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    def acquire(self, user: str) -> None:
        """Block until ``user``'s lock is ours (on the event loop, by awaited pauses: the
        holder may be a start awaiting its insert on the same loop)."""
        with self._guard:
            lock, users = self._locks.get(user, (threading.Lock(), 0))
            self._locks[user] = (lock, users + 1)
        acquire(lock)

    def release(self, user: str) -> None:
        """Give ``user``'s lock back (taken by :meth:`acquire`)."""
        with self._guard:
            lock, users = self._locks[user]
            if users <= 1:
                del self._locks[user]
            else:
                self._locks[user] = (lock, users - 1)
        lock.release()


class RateLimitMiddleware(Middleware):
    """Refuses calls over the caller's limits with :class:`RateLimited`.

    Every operation is counted against ``limits[operation]`` for the calling user (admins
    included).  A start is also refused while the caller has ``max_active`` or more queued or
    running tasks; within one process the count and the task's creation happen under a
    per-user lock, so concurrent starts there cannot overshoot the cap (server replicas
    counting at the same instant can, by at most one task each).

    Storage failures refuse the call with :class:`BrokerUnavailable` (fail closed).
    ``loop_limiter`` gives the running event loop's `limits.aio` twin of the strategy over the
    same store, for calls on the loop (:mod:`taskbroker.core.loop_bridge`); without it they
    ask the store in a worker thread.
    """

    def __init__(
        self,
        limits: Mapping[str, tuple[RateLimitItem, ...]],
        *,
        storage: Storage | None = None,
        strategy: str = "moving-window",
        ledger: ActiveCounter | None = None,
        max_active: int = 0,
        lease_seconds: float = 0.0,
        loop_limiter: Callable[[], Any] | None = None,
    ) -> None:
        if strategy not in _STRATEGIES:
            raise RateLimitConfigError(
                f"TASKBROKER_RATE_LIMIT_STRATEGY: unknown strategy {strategy!r}; one of "
                f"{', '.join(_STRATEGIES)}"
            )
        self.limits = dict(limits)
        self.storage = storage if storage is not None else MemoryStorage()
        self.limiter = _STRATEGIES[strategy](self.storage)
        self.leases = TokenLeases(self.limiter, lease_seconds, loop_limiter=loop_limiter)
        self.strategy = strategy
        self.ledger = ledger
        self.max_active = max_active if ledger is not None else 0
        self._user_locks = _UserLocks()

    # --- hooks --------------------------------------------------------------------------

    def before(self, call: Call) -> None:
        """Count the call against the caller's limits; refuse it when one is exhausted."""
        user = call.user_id
        if not user:  # identity runs first and refuses these; never let one through
            raise Unauthenticated("authentication required: no identity for this call")
        if call.operation == "start" and self._is_replay(call, user):
            # a repeated start with a used idempotency key only reads the original task: it
            # is counted as a status read, and neither the start limit nor the active cap
            # may refuse it (the client must be able to learn what became of its task)
            for item in self.limits.get("status", ()):
                self._hit(item, "status", user)
            return
        for item in self.limits.get(call.operation, ()):
            self._hit(item, call.operation, user)
        if call.operation == "start" and self.max_active > 0:
            self._check_active_cap(call, user)

    def after(self, call: Call) -> None:
        """Release the per-user start lock taken by :meth:`before`."""
        user = call.extra.pop("ratelimit_lock", None)
        if user is not None:
            self._user_locks.release(user)

    # --- checks -------------------------------------------------------------------------

    def _hit(self, item: RateLimitItem, operation: str, user: str) -> None:
        ids = (operation, _user_key(user))
        try:
            allowed = self.leases.hit(item, *ids)
            if allowed:
                return
            reset = self.leases.reset_time(item, *ids)
        except Exception as exc:  # storage down or broken: refuse (fail closed)
            log.warning("rate limiter storage failed for %s: %s", operation, type(exc).__name__)
            raise BrokerUnavailable(
                f"rate limiter unavailable ({type(exc).__name__}); the call was refused, "
                "retry when the service is back"
            ) from None
        retry_after = max(0.1, math.ceil((reset - time.time()) * 10) / 10)
        # the user is not named here: the observability layer logs the refusal with the user
        # as TASKBROKER_TRACE_USER allows (id, hash or nothing)
        log.debug("rate limit exceeded: operation=%s limit=%s", operation, item)
        raise RateLimited(f"rate limit exceeded for {operation}: {item}", limit=str(item),
                          retry_after=retry_after)

    def _is_replay(self, call: Call, user: str) -> bool:
        key = call.args.get("idempotency_key")
        if self.ledger is None or not isinstance(key, str) or not 1 <= len(key) <= 200:
            return False  # validation refuses it
        try:
            check_text(key, "idempotency_key")
        except InvalidRequest:
            return False  # validation refuses it (a NUL would even break the lookup)
        try:
            return self.ledger.by_idempotency_key(user, key) is not None
        except Exception as exc:
            raise BrokerUnavailable(
                f"cannot look up the idempotency key ({type(exc).__name__}); the call was "
                "refused") from None

    def _check_active_cap(self, call: Call, user: str) -> None:
        assert self.ledger is not None
        self._user_locks.acquire(user)
        try:
            active = self.ledger.count_active(user)
        except Exception as exc:
            self._user_locks.release(user)
            raise BrokerUnavailable(
                f"cannot count active tasks ({type(exc).__name__}); the call was refused"
            ) from None
        if active >= self.max_active:
            self._user_locks.release(user)
            limit = f"max_active_per_user={self.max_active}"
            log.debug("active-task cap reached: active=%d cap=%d", active, self.max_active)
            raise RateLimited(
                f"rate limit exceeded for start: {limit} (you have {active} queued or running "
                "tasks; wait for one to finish or cancel one)",
                limit=limit, retry_after=ACTIVE_CAP_RETRY_AFTER,
            )
        call.extra["ratelimit_lock"] = user


def _redis_storage(url: str, timeout: float) -> RedisStorage:
    return RedisStorage(url, key_prefix=KEY_PREFIX, wrap_exceptions=True,
                        socket_timeout=timeout, socket_connect_timeout=timeout)


#: `limits.aio`'s names of the Redis URL schemes
_AIO_SCHEMES = {"redis": "async+redis", "rediss": "async+rediss", "unix": "async+redis+unix"}


def _loop_limiter(url: str, timeout: float, strategy: str) -> Callable[[], Any] | None:
    """The running event loop's `limits.aio` ``strategy`` over the same Redis
    (redis.asyncio), made there on first use; its connections are closed with the loop's
    other objects (:class:`~taskbroker.core.loop_bridge.LoopLocal`).  None for a URL scheme
    `limits.aio` does not name."""
    scheme, rest = url.split("://", 1)
    loop_scheme = _AIO_SCHEMES.get(scheme.lower())
    if loop_scheme is None:
        return None

    def make() -> tuple[Any, Any]:
        import redis.asyncio
        from limits.aio.storage import RedisStorage as LoopRedisStorage

        pool = redis.asyncio.ConnectionPool.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout)
        storage = LoopRedisStorage(f"{loop_scheme}://{rest}",
                                   implementation="redispy",
                                   key_prefix=KEY_PREFIX, wrap_exceptions=True,
                                   connection_pool=pool)
        return _AIO_STRATEGIES[strategy](storage), pool

    async def close(made: tuple[Any, Any]) -> None:
        await made[1].disconnect()

    per_loop = LoopLocal(make, close)
    return lambda: per_loop.get()[0]


def build_rate_limit_middleware(settings: Settings, ledger: ActiveCounter | None
                                ) -> RateLimitMiddleware:
    """The rate-limit middleware the settings describe.

    Redis storage when ``settings.redis_url`` is set (distributed mode), in-memory otherwise;
    ``ledger`` (anything with ``count_active(owner)``) enables the active-task cap.

    Raises:
        RateLimitConfigError: ``TASKBROKER_RATE_LIMITS`` or the strategy is malformed.
    """
    limits = parse_rate_limits(settings.rate_limits)
    storage: Storage = (
        _redis_storage(settings.redis_url, settings.broker_timeout)
        if settings.redis_url else MemoryStorage()
    )
    return RateLimitMiddleware(
        limits, storage=storage, strategy=settings.rate_limit_strategy,
        ledger=ledger,
        max_active=settings.max_active_per_user,
        # in memory a hit is no round trip: leases would only waste tokens
        lease_seconds=settings.rate_limit_lease_seconds if settings.redis_url else 0.0,
        loop_limiter=(_loop_limiter(settings.redis_url, settings.broker_timeout,
                                    settings.rate_limit_strategy)
                      if settings.redis_url else None),
    )
