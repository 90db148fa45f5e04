"""Bearer-token verifiers for the HTTP transport: a static token file and JWT.

Both implement the ``mcp`` SDK's ``TokenVerifier`` protocol and return an ``AccessToken``
whose ``subject`` is the user id and whose ``scopes`` are the user's roles.  Tokens are never
logged; the token file stores only SHA-256 hashes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jwt
from mcp.server.auth.provider import AccessToken

__all__ = ["JWT_PREFIX", "JWTVerifier", "StaticTokenVerifier", "add_token", "hash_token",
           "jwt_user_id", "new_token"]

#: every JWT principal's user id starts with this; token-file users may not, so the two
#: identity sources never share an id
JWT_PREFIX = "jwt:"
_NUMERIC_CLAIMS = ("exp", "nbf", "iat")

log = logging.getLogger("taskbroker.auth")


def hash_token(token: str) -> str:
    """The hex SHA-256 of ``token`` (what the token file stores)."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh random bearer token (256 bits, URL-safe)."""
    return "tb_" + secrets.token_urlsafe(32)


def _check_static_user(user: str) -> None:
    if user.startswith(JWT_PREFIX):
        raise ValueError(f"user {user!r}: token-file user ids may not start with "
                         f"{JWT_PREFIX!r} (reserved for JWT subjects)")


def jwt_user_id(issuer: str | None, subject: str) -> str:
    """The user id of a JWT principal: ``jwt:<issuer, %-quoted>:<sub>`` (``jwt::<sub>``
    without an issuer), so subjects of different issuers, and token-file users, never
    collide."""
    return f"{JWT_PREFIX}{quote(issuer or '', safe='')}:{subject}"


def add_token(path: Path, user: str, roles: list[str], token: str | None = None) -> str:
    """Add a token for ``user`` with ``roles`` to the token file at ``path``; return it.

    The file keeps ``{"tokens": [{"sha256": ..., "user": ..., "roles": [...]}]}``; the
    plain token is returned once and stored nowhere.
    """
    _check_static_user(user)
    token = token or new_token()
    data: dict[str, Any] = {"tokens": []}
    if path.exists():
        data = json.loads(path.read_text() or '{"tokens": []}')
    data.setdefault("tokens", []).append(
        {"sha256": hash_token(token), "user": user, "roles": sorted(set(roles))}
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.chmod(0o600)
    tmp.replace(path)
    return token


class StaticTokenVerifier:
    """Tokens from a JSON file of hashed tokens; the file is re-read when it changes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._mtime: float | None = None
        self._entries: dict[str, tuple[str, list[str]]] = {}
        self._load(strict=True)

    def _load(self, *, strict: bool = False) -> None:
        """(Re)read the file when its mtime changed.

        A broken file raises when ``strict`` (at construction); later it empties the table
        (fail closed: every static token is rejected) until the file is fixed.
        """
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            self._entries, self._mtime = {}, None
            return
        if mtime == self._mtime:
            return
        try:
            entries = self._parse(self.path.read_text())
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            if strict:
                raise ValueError(f"{self.path}: not a valid token file ({exc})") from None
            log.error("token file %s is invalid (%s); rejecting every static token until it "
                      "is fixed", self.path, type(exc).__name__)
            entries = {}
        self._entries, self._mtime = entries, mtime

    def _parse(self, text: str) -> dict[str, tuple[str, list[str]]]:
        data = json.loads(text or "{}")
        entries: dict[str, tuple[str, list[str]]] = {}
        for i, item in enumerate(data.get("tokens", [])):
            digest, user = item.get("sha256"), item.get("user")
            if not isinstance(digest, str) or not isinstance(user, str) or not user:
                raise ValueError(f"tokens[{i}] needs 'sha256' and 'user'")
            _check_static_user(user)
            roles = item.get("roles", [])
            if isinstance(roles, str):
                roles = roles.replace(",", " ").split()
            entries[digest.lower()] = (user, [str(r) for r in roles])
        return entries

    async def verify_token(self, token: str) -> AccessToken | None:
        """The principal of ``token``, or None when it is not in the file."""
        self._load()
        digest = hash_token(token)
        for known, (user, roles) in self._entries.items():
            if hmac.compare_digest(known, digest):
                return AccessToken(token=token, client_id=user, subject=user, scopes=roles)
        return None


class JWTVerifier:
    """JWTs signed with HS256 (shared secret) or RS256/ES256 (keys from a JWKS file).

    Checks the signature, ``exp`` (required), ``nbf``, ``iss`` and ``aud`` when configured,
    with ``leeway`` seconds of clock skew either way; ``exp``, ``nbf`` and ``iat`` must be
    numbers (a string date is refused) and ``sub`` a non-empty string.  The user id is
    :func:`jwt_user_id` of ``iss`` and ``sub``.
    ``audience`` may be a comma list: a token naming any of them (its ``aud`` a string or a
    list) is accepted.  The roles come from ``roles_claim``, which may
    be a dotted path into nested claims (``realm_access.roles``) and may hold a list or a
    space- or comma-separated string; any other shape grants no role.
    """

    def __init__(self, *, secret: str | None = None, jwks_file: Path | None = None,
                 issuer: str | None = None, audience: str | list[str] | None = None,
                 roles_claim: str = "roles", leeway: float = 30.0) -> None:
        if not secret and not jwks_file:
            raise ValueError("JWTVerifier needs a secret (HS256) or a JWKS file (RS256)")
        self.secret = secret
        self.jwks = jwt.PyJWKSet.from_json(Path(jwks_file).read_text()) if jwks_file else None
        if isinstance(audience, str):
            audience = [a.strip() for a in audience.split(",") if a.strip()] or None
        self.issuer, self.audience = issuer, audience
        self.roles_claim, self.leeway = roles_claim, leeway

    def _key(self, token: str) -> tuple[Any, list[str]]:
        header = jwt.get_unverified_header(token)
        alg = header.get("alg")
        if alg == "HS256" and self.secret:
            return self.secret, ["HS256"]
        if self.jwks is not None and alg in ("RS256", "ES256"):
            kid = header.get("kid")
            kty = "RSA" if alg == "RS256" else "EC"
            for key in self.jwks.keys:
                if kid is not None and key.key_id != kid:
                    continue
                if key.key_type == kty and key.algorithm_name in (alg, None):
                    return key.key, [alg]
        raise jwt.InvalidTokenError(f"unsupported algorithm or unknown key ({alg})")

    def roles_of(self, claims: dict[str, Any]) -> list[str]:
        """The roles ``claims`` grant (see the class docstring for the accepted shapes)."""
        value: Any = claims.get(self.roles_claim)
        if value is None and "." in self.roles_claim:
            value = claims
            for part in self.roles_claim.split("."):
                value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, str):
            return value.replace(",", " ").split()
        if isinstance(value, list | tuple):
            return [str(r) for r in value if isinstance(r, str | int) and str(r)]
        return []

    async def verify_token(self, token: str) -> AccessToken | None:
        """The principal of a valid JWT, or None (reason logged, token never)."""
        try:
            key, algorithms = self._key(token)
            claims = jwt.decode(
                token, key, algorithms=algorithms, audience=self.audience, issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "sub"], "verify_aud": self.audience is not None},
            )
            for name in _NUMERIC_CLAIMS:
                value = claims.get(name)
                if value is not None and (isinstance(value, bool)
                                          or not isinstance(value, int | float)):
                    raise jwt.InvalidTokenError(f"{name} is not a number")
            sub = claims["sub"]
            if not isinstance(sub, str) or not sub:
                raise jwt.InvalidTokenError("sub is not a non-empty string")
            iss = claims.get("iss")
            if iss is not None and not isinstance(iss, str):
                raise jwt.InvalidTokenError("iss is not a string")
        except Exception as exc:  # PyJWTError, and anything odd in a hostile token
            log.info("rejected JWT: %s", type(exc).__name__)
            return None
        user = jwt_user_id(iss, sub)
        # the SDK refuses a token once expires_at has passed, with no leeway of its own
        expires_at = int(claims["exp"] + self.leeway)
        return AccessToken(token=token, client_id=user, subject=user,
                           scopes=self.roles_of(claims), expires_at=expires_at,
                           claims={k: v for k, v in claims.items() if k in ("iss", "aud")})
