"""Where `phasegate serve` finds the MCP HTTP app; the server itself is the `mcp` package."""

from phasegate.entrypoints.mcp import build_server, create_http_app

__all__ = ["build_server", "create_http_app"]
