"""The ASGI app: dashboard, JSON API, SSE, metrics, health, and the MCP server at /mcp."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from pathlib import Path

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from phasegate.entrypoints.draining import Draining
from phasegate.entrypoints.mcp.http import create_http_app, local_security
from phasegate.entrypoints.web import api, login_links, pages, sse
from phasegate.entrypoints.web.auth import Authenticator, Signer, load_secret
from phasegate.entrypoints.web.errors import unexpected_error
from phasegate.entrypoints.web.guard import LOCAL_HOSTS, HostOriginGuard
from phasegate.entrypoints.web.metrics import DashboardMetrics
from phasegate.entrypoints.web.openapi import openapi_document
from phasegate.entrypoints.web.pages import Pages
from phasegate.entrypoints.web.state import WebState, web_state
from phasegate.feed import EventFeed
from phasegate.orchestrator import Orchestrator

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"

SCHEMES = ("http", "https")
McpApp = tuple[ASGIApp, Callable[[], AbstractAsyncContextManager[None]]]


def load_mcp_app(
    orch: Orchestrator, feed: EventFeed, hosts: Iterable[str] = (), draining: Draining | None = None
) -> McpApp:
    """The MCP server's HTTP app and the lifespan it needs, answering `hosts` too."""
    extra = sorted(set(hosts))
    security = local_security(
        [f"{h}:*" for h in extra] + extra,
        [
            f"{scheme}://{h}{port}"
            for h in extra
            for scheme in ("http", "https")
            for port in ("", ":*")
        ],
    )
    return create_http_app(orch, feed, security=security, draining=draining)


class McpPathAlias:
    """Serve MCP at `/mcp` itself too: clients POST there, and a 307 to `/mcp/` loses some."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/mcp":
            scope = {**scope, "path": "/mcp/", "raw_path": b"/mcp/"}
        await self.app(scope, receive, send)


class RemoteNeedsTls:
    """A guarded server answers other hosts only over TLS: tokens and passphrases cross the wire."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client") or ("", 0)
        if scope["type"] == "http" and scope.get("scheme") == "http" and not _loopback(client[0]):
            response = JSONResponse(
                {
                    "error": {
                        "code": "tls_required",
                        "message": "this guarded phasegate server takes requests from other hosts "
                        "only over TLS; use https (--tls-cert/--tls-key or a TLS proxy), or an "
                        "SSH tunnel to 127.0.0.1",
                    }
                },
                status_code=403,
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def healthz(request: Request) -> Response:
    state = web_state(request)

    def ping() -> None:
        with state.orch.db.read() as conn:
            conn.exec_driver_sql("SELECT 1")

    try:
        await anyio.to_thread.run_sync(ping)
    except Exception as exc:  # any database failure means "not healthy", not a crash
        return JSONResponse({"status": "unhealthy", "database": str(exc)[:200]}, status_code=503)
    return JSONResponse({"status": "ok", "database": state.orch.db.dialect})


async def openapi_json(request: Request) -> Response:
    state = web_state(request)
    workflows = tuple(sorted(state.orch.project.workflows))
    return JSONResponse(openapi_document(tuple(state.known_phases()), workflows))


def create_app(
    orch: Orchestrator,
    feed: EventFeed,
    *,
    allowed_hosts: Iterable[str] = (),
    secret: bytes | None = None,
    mount_mcp: bool = True,
    guarded: bool = False,
    protection: str | None = None,
    insecure_remote: bool = False,
) -> Starlette:
    """The whole HTTP server for one project; its lifespan runs the feed (and MCP's).

    A `guarded` server asks humans for their passphrase at login and with every
    decision, and refuses plain HTTP from other hosts unless `insecure_remote`.
    `protection` is the one-line verdict every page's header shows.
    """
    allowed_hosts = tuple(allowed_hosts)
    signer = Signer(secret or load_secret(orch.project.state_dir))
    metrics = DashboardMetrics(orch)
    pages_ = Pages()
    pages_.env.globals.update(guarded=guarded, protection=protection)
    state = WebState(
        orch=orch,
        feed=feed,
        signer=signer,
        auth=Authenticator(orch, signer, guarded=guarded),
        metrics=metrics,
        pages=pages_,
    )
    mcp = load_mcp_app(orch, feed, allowed_hosts, state.draining) if mount_mcp else None
    state.mcp_mounted = mcp is not None

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(feed)
            if mcp is not None:
                await stack.enter_async_context(mcp[1]())
            async with anyio.create_task_group() as tg:
                tg.start_soon(metrics.follow, feed)
                yield
                tg.cancel_scope.cancel()

    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics.endpoint, methods=["GET"]),
        Route("/api/openapi.json", openapi_json, methods=["GET"]),
        Route("/api/events", sse.events, methods=["GET"]),
        *api.routes(),
        *pages.routes(),
        *login_links.routes(),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    if mcp is not None:
        routes.append(Mount("/mcp", app=mcp[0]))
    hosts = {*LOCAL_HOSTS, *allowed_hosts}
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[
            Middleware(HostOriginGuard, allowed_hosts=hosts),
            Middleware(McpPathAlias),
            *([Middleware(RemoteNeedsTls)] if guarded and not insecure_remote else []),
        ],
        exception_handlers={Exception: unexpected_error},
    )
    app.state.web = state
    return app
