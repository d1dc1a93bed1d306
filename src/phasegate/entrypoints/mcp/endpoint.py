"""A worker's own MCP endpoint: what its agent CLIs connect to.

The harness adapters (claude, codex, gemini) give their CLI phasegate as an
MCP server over HTTP. The worker serves the MCP app itself (Host and Origin
checks included) on a free 127.0.0.1 port in a thread of its own, for as long
as it runs, and it takes only job tokens (scope.py): each CLI gets one for its
job, acting as the worker's agent on that one session, revoked when the job
ends. The worker's own token never leaves the worker. The agent CLI runs in
the sandbox, which shares the host's network: it reaches that port, and
nothing else of phasegate's.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount

from phasegate.entrypoints.mcp.http import create_http_app
from phasegate.entrypoints.mcp.scope import JobTokens
from phasegate.errors import PhasegateError
from phasegate.orchestrator import Orchestrator

_START_S = 30.0


@contextlib.contextmanager
def local_endpoint(orch: Orchestrator) -> Iterator[tuple[str, JobTokens]]:
    """Serve phasegate's MCP app on 127.0.0.1 while the block runs, for job tokens only;
    yields its URL and the tokens' registry."""
    tokens = JobTokens()
    mcp_app, lifespan = create_http_app(orch, authenticate=tokens.authenticate)

    @contextlib.asynccontextmanager
    async def running(_app: Starlette) -> AsyncIterator[None]:
        async with lifespan():
            yield

    app = Starlette(routes=[Mount("/mcp", app=mcp_app)], lifespan=running)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [listener]}, name="mcp-endpoint", daemon=True
    )
    thread.start()
    try:
        if not _started(server, thread):
            raise PhasegateError(
                "the worker's MCP endpoint for its agent CLIs did not start on 127.0.0.1; "
                "check the worker's log, or run the agents with --agent command"
            )
        yield f"http://127.0.0.1:{port}/mcp/", tokens  # the mount's own path: no redirect
    finally:
        server.should_exit = True
        thread.join(10)
        listener.close()


def _started(server: uvicorn.Server, thread: threading.Thread) -> bool:
    deadline = time.monotonic() + _START_S
    while thread.is_alive() and not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    return server.started
