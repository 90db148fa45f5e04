"""Per-user, per-operation rate limits and the active-task cap (filled in by issue 5)."""

from __future__ import annotations

from taskbroker.core.middleware import Call, Middleware
from taskbroker.core.settings import Settings

__all__ = ["RateLimitMiddleware", "build_rate_limit_middleware"]


class RateLimitMiddleware(Middleware):
    """Refuses calls over the caller's limit with :class:`RateLimited` (placeholder: no-op)."""

    def before(self, call: Call) -> None:
        """Check and count the call against the caller's limits."""


def build_rate_limit_middleware(settings: Settings, ledger: object) -> RateLimitMiddleware:
    """The rate-limit middleware the settings describe."""
    return RateLimitMiddleware()
