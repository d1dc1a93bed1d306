"""How every failed tool call reads: one line that starts `Error:`, in phasegate's words.

Codex drops the error flag and shows the model only the text, so the text
itself says the call failed. The SDK words failures as `Error executing tool
<name>: …`, and bad arguments as pydantic's multi-line text with a docs URL.

The hook is the SDK's server middleware (`MCPServer.middleware`, its public
way to "observe, refuse, or rewrite messages"), because the server object
exists before the tools are added (`phasegate mcp` answers the handshake
while the rest loads), and an extension or a subclass would have to be there
from the start. Middleware sees the raw arguments and the finished result,
not the exception, so it checks the arguments again with the SDK's own
validation (`func_metadata`, what `Tool.run` uses) to explain them. The SDK
ignores unknown arguments; a typo like `file=` would then submit the worktree
instead, so the middleware flags them and the tool refuses to run (`refuse_flagged`); so too a
list argument sent as a string that is no list (`files: "null"`, which the SDK would read as
"the worktree").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.utilities.context_injection import find_context_parameter
from mcp.server.mcpserver.utilities.func_metadata import FuncMetadata, func_metadata
from mcp.types import CallToolResult, TextContent
from pydantic import ValidationError

from phasegate.entrypoints.mcp.arguments import (
    explain_stringly,
    explain_unknown,
    explain_validation,
    stringly_lists,
    unknown_arguments,
)

INTERNAL = (
    "phasegate hit an internal error (details are in the server log); "
    "nothing was changed by this call unless get_session_status shows it"
)
#: The refusal the middleware found for the call in flight (unknown arguments), if any.
_flagged: ContextVar[str | None] = ContextVar("phasegate_mcp_flagged", default=None)


def refuse_flagged() -> None:
    """Called first by every tool: refuse a call whose arguments the middleware flagged."""
    if (refusal := _flagged.get()) is not None:
        raise ToolError(refusal)


class AgentErrors:
    """Server middleware: failed `tools/call` results become one `Error: …` line."""

    def __init__(self) -> None:
        self._tools: dict[str, tuple[FuncMetadata, Mapping[str, Any]]] = {}

    def add(self, fn: Callable[..., Any]) -> None:
        """Know a tool's arguments as the SDK does (its Context parameter is not one)."""
        context = find_context_parameter(fn)
        meta = func_metadata(fn, skip_names=[context] if context else [], structured_output=False)
        self._tools[fn.__name__] = (meta, meta.arg_model.model_json_schema(by_alias=True))

    async def __call__(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        if ctx.method != "tools/call" or not isinstance(ctx.params, Mapping):
            return await call_next(ctx)
        name = str(ctx.params.get("name", ""))
        raw = ctx.params.get("arguments")
        arguments: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        known = self._tools.get(name)
        unknown = unknown_arguments(arguments, known[1]) if known else []
        stringly = stringly_lists(arguments, known[1]) if known else []
        flag = None
        if known and unknown:
            flag = explain_unknown(name, unknown, known[1])
        elif known and stringly:
            flag = explain_stringly(name, stringly, known[1])
        token = _flagged.set(flag)
        try:
            result = await call_next(ctx)
        finally:
            _flagged.reset(token)
        if not _failed(result):
            return result
        text = self._explain(name, arguments, _text(result))
        return _with_text(result, text if text.startswith("Error: ") else f"Error: {text}")

    def _explain(self, name: str, arguments: Mapping[str, Any], text: str) -> str:
        known = self._tools.get(name)
        if known is None:
            tools = ", ".join(self._tools)
            return (
                f"there is no tool {name!r}; phasegate's tools are {tools}. None of them "
                "approves, rejects or skips a gate: only a human decides"
            )
        meta, schema = known
        try:
            meta.validate_arguments(dict(arguments))
        except ValidationError as exc:  # the SDK refused the arguments before the tool ran
            return explain_validation(name, exc, schema, unknown_arguments(arguments, schema))
        except Exception:  # a validator that crashes: the SDK reports it as a crash too
            return f"{name}: {INTERNAL}"
        prefix = f"Error executing tool {name}"
        if text == prefix:  # the SDK's words for a crash, withheld from the client
            return f"{name}: {INTERNAL}"
        text = text.removeprefix(f"{prefix}: ")
        return " ".join(text.split()) if "\n" in text else text


def _failed(result: HandlerResult) -> bool:
    if isinstance(result, CallToolResult):
        return bool(result.is_error)
    return isinstance(result, dict) and result.get("isError") is True


def _text(result: HandlerResult) -> str:
    blocks = (
        [b.model_dump() for b in result.content]
        if isinstance(result, CallToolResult)
        else list(result.get("content") or [])
        if isinstance(result, dict)
        else []
    )
    return " ".join(str(b.get("text", "")) for b in blocks if b.get("type") == "text")


def _with_text(result: HandlerResult, text: str) -> HandlerResult:
    if isinstance(result, CallToolResult):
        return result.model_copy(update={"content": [TextContent(type="text", text=text)]})
    if isinstance(result, dict):
        return {**result, "content": [{"type": "text", "text": text}]}
    return result
