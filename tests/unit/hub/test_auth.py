"""Device tokens, their hashes and bearer headers; the admin gate."""

from __future__ import annotations

import hashlib

import pytest

from hub.auth import AdminGate, bearer_token, hash_token, new_device_token
from hub.errors import Unauthorized


def test_new_tokens_are_long_random_and_url_safe() -> None:
    tokens = {new_device_token() for _ in range(100)}
    assert len(tokens) == 100
    assert all(len(t) >= 43 and t.replace("-", "").replace("_", "").isalnum() for t in tokens)


def test_token_hash_is_the_sha256_of_the_token() -> None:
    assert hash_token("abc") == hashlib.sha256(b"abc").hexdigest()
    assert hash_token("abc") != hash_token("abd")


@pytest.mark.parametrize("header, token", [
    ("Bearer abc", "abc"),
    ("bearer abc", "abc"),
    ("Bearer   abc  ", "abc"),
])
def test_bearer_token_is_read_from_the_header(header: str, token: str) -> None:
    assert bearer_token(header) == token


@pytest.mark.parametrize("header", [
    None, "", "Bearer", "Bearer ", "Basic abc", "abc", "Bearer a b", "Bearer ünï",
    "Bearer " + "x" * 600,
])
def test_malformed_authorization_is_unauthorized(header: str | None) -> None:
    with pytest.raises(Unauthorized):
        bearer_token(header)


def test_admin_gate_accepts_only_the_admin_token() -> None:
    gate = AdminGate("the-admin-token-0123")
    assert gate.is_admin("the-admin-token-0123")
    assert not gate.is_admin("the-admin-token-0124")
    gate.check("Bearer the-admin-token-0123")
    with pytest.raises(Unauthorized, match="admin token"):
        gate.check("Bearer someone-else")
