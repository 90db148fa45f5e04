"""Identity middleware: every call must carry an authenticated :class:`Principal`."""

from __future__ import annotations

from taskbroker.core.pipeline.chain import Call, Middleware
from taskbroker.core.pipeline.errors import Unauthenticated

__all__ = ["IdentityMiddleware"]


class IdentityMiddleware(Middleware):
    """Refuses calls without a principal and scopes the caller to their own tasks.

    Adapters resolve the principal (bearer token over HTTP, configuration over stdio and the
    CLI); this layer only insists that they did.
    """

    def before(self, call: Call) -> None:
        principal = call.principal
        if principal is None or not principal.user_id:
            raise Unauthenticated("authentication required: no identity for this call")
        call.scope_owner = principal.user_id
