"""Serve only the MCP app under uvicorn, as `phasegate serve` mounts it (used until serve exists).

Usage: python http_app.py PROJECT_DIR PORT
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount, Route

from phasegate.config import open_project
from phasegate.entrypoints.mcp import create_http_app
from phasegate.orchestrator import Orchestrator


def main() -> None:
    orch = Orchestrator.open(open_project(Path(sys.argv[1])))
    app, lifespan = create_http_app(orch)

    @asynccontextmanager
    async def host_lifespan(_: Starlette) -> AsyncIterator[None]:
        async with lifespan():
            yield

    host = Starlette(routes=[Route("/mcp", app), Mount("/mcp", app)], lifespan=host_lifespan)
    uvicorn.run(host, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")


if __name__ == "__main__":
    main()
