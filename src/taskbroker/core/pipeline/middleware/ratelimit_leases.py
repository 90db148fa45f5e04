"""Rate-limit tokens taken from the shared store a few at a time ("leases").

Counting every call in Redis costs a round trip per call (~0.1 ms of CPU, a tenth of a
status poll).  A process that sees one user call one operation often takes several tokens
in one round trip, as many as that user used in the previous lease period (at most a 50th
of the limit), and spends them locally for up to ``lease_seconds``.  Tokens a lease did not
spend expire with it: they stay counted in the store, so a lease can only make a limit
stricter, never looser, and the limit holds across every replica exactly as before.

How much stricter: at most the unspent part of one lease per replica at a time (a user's
demand sizes the next lease, so a steady caller spends about what it takes).  Near the limit
a lease of several tokens no longer fits and the process falls back to one token per call,
so the last tokens of a window are counted one by one.  Limits under
:data:`MIN_LEASED_AMOUNT` per window are never leased (one token per call).

On the event loop (:func:`~taskbroker.core.loop_bridge.run_on_loop`) the store is asked
through the `limits` library's asyncio twin of the same strategy (same keys, same Lua
scripts), awaited there; without one, in a worker thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem
from limits.strategies import RateLimiter

from taskbroker.core.loop_bridge import await_io, off_loop, on_loop

__all__ = ["MIN_LEASED_AMOUNT", "TokenLeases"]

#: limits allowing fewer calls per window are counted one call at a time
MIN_LEASED_AMOUNT = 100
#: a lease holds at most this share of a limit's window
MAX_LEASE_SHARE = 50
#: leases kept at most (least recently refilled first out); each is a few hundred bytes
MAX_LEASES = 10_000


@dataclass
class _Lease:
    granted: int
    tokens: int
    expires: float
    used: int = 1  # tokens spent from this lease, the call that took it included


def _next_size(lease: _Lease | None, now: float) -> int:
    """How many tokens to take: 1 at first; twice the last lease when it ran out before its
    end (demand outgrew it); what the last one spent when it expired with tokens left."""
    if lease is None:
        return 1
    if now < lease.expires:
        return lease.granted * 2
    return max(1, lease.used)


class TokenLeases:
    """Takes rate-limit tokens for ``limiter``'s store, several at a time when a caller is
    busy.

    Args:
        limiter: the `limits` strategy over the shared store (e.g. Redis).
        lease_seconds: how long taken tokens may be spent locally (0: one token per call).
        loop_limiter: this event loop's twin of ``limiter`` from `limits.aio` (same strategy,
            same store), for calls on the loop (None: they ask ``limiter`` in a worker
            thread).
    """

    def __init__(self, limiter: RateLimiter, lease_seconds: float = 1.0, *,
                 loop_limiter: Callable[[], Any] | None = None) -> None:
        self.limiter = limiter
        self.loop_limiter = loop_limiter
        self.lease_seconds = lease_seconds
        self._lock = threading.Lock()
        self._leases: dict[str, _Lease] = {}

    def hit(self, item: RateLimitItem, *identifiers: str) -> bool:
        """Spend one token of ``item`` for ``identifiers``; False when the limit is reached.

        Raises whatever the store raises (the caller fails closed).
        """
        if self.lease_seconds <= 0 or item.amount < MIN_LEASED_AMOUNT:
            return self._take(item, identifiers)
        key = item.key_for(*identifiers)
        now = time.monotonic()
        with self._lock:
            lease = self._leases.get(key)
            if lease is not None and lease.tokens > 0 and now < lease.expires:
                lease.tokens -= 1
                lease.used += 1
                return True
            wanted = min(_next_size(lease, now), item.amount // MAX_LEASE_SHARE)
        # the store is asked outside the lock (a round trip); two threads may both refill
        if wanted > 1 and self._take(item, identifiers, wanted):
            granted = wanted
        elif self._take(item, identifiers):
            granted = 1  # near the limit: one token at a time
        else:
            return False
        with self._lock:
            self._leases.pop(key, None)
            if len(self._leases) >= MAX_LEASES:
                self._leases.pop(next(iter(self._leases)))  # the least recently refilled
            self._leases[key] = _Lease(granted, granted - 1, now + self.lease_seconds)
        return True

    def reset_time(self, item: RateLimitItem, *identifiers: str) -> float:
        """When ``item``'s window for ``identifiers`` frees a token (epoch seconds)."""
        if on_loop() and self.loop_limiter is not None:
            stats = await_io(self.loop_limiter().get_window_stats(item, *identifiers))
        else:
            stats = off_loop(self.limiter.get_window_stats, item, *identifiers)
        return float(stats.reset_time)

    def _take(self, item: RateLimitItem, identifiers: tuple[str, ...], cost: int = 1) -> bool:
        """Take ``cost`` tokens from the store (False: the limit would be exceeded)."""
        if on_loop() and self.loop_limiter is not None:
            return bool(await_io(self.loop_limiter().hit(item, *identifiers, cost=cost)))
        return bool(off_loop(self.limiter.hit, item, *identifiers, cost=cost))
