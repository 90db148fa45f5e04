"""Console sign-in: signed session cookies, CSRF tokens and one-time sign-in codes.

A user signs in by pasting a token the MCP server accepts (a static token or a JWT); the
token is verified by the same :class:`~mcp.server.auth.provider.TokenVerifier` and never
stored: the cookie holds only the principal (user id, roles), an expiry and a random nonce,
signed with the console secret (``itsdangerous``).  The cookie is ``HttpOnly``,
``SameSite=Strict`` and scoped to ``/ui``; ``Secure`` over HTTPS.

Every form carries a CSRF token derived from the session's nonce (HMAC with the secret), and
every POST must carry it; a POST whose ``Origin`` (or ``Sec-Fetch-Site``) says another site is
refused before that.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeSerializer

from taskbroker.core.pipeline.principal import Principal

__all__ = ["COOKIE", "LOGIN_COOKIE", "PREFIX", "OneTimeCodes", "Session", "SessionCodec"]

#: where the console is mounted
PREFIX = "/ui"
#: the session cookie
COOKIE = "tb_console"
#: the pre-sign-in cookie whose nonce the sign-in form echoes (login CSRF)
LOGIN_COOKIE = "tb_console_login"

#: the longest a console session lasts (a token that expires sooner ends it sooner)
MAX_SESSION_SECONDS = 8 * 3600


@dataclass(frozen=True)
class Session:
    """A signed-in console user."""

    principal: Principal
    expires_at: float
    nonce: str

    def csrf_token(self, secret: bytes) -> str:
        """The CSRF token of this session's forms."""
        return hmac.new(secret, f"csrf:{self.nonce}".encode(), hashlib.sha256).hexdigest()


class SessionCodec:
    """Encodes sessions into signed cookie values and back.

    Args:
        secret: the signing key (``TASKBROKER_CONSOLE_SECRET``; replicas must share it).
    """

    def __init__(self, secret: bytes) -> None:
        self.secret = secret
        self._serializer = URLSafeSerializer(secret, salt="taskbroker-console-session")

    def new(self, principal: Principal, *, expires_at: float | None = None) -> Session:
        """A fresh session for ``principal`` (at most :data:`MAX_SESSION_SECONDS`)."""
        limit = time.time() + MAX_SESSION_SECONDS
        return Session(principal, min(limit, expires_at or limit), secrets.token_urlsafe(16))

    def dumps(self, session: Session) -> str:
        """The cookie value."""
        return self._serializer.dumps({
            "u": session.principal.user_id, "r": sorted(session.principal.roles),
            "e": session.expires_at, "n": session.nonce})

    def loads(self, value: str | None) -> Session | None:
        """The session in a cookie value, or None (absent, forged, malformed or expired)."""
        if not value:
            return None
        try:
            data = self._serializer.loads(value)
            session = Session(Principal(str(data["u"]), frozenset(map(str, data["r"]))),
                              float(data["e"]), str(data["n"]))
        except (BadSignature, KeyError, TypeError, ValueError):
            return None
        return session if session.expires_at > time.time() else None

    def csrf_ok(self, session: Session, given: str | None) -> bool:
        """True when ``given`` is this session's CSRF token."""
        return bool(given) and hmac.compare_digest(session.csrf_token(self.secret), str(given))


class OneTimeCodes:
    """Sign-in codes that work once, within ``ttl`` seconds (embedded ``make run`` prints a
    URL carrying one).  Only their SHA-256 is kept."""

    def __init__(self, ttl: float = 900.0) -> None:
        self.ttl = ttl
        self._codes: dict[str, tuple[Principal, float]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(code: str) -> str:
        return hashlib.sha256(code.encode()).hexdigest()

    def issue(self, principal: Principal) -> str:
        """A new code for ``principal``."""
        code = secrets.token_urlsafe(24)
        with self._lock:
            now = time.time()
            self._codes = {k: v for k, v in self._codes.items() if v[1] > now}
            self._codes[self._key(code)] = (principal, now + self.ttl)
        return code

    def redeem(self, code: str | None) -> Principal | None:
        """The principal of a valid code, which is then spent; None otherwise."""
        if not code:
            return None
        with self._lock:
            found = self._codes.pop(self._key(code), None)
        if found is None or found[1] < time.time():
            return None
        return found[0]
