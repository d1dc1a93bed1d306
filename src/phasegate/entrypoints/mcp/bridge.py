"""`phasegate mcp` for a guarded server: relay MCP between stdin/stdout and `<url>/mcp`.

The bridge never opens the project's database or reads `.phasegate/`: it only
knows the server's URL and the agent's token. It relays JSON-RPC messages as
they are, through the SDK's own stdio and streamable HTTP transports, so every
tool, resource, prompt and notification (progress included) passes through
unchanged. The server authenticates the token and enforces everything else.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio
import httpx2
from mcp.shared.inbound import (
    MCP_METHOD_HEADER,
    MCP_NAME_HEADER,
    MCP_PROTOCOL_VERSION_HEADER,
    NAME_BEARING_METHODS,
    encode_header_value,
)
from mcp.shared.message import ClientMessageMetadata, SessionMessage
from mcp.types import (
    PROTOCOL_VERSION_META_KEY,
    JSONRPCMessage,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
    RequestId,
)
from mcp.types.jsonrpc import CONNECTION_CLOSED

from phasegate.errors import ConfigError, Unauthenticated

log = logging.getLogger(__name__)

TOKEN_ENV = "PHASEGATE_AGENT_TOKEN"
NO_TOKEN = (
    f"set {TOKEN_ENV} to your agent token (phasegate token add --agent NAME, "
    "run by the server's admin)"
)
# Long tool calls stream progress every few seconds; a silent server for 5 minutes is gone.
TIMEOUT = httpx2.Timeout(30, read=300)
PING = {"jsonrpc": "2.0", "id": "phasegate-bridge-check", "method": "ping"}
ACCEPT = {"Accept": "application/json, text/event-stream"}


def serve_bridge(server_url: str, token: str | None) -> None:
    """Check the server takes `token`, then relay stdio to `<server_url>/mcp` until EOF."""
    if not server_url.startswith(("http://", "https://")):
        raise ConfigError(
            f"the server URL {server_url!r} is not an http:// or https:// URL; "
            "fix [server] url in phasegate.toml or PHASEGATE_SERVER_URL"
        )
    if not token:
        raise Unauthenticated(NO_TOKEN)
    try:
        anyio.run(_bridge, server_url.rstrip("/"), token)
    except* BrokenPipeError:
        pass  # the agent closed our stdout: it is gone, and there is no one left to tell


async def _bridge(server_url: str, token: str) -> None:
    endpoint = f"{server_url}/mcp"
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(headers=auth, timeout=10) as check:
        await check_server(check, server_url, endpoint)
    transport = ExplainingTransport(httpx2.AsyncHTTPTransport(), server_url)
    async with httpx2.AsyncClient(headers=auth, timeout=TIMEOUT, transport=transport) as http:
        await relay(http, endpoint)


async def check_server(http: httpx2.AsyncClient, server_url: str, endpoint: str) -> None:
    """Fail with one clear line unless `endpoint` is an MCP endpoint that takes our token."""
    try:
        response = await http.post(endpoint, json=PING, headers=ACCEPT)
    except httpx2.InvalidURL as exc:
        raise ConfigError(f"the server URL {server_url!r} is invalid ({exc}); fix it") from None
    except httpx2.TransportError as exc:
        raise ConfigError(unreachable(server_url, exc)) from None
    if response.status_code in (401, 403):
        raise Unauthenticated(refused(server_url, _reason(response)))
    if response.status_code != 200 and "jsonrpc" not in _json(response):
        raise ConfigError(
            f"{endpoint} answered HTTP {response.status_code} ({_reason(response)}), not as "
            "phasegate's MCP endpoint; check [server] url in phasegate.toml or PHASEGATE_SERVER_URL"
        )


async def relay(http: httpx2.AsyncClient, endpoint: str) -> None:
    """Pass every message from stdin to the server and back to stdout, until stdin ends."""
    from mcp.client.streamable_http import streamable_http_client
    from mcp.server.stdio import stdio_server

    headers = RoutingHeaders()
    async with (
        stdio_server() as (agent_in, agent_out),
        streamable_http_client(endpoint, http_client=http) as (server_in, server_out),
        anyio.create_task_group() as tg,
    ):

        async def to_agent() -> None:
            async for item in server_in:
                if isinstance(item, Exception):
                    log.warning("dropped a message from the server that is not JSON-RPC")
                    continue
                headers.seen_from_server(item.message)
                await agent_out.send(SessionMessage(item.message))
            log.warning("the connection to %s closed; restart phasegate mcp", endpoint)
            tg.cancel_scope.cancel()

        tg.start_soon(to_agent)
        async for item in agent_in:
            if isinstance(item, Exception):
                log.warning("dropped a line from the agent that is not JSON-RPC")
                continue
            await server_out.send(headers.to_server(item.message))
        # The agent hung up: nobody is left to answer, and stdout's writer ends with its stream.
        tg.cancel_scope.cancel()
        agent_out.close()


class RoutingHeaders:
    """The HTTP headers the SDK's own HTTP client would send with each message.

    The server picks a protocol era by the `MCP-Protocol-Version` header, and
    stdio has no headers: a 2026-era request names its version in `_meta`; a
    handshake-era client gets the version its `initialize` negotiated.
    """

    def __init__(self) -> None:
        self.negotiated: str | None = None
        self._initialize_ids: set[RequestId] = set()

    def to_server(self, message: JSONRPCMessage) -> SessionMessage:
        headers: dict[str, str] = {}
        params: dict[str, Any] = {}
        if isinstance(message, JSONRPCRequest | JSONRPCNotification):
            params = message.params or {}
        meta = params.get("_meta")
        version = meta.get(PROTOCOL_VERSION_META_KEY) if isinstance(meta, dict) else None
        if isinstance(message, JSONRPCRequest) and message.method == "initialize":
            self._initialize_ids.add(message.id)
        elif isinstance(message, JSONRPCRequest) and isinstance(version, str):
            headers = {MCP_PROTOCOL_VERSION_HEADER: version, MCP_METHOD_HEADER: message.method}
            name = params.get(NAME_BEARING_METHODS.get(message.method, ""))
            if isinstance(name, str):
                headers[MCP_NAME_HEADER] = encode_header_value(name)
        elif self.negotiated is not None:
            headers = {MCP_PROTOCOL_VERSION_HEADER: self.negotiated}
        return SessionMessage(message, ClientMessageMetadata(headers=headers or None))

    def seen_from_server(self, message: JSONRPCMessage) -> None:
        if isinstance(message, JSONRPCResponse) and message.id in self._initialize_ids:
            self._initialize_ids.discard(message.id)
            version = message.result.get("protocolVersion")
            self.negotiated = version if isinstance(version, str) else None


class ExplainingTransport(httpx2.AsyncBaseTransport):
    """Turns "server down" and "token refused" into JSON-RPC errors that say what to do.

    The SDK answers the agent's request with the JSON-RPC error in an error
    response's body; without one it says only "Server returned an error response".
    """

    def __init__(self, inner: httpx2.AsyncBaseTransport, server_url: str) -> None:
        self.inner = inner
        self.server_url = server_url

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        try:
            response = await self.inner.handle_async_request(request)
        except httpx2.TransportError as exc:
            return _rpc_error(502, unreachable(self.server_url, exc), request)
        if response.status_code not in (401, 403):
            return response
        await response.aread()
        await response.aclose()
        return _rpc_error(
            response.status_code, refused(self.server_url, _reason(response)), request
        )

    async def aclose(self) -> None:
        await self.inner.aclose()


def unreachable(server_url: str, exc: Exception) -> str:
    return (
        f"can't reach the phasegate server at {server_url} ({str(exc) or type(exc).__name__}); "
        "start `phasegate serve` there, or check [server] url in phasegate.toml "
        "(PHASEGATE_SERVER_URL overrides it)"
    )


def refused(server_url: str, reason: str) -> str:
    return (
        f"the phasegate server at {server_url} refused the token in {TOKEN_ENV} ({reason}); "
        "use an agent token (a human token can't be used by an agent): "
        "phasegate token add --agent NAME --role tester --role coder --role runner, "
        "run by the server's admin"
    )


def _rpc_error(status: int, message: str, request: httpx2.Request) -> httpx2.Response:
    error = {"code": CONNECTION_CLOSED, "message": message}
    body = {"jsonrpc": "2.0", "id": None, "error": error}  # the SDK puts the request's id in
    return httpx2.Response(status, json=body, request=request)


def _json(response: httpx2.Response) -> dict[str, Any]:
    try:
        body = json.loads(response.content)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _reason(response: httpx2.Response) -> str:
    """The server's own words for a refusal (phasegate says `{"error": {"message": …}}`)."""
    error = _json(response).get("error")
    message = error.get("message") if isinstance(error, dict) else error
    text = str(message) if message else response.text.strip()
    return text[:300] or f"HTTP {response.status_code}"
