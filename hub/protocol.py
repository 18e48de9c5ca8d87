"""The HTTP/1.1 parser the hub serves with, and its cap on a request's head (request line and
headers), whichever parser uvicorn has: a head over the cap is answered 400 and the connection
closed before the app sees the request.

uvicorn bounds the head only with h11 (`h11_max_incomplete_event_size`); with httptools, which
it prefers when installed and which parses faster, the head is unbounded. So the hub picks the
parser itself: httptools with the cap added, else h11 with its own. h11's is looser: it bounds
what is buffered of a head not yet complete, so a whole head that arrives in one read (up to the
64 KiB a read takes) passes; the httptools cap also counts the parsed URL and headers.
"""

from __future__ import annotations

import importlib.util
from typing import Any


def http_protocol(head_bytes: int) -> tuple[type[Any] | str, int]:
    """uvicorn.Config's `http` (a protocol class, or "h11") and `h11_max_incomplete_event_size`,
    both bounding a request's head to `head_bytes`."""
    if importlib.util.find_spec("httptools") is None:
        return "h11", head_bytes
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class HeadCappedHttpTools(HttpToolsProtocol):  # type: ignore[misc]
        """uvicorn's httptools protocol with the head counted twice: as the parser hands on the
        URL and each header, and as bytes arrive while a head is open (httptools buffers a
        header whole before handing it on, so its callbacks alone never end an endless one)."""

        head_open = True
        head_received = 0  # bytes received while the head was open
        head_parsed = 0  # bytes of URL and headers handed on by the parser

        def data_received(self, data: bytes) -> None:
            if self.head_open:
                self.head_received += len(data)
            super().data_received(data)
            # Only what is still head after parsing counts: a body in the same read does not.
            if (self.head_open and self.head_received > head_bytes
                    and not self.transport.is_closing()):
                self.send_400_response("Request head too large.")

        def on_message_begin(self) -> None:
            self.head_parsed = 0
            super().on_message_begin()

        def on_url(self, url: bytes) -> None:
            self._parsed(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._parsed(len(name) + len(value) + 4)  # ": " and CRLF
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self.head_open, self.head_received = False, 0
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self.head_open, self.head_received = True, 0

        def _parsed(self, size: int) -> None:
            self.head_parsed += size
            if self.head_parsed > head_bytes:  # httptools answers it 400 and closes
                raise ValueError(f"request head over {head_bytes} bytes")

    return HeadCappedHttpTools, head_bytes
