"""Which harness made a tool call: its MCP client name and version, and the transport.

The harness says who it is in `initialize` (`clientInfo`: `claude-code`,
`codex-mcp-client`, `gemini-cli-mcp-client`, …). Every event a tool call
writes records it as `via`, so the audit trail says not only which agent
token acted but through which harness. The name is the client's own claim:
it tells a reviewer which tool was in the loop, it is no credential.

Over stateless HTTP each request stands alone: a `tools/call` carries no
client info of its own (before the 2026-07-28 protocol's envelope), so the
client a principal last introduced itself as in `initialize` stands in.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext

from phasegate.domain.principal import Principal
from phasegate.kernel import calling_through

_LONGEST = 100  # a client name or version longer than this is cut: it is agent-controlled text
_REMEMBERED = 1000  # principals whose last `initialize` is kept (stateless HTTP)


class RecordChannel:
    """Server middleware: tool calls run with their harness recorded for the audit trail."""

    def __init__(self, transport: str, principal: Callable[[], Principal | None]) -> None:
        self.transport = transport
        self._principal = principal
        self._introduced: OrderedDict[str, dict[str, str]] = OrderedDict()

    async def __call__(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        if ctx.method == "initialize" and isinstance(ctx.params, Mapping):
            self._remember(ctx.params.get("clientInfo"))
        if ctx.method != "tools/call":
            return await call_next(ctx)
        with calling_through(self.channel_of(ctx)):
            return await call_next(ctx)

    def channel_of(self, ctx: ServerRequestContext[Any, Any]) -> dict[str, str]:
        """The calling harness: from this connection's handshake, else the caller's last one."""
        params = ctx.session.client_params
        if params is not None:
            info = {"client": params.client_info.name, "version": params.client_info.version}
        else:
            principal = self._principal()
            info = self._introduced.get(principal.name, {}) if principal else {}
        return {
            "client": _clean(info.get("client", "")) or "unknown",
            "version": _clean(info.get("version", "")),
            "transport": self.transport,
        }

    def _remember(self, client_info: object) -> None:
        principal = self._principal()
        if principal is None or not isinstance(client_info, Mapping):
            return
        self._introduced[principal.name] = {
            "client": str(client_info.get("name", "")),
            "version": str(client_info.get("version", "")),
        }
        self._introduced.move_to_end(principal.name)
        while len(self._introduced) > _REMEMBERED:
            self._introduced.popitem(last=False)


def _clean(text: str) -> str:
    """Printable and bounded: the name reaches terminals and pages."""
    return "".join(ch for ch in text if ch.isprintable())[:_LONGEST]
