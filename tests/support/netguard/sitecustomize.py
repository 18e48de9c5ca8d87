"""Loaded by every Python process of a test run: records and refuses any network connection.

The tests put this folder on PYTHONPATH and read the log named by EDGELOOP_NETGUARD_LOG.
Unix sockets and loopback (a local server such as Prefect's ephemeral API) are allowed.
"""

import os
import socket

_LOG = os.environ.get("EDGELOOP_NETGUARD_LOG")


def _record(what: str) -> None:
    if _LOG:
        with open(_LOG, "a") as log:
            log.write(f"{os.getpid()} {what}\n")


_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex
_getaddrinfo = socket.getaddrinfo


_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _outside(sock, address) -> bool:
    return sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in _LOOPBACK


def _guarded_connect(self, address):
    if _outside(self, address):
        _record(f"connect {address!r}")
        raise OSError(f"network disabled by test: connect {address!r}")
    return _connect(self, address)


def _guarded_connect_ex(self, address):
    if _outside(self, address):
        _record(f"connect_ex {address!r}")
        return 111
    return _connect_ex(self, address)


def _guarded_getaddrinfo(host, *args, **kwargs):
    if host not in (None, "localhost", "127.0.0.1", "::1"):
        _record(f"getaddrinfo {host!r}")
        raise socket.gaierror(f"network disabled by test: {host!r}")
    return _getaddrinfo(host, *args, **kwargs)


socket.socket.connect = _guarded_connect
socket.socket.connect_ex = _guarded_connect_ex
socket.getaddrinfo = _guarded_getaddrinfo
