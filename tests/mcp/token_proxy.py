"""A test-only reverse proxy that adds an agent's bearer token to every request.

The conformance suite's `server` command has no way to send credentials, and
phasegate has no unauthenticated mode. So the suite talks to this proxy, which
forwards every request, Host and Origin headers untouched, to the unmodified
`phasegate serve` with `Authorization: Bearer <agent token>` added.
"""

from __future__ import annotations

import threading
import time

import httpx
import uvicorn
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "authorization"}


class TokenProxy:
    def __init__(self, upstream: str, token: str) -> None:
        self.upstream, self.token = upstream.rstrip("/"), token
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(60, read=300))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP]
        headers.append(("authorization", f"Bearer {self.token}"))
        url = (
            self.upstream
            + request.url.path
            + (f"?{request.url.query}" if request.url.query else "")
        )
        upstream = await self.client.send(
            self.client.build_request(
                request.method, url, headers=headers, content=await request.body()
            ),
            stream=True,
        )
        out = [(k, v) for k, v in upstream.headers.items() if k.lower() not in HOP]
        response = StreamingResponse(
            upstream.aiter_raw(),
            status_code=upstream.status_code,
            headers=dict(out),
            background=BackgroundTask(upstream.aclose),
        )
        await response(scope, receive, send)


def serve_in_thread(upstream: str, token: str, port: int) -> uvicorn.Server:
    server = uvicorn.Server(
        uvicorn.Config(
            TokenProxy(upstream, token), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    return server
