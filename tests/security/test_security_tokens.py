"""Token verifiers in process: the token file, JWT claims and keys, the CLI, and proof (log
capture) that no token string reaches a log record."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import anyio
import jwt
import pytest
from click.testing import CliRunner
from mcp.server.auth.provider import AccessToken

from taskbroker.cli import main as cli
from taskbroker.core.pipeline.errors import PermissionDenied, RateLimited, TaskNotFound
from taskbroker.core.pipeline.middleware.ratelimit import RateLimitMiddleware, parse_rate_limits
from taskbroker.core.pipeline.principal import Principal
from taskbroker.mcp.errors import to_tool_error
from taskbroker.mcp.run import AnyOfVerifier, build_verifier
from taskbroker.mcp.tokens import (
    JWTVerifier,
    StaticTokenVerifier,
    add_token,
    hash_token,
    jwt_user_id,
)
from tests.security.conftest import AUDIENCE, ISSUER, Keys, new_rsa_key, write_jwks


def verify(verifier: object, token: str) -> AccessToken | None:
    """Run a verifier's coroutine."""
    return anyio.run(verifier.verify_token, token)  # type: ignore[attr-defined]


def jwt_verifier(keys: Keys, **kw: object) -> JWTVerifier:
    """A verifier accepting both of ``keys``' algorithms with the test issuer/audience."""
    return JWTVerifier(secret=keys.secret, jwks_file=keys.jwks_file, issuer=ISSUER,
                       audience=kw.pop("audience", AUDIENCE), **kw)  # type: ignore[arg-type]


# --- static token file ----------------------------------------------------------------------


def test_token_file_keeps_only_hashes(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    token = add_token(path, "alice", ["ops", "admin", "ops"])
    text = path.read_text()
    assert token not in text and hash_token(token) in text
    assert json.loads(text) == {"tokens": [{"sha256": hash_token(token), "user": "alice",
                                            "roles": ["admin", "ops"]}]}
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    found = verify(StaticTokenVerifier(path), token)
    assert found.subject == "alice" and sorted(found.scopes) == ["admin", "ops"]
    assert verify(StaticTokenVerifier(path), token + "x") is None


def test_token_file_is_reread_and_a_broken_file_fails_closed(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    first = add_token(path, "alice", [])
    verifier = StaticTokenVerifier(path)
    second = add_token(path, "bob", [])
    os.utime(path, (time.time() + 5, time.time() + 5))  # a new mtime even on coarse clocks
    assert verify(verifier, second).subject == "bob"
    path.write_text("{not json")
    os.utime(path, (time.time() + 10, time.time() + 10))
    assert verify(verifier, first) is None  # rejected, not 500, not the stale table
    with pytest.raises(ValueError, match="not a valid token file"):
        StaticTokenVerifier(path)  # at startup a broken file is an error


def test_cli_token_create_prints_the_token_once(tmp_path: Path) -> None:
    path = tmp_path / "cli-tokens.json"
    result = CliRunner().invoke(cli, ["token", "create", "--user", "ci-bot", "--roles",
                                      "admin, ops", "--file", str(path)])
    assert result.exit_code == 0, result.output
    token = result.output.strip()
    assert token.startswith("tb_") and token not in path.read_text()
    found = verify(StaticTokenVerifier(path), token)
    assert found.subject == "ci-bot" and sorted(found.scopes) == ["admin", "ops"]


# --- JWT ------------------------------------------------------------------------------------


def test_jwt_claims_are_checked(keys: Keys) -> None:
    v = jwt_verifier(keys)
    now = int(time.time())
    assert verify(v, keys.hs256("u1", roles=["admin"])).scopes == ["admin"]
    assert verify(v, keys.rs256("u2")).subject == jwt_id("u2")
    rejected = {
        "expired": keys.hs256("u", exp=now - 3600),
        "not yet valid": keys.hs256("u", nbf=now + 3600),
        "wrong audience": keys.hs256("u", aud="other"),
        "missing audience": keys.hs256("u", aud=None),
        "wrong issuer": keys.rs256("u", iss="https://evil.example"),
        "no sub": keys.hs256(None),  # type: ignore[arg-type]
        "empty sub": keys.hs256(""),
        "unknown RSA key": keys.rs256("u", key=new_rsa_key()),
        "HS256 with the RSA public key as secret": jwt.encode(
            {"sub": "u", "exp": now + 60, "iss": ISSUER, "aud": AUDIENCE}, "wrong-secret" * 4,
            algorithm="HS256"),
        "garbage": "not.a.jwt",
    }
    for what, token in rejected.items():
        assert verify(v, token) is None, what


def test_jwt_audience_list_and_configured_list(keys: Keys) -> None:
    assert verify(jwt_verifier(keys), keys.hs256("u", aud=["x", AUDIENCE])).subject == jwt_id("u")
    multi = jwt_verifier(keys, audience=f"api-a, {AUDIENCE}")
    assert verify(multi, keys.hs256("u", aud="api-a")).subject == jwt_id("u")
    assert verify(multi, keys.hs256("u", aud="api-b")) is None


@pytest.mark.parametrize(
    ("claim", "claims", "roles"),
    [
        ("roles", {"roles": ["admin", "ops"]}, ["admin", "ops"]),
        ("roles", {"roles": "admin ops"}, ["admin", "ops"]),
        ("roles", {"roles": "admin,ops"}, ["admin", "ops"]),
        ("roles", {"roles": {"admin": True}}, []),  # an odd shape grants nothing
        ("roles", {"roles": 7}, []),
        ("roles", {}, []),
        ("realm_access.roles", {"realm_access": {"roles": ["admin"]}}, ["admin"]),
        ("realm_access.roles", {"realm_access": "admin"}, []),
        ("scope", {"scope": "read admin"}, ["read", "admin"]),
    ],
)
def test_roles_claim_shapes(keys: Keys, claim: str, claims: dict, roles: list[str]) -> None:
    v = jwt_verifier(keys, roles_claim=claim)
    token = jwt.encode({"sub": "u", "exp": int(time.time()) + 60, "iss": ISSUER,
                        "aud": AUDIENCE, **claims}, keys.secret, algorithm="HS256")
    found = verify(v, token)
    assert found is not None and found.scopes == roles


def test_jwks_key_is_chosen_by_kid(keys: Keys, tmp_path: Path) -> None:
    other = new_rsa_key()
    jwks = write_jwks(tmp_path / "jwks.json", other, "other-kid")
    v = JWTVerifier(jwks_file=jwks, issuer=ISSUER, audience=AUDIENCE)
    assert verify(v, keys.rs256("u")) is None  # kid test-key-1 is not in this JWKS
    token = jwt.encode({"sub": "u", "exp": int(time.time()) + 60, "iss": ISSUER,
                        "aud": AUDIENCE}, other, algorithm="RS256",
                       headers={"kid": "other-kid"})
    assert verify(v, token).subject == jwt_id("u")
    assert verify(v, keys.hs256("u")) is None  # no secret configured: HS256 refused


def test_build_verifier_combines_file_and_jwt(keys: Keys, tmp_path: Path) -> None:
    from taskbroker.core.settings import Settings

    path = tmp_path / "t.json"
    static = add_token(path, "alice", [])
    settings = Settings(redis_url="redis://127.0.0.1:1/0", token_file=path,
                        jwt_secret=keys.secret, jwt_issuer=ISSUER, jwt_audience=AUDIENCE)
    v = build_verifier(settings)
    assert isinstance(v, AnyOfVerifier)
    assert verify(v, static).subject == "alice"
    assert verify(v, keys.hs256("bob")).subject == jwt_id("bob")
    assert verify(v, "nope") is None


# --- nothing secret in logs or client errors ------------------------------------------------


def test_no_token_in_any_log_record(keys: Keys, tmp_path: Path,
                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    path = tmp_path / "tokens.json"
    static = add_token(path, "alice", [])
    now = int(time.time())
    tokens = [static, static + "x", keys.hs256("u"), keys.hs256("u", exp=now - 99),
              keys.hs256("u", aud="other"), keys.rs256("u", key=new_rsa_key()), "not.a.jwt"]
    sv, jv = StaticTokenVerifier(path), jwt_verifier(keys)
    for token in tokens:
        verify(sv, token)
        verify(jv, token)
    path.write_text("{broken")  # logs an error about the file
    os.utime(path, (time.time() + 5, time.time() + 5))
    verify(sv, static)
    # a refused call and the adapter's error mapping log too
    mw = RateLimitMiddleware(parse_rate_limits("status: 1/hour", defaults=None))
    from taskbroker.core.pipeline.chain import Call

    who = Principal("alice", frozenset())
    mw.before(Call("status", who, {}))
    with pytest.raises(RateLimited) as err:
        mw.before(Call("status", who, {}))
    to_tool_error(err.value, "get_task_status_tool")
    to_tool_error(RuntimeError("unexpected"), "get_task_status_tool")
    assert any("rejected JWT" in r.getMessage() for r in caplog.records)
    assert any("token file" in r.getMessage() for r in caplog.records)
    for record in caplog.records:
        text = record.getMessage() + (logging.Formatter().formatException(record.exc_info)
                                      if record.exc_info else "")
        for token in tokens:
            assert token not in text, f"token in log record {record.name}"


def test_client_error_texts_are_distinct_and_traceback_free() -> None:
    errors = [
        to_tool_error(PermissionDenied("permission denied: no"), "t"),
        to_tool_error(RateLimited("rate limit exceeded for start: 1 per 1 hour",
                                  limit="1 per 1 hour", retry_after=12.34), "t"),
        to_tool_error(TaskNotFound("abc"), "t"),
        to_tool_error(KeyError("internal detail"), "t"),
    ]
    texts = [str(e) for e in errors]
    assert texts[1] == ("RateLimitError: rate limit exceeded for start: 1 per 1 hour "
                        "(limit 1 per 1 hour; retry_after=12.3 s)")
    assert len({t.split(":", 1)[0] for t in texts}) == len(texts)
    assert "internal detail" not in texts[3] and texts[3].startswith("InternalError:")
    assert not any("Traceback" in t for t in texts)


def jwt_id(sub: str) -> str:
    """The user id of a JWT from the test issuer."""
    return jwt_user_id(ISSUER, sub)


def test_jwt_leeway_is_honoured_end_to_end(keys: Keys) -> None:
    v = jwt_verifier(keys)  # 30 s leeway
    now = int(time.time())
    found = verify(v, keys.hs256("u", exp=now - 10))
    assert found is not None and found.subject == jwt_id("u")
    # the SDK refuses a token once expires_at has passed: it must carry the leeway
    assert found.expires_at is not None and found.expires_at >= now + 19
    assert verify(v, keys.hs256("u", exp=now - 45)) is None
    assert verify(v, keys.hs256("u", nbf=now + 10)) is not None  # skew the other way
    assert verify(v, keys.hs256("u", nbf=now + 45)) is None


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
def test_jwt_time_claims_must_be_numbers(keys: Keys, claim: str) -> None:
    now = int(time.time())
    value = {"exp": now + 600, "nbf": now - 5, "iat": now - 5}[claim]
    assert verify(jwt_verifier(keys), keys.hs256("u", **{claim: value})) is not None
    assert verify(jwt_verifier(keys), keys.hs256("u", **{claim: str(value)})) is None
    assert verify(jwt_verifier(keys), keys.hs256("u", **{claim: True})) is None


def test_jwt_sub_must_be_a_string(keys: Keys) -> None:
    assert verify(jwt_verifier(keys), keys.hs256(42)) is None  # type: ignore[arg-type]


def test_jwt_subjects_never_share_an_id_with_token_file_users(keys: Keys, tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    static = add_token(path, "alice", [])
    v = AnyOfVerifier([StaticTokenVerifier(path), jwt_verifier(keys)])
    from_file, from_jwt = verify(v, static), verify(v, keys.hs256("alice"))
    assert from_file.subject == "alice"
    assert from_jwt.subject == jwt_id("alice") != from_file.subject
    # two issuers: two ids, and no issuer/subject split can forge another's id
    assert jwt_user_id("https://a.example", "x:y") != jwt_user_id("https://a.example:x", "y")
    with pytest.raises(ValueError, match="may not start with 'jwt:'"):
        add_token(path, "jwt:https%3A%2F%2Fissuer.example:alice", [])
