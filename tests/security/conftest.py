"""Helpers of the security tests: signing keys, a JWKS file and JWT minting."""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

ISSUER = "https://issuer.example"
AUDIENCE = "taskbroker-tests"


@dataclass
class Keys:
    """An HS256 secret and an RS256 key pair whose public half is in ``jwks_file``."""

    secret: str
    rsa_private: rsa.RSAPrivateKey
    jwks_file: Path
    kid: str = "test-key-1"

    def hs256(self, sub: str, *, roles: Any = (), **claims: Any) -> str:
        """A valid HS256 token for ``sub`` unless ``claims`` override iss/aud/exp."""
        return jwt.encode(self._claims(sub, roles, claims), self.secret, algorithm="HS256")

    def rs256(self, sub: str, *, roles: Any = (), key: rsa.RSAPrivateKey | None = None,
              **claims: Any) -> str:
        """A valid RS256 token (signed with the JWKS key unless ``key`` is given)."""
        return jwt.encode(self._claims(sub, roles, claims), key or self.rsa_private,
                          algorithm="RS256", headers={"kid": self.kid})

    @staticmethod
    def _claims(sub: str, roles: Any, claims: dict[str, Any]) -> dict[str, Any]:
        now = int(time.time())
        base: dict[str, Any] = {"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "iat": now,
                                "exp": now + 600}
        if roles is not None:
            base["roles"] = list(roles) if not isinstance(roles, str) else roles
        base.update(claims)
        return {k: v for k, v in base.items() if v is not None}


def new_rsa_key() -> rsa.RSAPrivateKey:
    """A fresh 2048-bit RSA private key."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def write_jwks(path: Path, key: rsa.RSAPrivateKey, kid: str) -> Path:
    """Write a JWKS file holding the public half of ``key`` under ``kid``."""
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": kid, "use": "sig", "alg": "RS256"})
    path.write_text(json.dumps({"keys": [jwk]}))
    return path


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    """Signing material shared by the security tests."""
    key = new_rsa_key()
    jwks = write_jwks(tmp_path_factory.mktemp("jwks") / "jwks.json", key, "test-key-1")
    return Keys(secret=secrets.token_urlsafe(32), rsa_private=key, jwks_file=jwks)
