"""Host and Origin checks in front of everything, the MCP mount included.

Checking `Host` defeats DNS rebinding against a server on 127.0.0.1; checking
`Origin` on state-changing requests stops other sites from posting to it.
Requests without an Origin header (curl, scripts) pass: they carry no ambient
cookies worth forging, and cookie-authenticated forms also need a CSRF token.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def host_name(host_header: str) -> str:
    """`example.com` from `example.com:8765`, `::1` from `[::1]:8765`."""
    host_header = host_header.strip().lower()
    if host_header.startswith("["):
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


class HostOriginGuard:
    """Refuses requests for unknown hosts (400) and cross-origin writes (403)."""

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str]) -> None:
        self.app = app
        self.allowed = {h.strip("[]").lower() for h in allowed_hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if "*" not in self.allowed and host_name(host) not in self.allowed:
            await _refuse(
                scope,
                send,
                400,
                "bad_host",
                f"host {host!r} is not served here; use http://127.0.0.1 or add it "
                "to PHASEGATE_ALLOWED_HOSTS",
            )
            return
        origin = headers.get("origin")
        method = scope.get("method", "GET")
        if origin is not None and (method not in SAFE_METHODS or scope["type"] == "websocket"):
            parts = urlsplit(origin)
            if origin == "null" or parts.netloc.lower() != host.lower():
                await _refuse(
                    scope,
                    send,
                    403,
                    "bad_origin",
                    f"requests from origin {origin!r} are refused; use the dashboard "
                    f"served at this host",
                )
                return
        await self.app(scope, receive, send)


async def _refuse(scope: Scope, send: Send, status: int, code: str, message: str) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
        return
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
