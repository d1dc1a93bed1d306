"""The MCP server agents use: tools, resources and a prompt over stdio and streamable HTTP.

Its names are imported on first use (PEP 562): `phasegate mcp` on stdio never
loads the HTTP side.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from phasegate.entrypoints.mcp.http import create_http_app
    from phasegate.entrypoints.mcp.server import build_server

_HOMES = {
    "build_server": "phasegate.entrypoints.mcp.server",
    "create_http_app": "phasegate.entrypoints.mcp.http",
}

__all__ = ["build_server", "create_http_app"]


def __getattr__(name: str) -> Any:
    """A public name, imported from its module the first time it is asked for."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(home), name)
