"""Bearer tokens: device tokens are random and stored only as their sha256; one admin token."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from hub.errors import Unauthorized

TOKEN_BYTES = 32  # 256 bits of entropy: a plain sha256 (no salt, no stretching) is enough
MAX_TOKEN_CHARS = 512


def new_device_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    """What the registry stores and looks tokens up by; the token itself is never stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header; Unauthorized when absent or bad."""
    if not authorization:
        raise Unauthorized("missing Authorization: Bearer <token> header")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("the Authorization header must be 'Bearer <token>'")
    if len(token) > MAX_TOKEN_CHARS or not token.isascii() or any(c.isspace() for c in token):
        raise Unauthorized("malformed bearer token")
    return token


class AdminGate:
    """Checks the admin token in constant time (it is compared, not looked up)."""

    def __init__(self, admin_token: str) -> None:
        self._digest = hashlib.sha256(admin_token.encode()).digest()

    def is_admin(self, token: str) -> bool:
        return hmac.compare_digest(hashlib.sha256(token.encode()).digest(), self._digest)

    def check(self, authorization: str | None) -> None:
        if not self.is_admin(bearer_token(authorization)):
            raise Unauthorized("this endpoint needs the admin token")
