"""Whether `serve` can listen on its port, found out before it prints a URL or opens anything."""

from __future__ import annotations

import errno
import socket

from phasegate.entrypoints.cli.base import fail


def refuse_unusable_port(host: str, port: int) -> None:
    """One line and exit 1 if the server can't listen on (host, port), before any URL or database.

    The server itself finds out only after printing its URLs, with a raw bind error.
    """
    if port == 0:
        return  # any free port: there is always one
    try:
        problem = _listen_problem(host, port)
    except socket.gaierror as exc:
        fail(f"can't listen on {host}: {exc.strerror}; pass --host an address of this machine")
    if problem is None:
        return
    if problem.errno == errno.EADDRINUSE:
        fail(
            f"port {port} on {host} is in use (another phasegate serve?); "
            f"pick another with --port {_free_port_after(host, port)}"
        )
    if problem.errno == errno.EADDRNOTAVAIL:
        fail(f"can't listen on {host}: it is not an address of this machine; pass another --host")
    fail(f"can't listen on {host} port {port} ({problem.strerror}); pick another with --port")


def _listen_problem(host: str, port: int) -> OSError | None:
    """Why binding (host, port) fails, or None; each probe socket is closed again at once.

    It binds as asyncio's server will (every address the host resolves to,
    SO_REUSEADDR, IPv6-only sockets), so it refuses only what the server would.
    """
    resolved = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    for family, kind, proto, _, address in dict.fromkeys(resolved):
        try:
            probe = socket.socket(family, kind, proto)
        except OSError:
            continue  # a family this machine lacks: asyncio skips it too
        with probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                return exc
    return None


def _free_port_after(host: str, port: int) -> str:
    """The first free port of the next few above `port`, else 0 (any free port)."""
    for candidate in range(port + 1, min(port + 20, 65535) + 1):
        if _listen_problem(host, candidate) is None:
            return str(candidate)
    return "0 (any free port)"
