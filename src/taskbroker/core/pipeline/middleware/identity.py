"""Identity middleware: every call must carry an authenticated :class:`Principal`."""

from __future__ import annotations

import re

from taskbroker.core.pipeline.chain import Call, Middleware
from taskbroker.core.pipeline.errors import Unauthenticated

__all__ = ["MAX_USER_ID", "IdentityMiddleware"]

#: the longest user id a task can be owned by (the ledger's owner column)
MAX_USER_ID = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class IdentityMiddleware(Middleware):
    """Refuses calls without a usable principal and scopes the caller to their own tasks.

    A user id longer than :data:`MAX_USER_ID` or with control characters (a JWT ``sub`` can be
    anything) is refused here, as an authentication failure, before it reaches the ledger.

    Adapters resolve the principal (bearer token over HTTP, configuration over stdio and the
    CLI); this layer only insists that they did.
    """

    def before(self, call: Call) -> None:
        principal = call.principal
        if principal is None or not principal.user_id:
            raise Unauthenticated("authentication required: no identity for this call")
        user = principal.user_id
        if len(user) > MAX_USER_ID or _CONTROL.search(user):
            # the identity is not echoed back: it came from a token, not from the request
            raise Unauthenticated(
                f"authentication refused: a user id must be 1..{MAX_USER_ID} printable "
                "characters (this token's is not)")
        call.scope_owner = user
