"""The MCP server agents use: tools, resources and a prompt over stdio and streamable HTTP."""

from phasegate.entrypoints.mcp.http import create_http_app
from phasegate.entrypoints.mcp.server import build_server

__all__ = ["build_server", "create_http_app"]
