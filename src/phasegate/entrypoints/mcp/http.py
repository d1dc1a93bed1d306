"""Streamable HTTP for agents: the SDK's stateless app behind Host/Origin checks and a token.

`phasegate serve` mounts the app at `/mcp` and enters the lifespan in its own.
Stateless means no per-connection state: every request stands alone, so a
restarted server keeps serving a client that connected before the restart,
in both protocol eras (2026-07-28 and 2025-era clients).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import anyio.to_thread
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from phasegate.domain.principal import Principal
from phasegate.entrypoints.draining import Draining
from phasegate.entrypoints.mcp.calls import ChangeFeed, current_principal
from phasegate.entrypoints.mcp.server import build_server
from phasegate.errors import Unauthenticated
from phasegate.orchestrator import Orchestrator

LOCAL_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
LOCAL_ORIGINS = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]


def local_security(
    extra_hosts: list[str] | None = None, extra_origins: list[str] | None = None
) -> TransportSecuritySettings:
    """The SDK's loopback-only Host/Origin allowlist, plus any hosts the operator names."""
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[*LOCAL_HOSTS, *(extra_hosts or [])],
        allowed_origins=[*LOCAL_ORIGINS, *(extra_origins or [])],
    )


def create_http_app(
    orch: Orchestrator,
    feed: ChangeFeed | None = None,
    *,
    security: TransportSecuritySettings | None = None,
    draining: Draining | None = None,
    authenticate: Callable[[str | None], Principal] | None = None,
) -> tuple[ASGIApp, Callable[[], AbstractAsyncContextManager[None]]]:
    """The MCP endpoint (at the mount root) and the lifespan the host app must enter.

    `authenticate` (a token to its principal) defaults to the project's tokens; a worker's
    own endpoint takes only its job tokens (scope.py).
    """
    security = security or local_security()
    mcp = build_server(orch, current_principal.get, feed, draining=draining)
    inner = mcp.streamable_http_app(
        streamable_http_path="/", stateless_http=True, transport_security=security
    )
    return AgentAuth(inner, authenticate or orch.authenticate, security), mcp.session_manager.run


class AgentAuth:
    """ASGI middleware: bad Host 421, bad Origin 403, no or unknown token 401, human token 403."""

    def __init__(
        self,
        app: ASGIApp,
        authenticate: Callable[[str | None], Principal],
        security: TransportSecuritySettings,
    ) -> None:
        self.app = app
        self.authenticate = authenticate
        self.guard = TransportSecurityMiddleware(security)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        refused = await self.guard.validate_request(request, is_post=False)
        if refused is not None:
            await refused(scope, receive, send)
            return
        token = _bearer(request.headers.get("authorization", ""))
        try:
            principal = await anyio.to_thread.run_sync(self.authenticate, token)
        except Unauthenticated as exc:
            await _error(401, exc.message, {"WWW-Authenticate": 'Bearer realm="phasegate"'})(
                scope, receive, send
            )
            return
        if principal.is_human:
            await _error(
                403,
                "this is a human token; the MCP endpoint is for agents. Create an "
                "agent token: phasegate token add --agent NAME --role coder",
            )(scope, receive, send)
            return
        reset = current_principal.set(principal)
        try:
            await self.app(_at_endpoint(scope), receive, send)
        finally:
            current_principal.reset(reset)


def _at_endpoint(scope: Scope) -> Scope:
    """Serve the one endpoint whether the host mounted us (`/mcp/`) or routed `/mcp` to us.

    A bare `Mount("/mcp")` answers `/mcp` with a 307 to `/mcp/`: one extra round trip
    per request. Hosts add `Route("/mcp", app)` too; this makes both land on our root.
    """
    path = str(scope["path"]).rstrip("/")
    return {**scope, "root_path": path, "path": path + "/"}


def _bearer(header: str) -> str | None:
    scheme, _, value = header.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps({"error": {"code": status, "message": message}})
    return Response(body, status_code=status, media_type="application/json", headers=headers)
