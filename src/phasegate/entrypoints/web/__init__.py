"""The human side of phasegate over HTTP: dashboard, JSON API, SSE, metrics (and /mcp)."""

from phasegate.entrypoints.web.app import create_app
from phasegate.entrypoints.web.server import serve

__all__ = ["create_app", "serve"]
