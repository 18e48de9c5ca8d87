"""Bounded reading: request bodies and gzip are cut off at a limit instead of read whole, and a
body that stops arriving is given up on instead of waited for."""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from hub.errors import BadRequest, RequestTimeout, TooLarge, UnsupportedMediaType

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]

GZIP_WBITS = 16 + zlib.MAX_WBITS  # accept the gzip container only, not raw deflate


def check_content_length(header: str | None, limit: int) -> None:
    """Refuses a body whose declared length is over the limit before a byte of it is read."""
    if header is None:
        return
    try:
        declared = int(header)
    except ValueError:
        raise BadRequest(f"Content-Length {header[:40]!r} is not a number") from None
    if declared < 0:
        raise BadRequest(f"Content-Length {declared} is negative")
    if declared > limit:
        raise TooLarge(f"body of {declared} bytes exceeds the limit of {limit}")


async def read_limited(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """The whole body, counted while it streams in: a lying or absent Content-Length is caught."""
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise TooLarge(f"body exceeds the limit of {limit} bytes")
    return bytes(body)


def limited_receive(receive: Receive, limit: int, idle_s: float) -> Receive:
    """An ASGI receive that raises TooLarge once more than `limit` body bytes went through it,
    and RequestTimeout when the next piece of the body takes more than `idle_s` seconds.

    Lets a streaming parser (multipart) run against a budget without buffering the body first.
    uvicorn has no timeout for a body that trickles in; once the body is complete, a wait (for
    the client to disconnect, during a long download) is not timed.
    """
    seen, complete = 0, False

    async def receive_counted() -> Message:
        nonlocal seen, complete
        if complete:
            return await receive()
        try:
            message = await asyncio.wait_for(receive(), idle_s)
        except TimeoutError:
            raise RequestTimeout(f"no part of the body arrived for {idle_s:g} s") from None
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            complete = not message.get("more_body", False)
            if seen > limit:
                raise TooLarge(f"body exceeds the limit of {limit} bytes")
        return message

    return receive_counted


class BodyLimit:
    """ASGI middleware: every request body has a cap, chosen by method and path, and an idle
    timeout.

    A declared Content-Length over the cap is answered 413 before the app sees the request; a
    body that streams past it raises TooLarge inside the app, wherever it is being read, and one
    that stalls for `idle_s` raises RequestTimeout (408) there.
    """

    def __init__(self, app: Any, limit_for: Callable[[str, str], int], idle_s: float) -> None:
        self.app = app
        self.limit_for = limit_for
        self.idle_s = idle_s

    async def __call__(self, scope: Message, receive: Receive, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["method"], scope["path"])
        length = next((v.decode("latin-1") for k, v in scope["headers"]
                       if k == b"content-length"), None)
        try:
            check_content_length(length, limit)
        except (TooLarge, BadRequest) as refusal:
            from starlette.responses import JSONResponse

            response = JSONResponse({"detail": refusal.detail}, status_code=refusal.status,
                                    headers={"Connection": "close"})
            await response(scope, receive, send)
            return
        await self.app(scope, limited_receive(receive, limit, self.idle_s), send)


def decode_body(body: bytes, content_encoding: str | None, limit: int) -> bytes:
    """The body as sent, un-gzipped when it says so; the decompressed size is capped too."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding != "gzip":
        raise UnsupportedMediaType(f"Content-Encoding {encoding[:40]!r} is not supported "
                                   "(gzip or none)")
    return gunzip_limited(body, limit)


def gunzip_limited(data: bytes, limit: int) -> bytes:
    """Decompresses gzip (several members too) but never past `limit` bytes: no bomb expands.

    One member (what devices send) is returned as inflated, without a copy: a concurrent burst
    of bodies near the limit holds each once, not twice.
    """
    parts: list[bytes] = []
    size = 0
    rest = data
    while True:
        inflater = zlib.decompressobj(GZIP_WBITS)
        try:
            part = inflater.decompress(rest, limit + 1 - size)
        except zlib.error as exc:
            raise BadRequest(f"body is not valid gzip: {exc}") from None
        parts.append(part)
        size += len(part)
        if size > limit or inflater.unconsumed_tail:
            raise TooLarge(f"decompressed body exceeds the limit of {limit} bytes")
        if not inflater.eof:
            raise BadRequest("gzip body is truncated")
        rest = inflater.unused_data
        if not rest.strip(b"\0"):  # some writers pad the last member with zero bytes
            return parts[0] if len(parts) == 1 else b"".join(parts)


def count_json_values(body: bytes) -> int:
    """An upper bound on the containers and array items or object entries of a JSON document.

    Every value but the first of its container follows a comma, and every container opens with
    a bracket; commas and brackets inside strings only make the bound looser. One C pass
    (bytes.translate, twice as fast as three bytes.count), answered before a parser builds its
    tree: about 0.13 ms for a 500-record batch, against 4.5 ms to validate it.
    """
    return len(body) - len(body.translate(None, b",[{")) + 1


def check_json_values(body: bytes, limit: int, what: str) -> int:
    """The body's value bound; TooLarge when it is over `limit` (telemetry_json_values)."""
    values = count_json_values(body)
    if values > limit:
        raise TooLarge(f"{what} holds up to {values} JSON values: over the "
                       f"telemetry_json_values limit of {limit}")
    return values


# What parsing and validating one counted JSON value costs, worst measured (hub/settings.py):
# the unit of the telemetry budget, so that a body's own bytes are counted in it too.
VALUE_BYTES = 220


class SharedBudget:
    """A process-wide budget (of JSON values, say) that requests hold a share of while they run.

    A request over the whole budget waits until it is all free, so it cannot starve for good;
    waiting costs no worker thread (asyncio, on the server's event loop). A share taken for the
    worst case can be shrunk once the real need is known (`Share.shrink`).
    """

    def __init__(self, total: int) -> None:
        if total < 1:
            raise ValueError(f"budget {total} must be positive")
        self.total = total
        self.free = total
        self._changed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def hold(self, share: int) -> AsyncIterator[Share]:
        held = Share(self, max(0, min(share, self.total)))
        async with self._changed:
            await self._changed.wait_for(lambda: self.free >= held.size)
            self.free -= held.size
        try:
            yield held
        finally:
            await self._give_back(held.size)

    async def _give_back(self, size: int) -> None:
        async with self._changed:
            self.free += size
            self._changed.notify_all()


class Share:
    """What one holder of a SharedBudget holds."""

    def __init__(self, budget: SharedBudget, size: int) -> None:
        self.budget = budget
        self.size = size

    async def shrink(self, size: int) -> None:
        """Gives back what is held beyond `size` (never takes more)."""
        size = max(0, size)
        if size < self.size:
            freed, self.size = self.size - size, size
            await self.budget._give_back(freed)
