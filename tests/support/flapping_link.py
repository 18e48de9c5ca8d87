"""A TCP forwarder on 127.0.0.1 whose link can be cut: new connections are refused and open
ones reset while it is down, which is what a flapping network looks like to the uplink."""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from collections.abc import Iterator


class FlappingLink:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.up = True
        self.cuts = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def cut(self) -> None:
        """Takes the link down and resets every connection on it."""
        with self._lock:
            self.up = False
            self.cuts += 1
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def restore(self) -> None:
        with self._lock:
            self.up = True

    @contextlib.contextmanager
    def running(self) -> Iterator[FlappingLink]:
        thread = threading.Thread(target=self._accept, name="flapping-link", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._listener.close()
            thread.join(timeout=5)

    def _accept(self) -> None:
        self._listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            with self._lock:
                if not self.up:
                    client.close()
                    continue
            threading.Thread(target=self._pipe, args=(client,), daemon=True).start()

    def _pipe(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection(self.target)
        except OSError:
            client.close()
            return
        with self._lock:
            self._open.update((client, server))
        peer = {client: server, server: client}
        with selectors.DefaultSelector() as sel, client, server:
            for sock in peer:
                sel.register(sock, selectors.EVENT_READ)
            try:
                while not self._stop.is_set():
                    for key, _ in sel.select(timeout=0.2):
                        data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                        if not data:
                            return
                        peer[key.fileobj].sendall(data)  # type: ignore[index]
            except OSError:
                return
            finally:
                with self._lock:
                    self._open.difference_update((client, server))
