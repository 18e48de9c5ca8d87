"""Bounded bodies: declared lengths, streamed bodies, gzip bombs and encodings."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator

import pytest

from hub.errors import BadRequest, TooLarge, UnsupportedMediaType
from hub.limits import (
    SharedBudget,
    check_content_length,
    check_json_values,
    count_json_values,
    decode_body,
    gunzip_limited,
    read_limited,
)


def test_declared_length_over_the_limit_is_refused() -> None:
    check_content_length(None, 10)
    check_content_length("10", 10)
    with pytest.raises(TooLarge, match="11 bytes"):
        check_content_length("11", 10)
    for bad in ("ten", "-1", "1e9"):
        with pytest.raises(BadRequest):
            check_content_length(bad, 10)


def test_streamed_body_is_cut_off_at_the_limit() -> None:
    pulled: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(1000):
            pulled.append(i)
            yield b"x" * 100

    with pytest.raises(TooLarge):
        asyncio.run(read_limited(chunks(), 1000))
    assert len(pulled) == 11  # stopped right after the limit, not at the end of the body

    async def small() -> AsyncIterator[bytes]:
        yield b"ab"
        yield b"cd"

    assert asyncio.run(read_limited(small(), 4)) == b"abcd"


def test_gzip_bomb_is_stopped_at_the_decompressed_limit() -> None:
    bomb = gzip.compress(b"\0" * (50 * 1024 * 1024), compresslevel=9)
    assert len(bomb) < 100_000
    with pytest.raises(TooLarge, match="decompressed"):
        gunzip_limited(bomb, 1024 * 1024)


def test_gzip_within_the_limit_and_several_members_decompress() -> None:
    assert gunzip_limited(gzip.compress(b"hello"), 5) == b"hello"
    assert gunzip_limited(gzip.compress(b"he") + gzip.compress(b"llo"), 5) == b"hello"
    with pytest.raises(TooLarge):
        gunzip_limited(gzip.compress(b"he") + gzip.compress(b"llo"), 4)


@pytest.mark.parametrize("data, message", [
    (b"not gzip at all", "not valid gzip"),
    (gzip.compress(b"hello world" * 100, mtime=0)[:-12], "truncated"),
    (gzip.compress(b"ok", mtime=0) + b"trailing junk", "not valid gzip"),
], ids=["not-gzip", "truncated", "trailing-junk"])  # stable ids: xdist workers compare them
def test_broken_gzip_is_a_bad_request(data: bytes, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        gunzip_limited(data, 1_000_000)


def test_content_encodings() -> None:
    assert decode_body(b"{}", None, 10) == b"{}"
    assert decode_body(b"{}", "identity", 10) == b"{}"
    assert decode_body(gzip.compress(b"{}"), "GZIP", 10) == b"{}"
    with pytest.raises(UnsupportedMediaType, match="br"):
        decode_body(b"{}", "br", 10)


@pytest.mark.parametrize("document", [
    b"{}", b"[]", b"0", b'"a,b[c{"', b"[0,1,2]", b'{"a":[1,{"b":[]}],"c":null}', b"[[],[[]],{}]"])
def test_json_value_count_is_an_upper_bound(document: bytes) -> None:
    def values(node: object) -> int:
        if isinstance(node, list):
            return 1 + sum(values(v) for v in node)
        if isinstance(node, dict):
            return 1 + sum(values(v) for v in node.values())
        return 1

    assert count_json_values(document) >= values(json.loads(document))


def test_json_values_over_the_limit_are_refused_naming_it() -> None:
    body = b"[" + b"0," * 99 + b"0]"
    assert check_json_values(body, 101, "batch") == 101
    with pytest.raises(TooLarge, match="telemetry_json_values limit of 100"):
        check_json_values(body, 100, "batch")


def test_a_shared_budget_lets_shares_run_together_only_up_to_its_total() -> None:
    async def scenario() -> list[str]:
        budget = SharedBudget(10)
        events: list[str] = []

        async def task(name: str, share: int) -> None:
            async with budget.hold(share):
                events.append(f"+{name}")
                await asyncio.sleep(0.01)
                events.append(f"-{name}")

        await asyncio.gather(task("a", 6), task("b", 4), task("c", 50))
        assert budget.free == 10
        return events

    events = asyncio.run(scenario())
    # a and b fit together; c (over the total) takes the whole budget, alone, after them.
    assert events[:2] == ["+a", "+b"] and events[-2:] == ["+c", "-c"]


def test_a_share_shrunk_to_its_real_need_lets_others_in_at_once() -> None:
    async def scenario() -> list[str]:
        budget = SharedBudget(10)
        events: list[str] = []
        shrunk = asyncio.Event()

        async def worst_case_first() -> None:
            async with budget.hold(10) as share:  # the most it could need
                events.append("+a")
                await share.shrink(3)
                await share.shrink(5)  # never takes more than it holds
                assert (share.size, budget.free) == (3, 7)
                shrunk.set()
                await asyncio.sleep(0.01)
                events.append("-a")

        async def other() -> None:
            await shrunk.wait()
            async with budget.hold(7):
                events.append("+b")

        await asyncio.gather(worst_case_first(), other())
        assert budget.free == 10
        return events

    assert asyncio.run(scenario()) == ["+a", "+b", "-a"]
