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
import time
from pathlib import Path
from typing import Any

import jwt
from mcp.server.auth.provider import AccessToken

__all__ = ["JWTVerifier", "StaticTokenVerifier", "add_token", "hash_token", "new_token"]

log = logging.getLogger("taskbroker.auth")


def hash_token(token: str) -> str:
    """The hex SHA-256 of ``token`` (what the token file stores)."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh random bearer token (256 bits, URL-safe)."""
    return "tb_" + secrets.token_urlsafe(32)


def add_token(path: Path, user: str, roles: list[str], token: str | None = None) -> str:
    """Add a token for ``user`` with ``roles`` to the token file at ``path``; return it.

    The file keeps ``{"tokens": [{"sha256": ..., "user": ..., "roles": [...]}]}``; the
    plain token is returned once and stored nowhere.
    """
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
        self._load()

    def _load(self) -> None:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            self._entries, self._mtime = {}, None
            return
        if mtime == self._mtime:
            return
        data = json.loads(self.path.read_text() or "{}")
        entries = {}
        for i, item in enumerate(data.get("tokens", [])):
            digest, user = item.get("sha256"), item.get("user")
            if not isinstance(digest, str) or not isinstance(user, str):
                raise ValueError(f"{self.path}: tokens[{i}] needs 'sha256' and 'user'")
            entries[digest.lower()] = (user, [str(r) for r in item.get("roles", [])])
        self._entries, self._mtime = entries, mtime

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

    Checks the signature, ``exp`` (required), ``iss`` and ``aud`` when configured; the user id
    is ``sub`` and the roles come from ``roles_claim`` (a list, or a space-separated string).
    """

    def __init__(self, *, secret: str | None = None, jwks_file: Path | None = None,
                 issuer: str | None = None, audience: str | None = None,
                 roles_claim: str = "roles", leeway: float = 30.0) -> None:
        if not secret and not jwks_file:
            raise ValueError("JWTVerifier needs a secret (HS256) or a JWKS file (RS256)")
        self.secret = secret
        self.jwks = jwt.PyJWKSet.from_json(Path(jwks_file).read_text()) if jwks_file else None
        self.issuer, self.audience = issuer, audience
        self.roles_claim, self.leeway = roles_claim, leeway

    def _key(self, token: str) -> tuple[Any, list[str]]:
        header = jwt.get_unverified_header(token)
        alg = header.get("alg")
        if alg == "HS256" and self.secret:
            return self.secret, ["HS256"]
        if self.jwks is not None and alg in ("RS256", "ES256"):
            kid = header.get("kid")
            for key in self.jwks.keys:
                if kid is None or key.key_id == kid:
                    return key.key, [alg]
        raise jwt.InvalidTokenError(f"unsupported algorithm or unknown key ({alg})")

    async def verify_token(self, token: str) -> AccessToken | None:
        """The principal of a valid JWT, or None (reason logged, token never)."""
        try:
            key, algorithms = self._key(token)
            claims = jwt.decode(
                token, key, algorithms=algorithms, audience=self.audience, issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "sub"], "verify_aud": self.audience is not None},
            )
        except jwt.PyJWTError as exc:
            log.info("rejected JWT: %s", type(exc).__name__)
            return None
        roles = claims.get(self.roles_claim, [])
        if isinstance(roles, str):
            roles = roles.split()
        sub = str(claims["sub"])
        return AccessToken(token=token, client_id=sub, subject=sub,
                           scopes=[str(r) for r in roles], expires_at=int(claims["exp"]),
                           claims={k: v for k, v in claims.items() if k in ("iss", "aud")})


def now() -> int:
    """Seconds since the epoch (for tests building tokens)."""
    return int(time.time())
