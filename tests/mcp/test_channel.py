"""The audit trail says through which harness an agent acted: its MCP client name and transport."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest
from mcp.client.streamable_http import streamable_http_client
from mcp.types import Implementation

from mcp import Client
from tests.conftest import GOOD_TESTS
from tests.mcp.conftest import CliProject, HttpServer, stdio_params

pytestmark = pytest.mark.anyio

HARNESS = Implementation(name="some-harness", version="9.8.7")


async def _submit_tests(client: Client, session_id: str) -> None:
    result = await client.call_tool(
        "submit_tests",
        {
            "session_id": session_id,
            "files": [{"path": "tests/test_calc.py", "content": GOOD_TESTS}],
        },
    )
    assert not result.is_error, result.content


def _agent_events(project: CliProject, session_id: str) -> list[dict[str, Any]]:
    return [e for e in project.json("log", session_id) if e["actor_kind"] == "agent"]


async def test_events_from_a_stdio_tool_call_name_the_harness(cli_project: CliProject) -> None:
    """A submission over stdio records the harness's clientInfo and `stdio` as its `via`."""
    session_id = cli_project.start()
    async with Client(stdio_params(cli_project), client_info=HARNESS) as client:
        await _submit_tests(client, session_id)
    events = _agent_events(cli_project, session_id)
    assert events, "the submission wrote no agent event"
    assert {e["action"] for e in events} >= {"submit_tests"}
    for event in events:
        assert event["payload"]["via"] == {
            "client": "some-harness",
            "version": "9.8.7",
            "transport": "stdio",
        }
    humans_and_phasegate = [e for e in cli_project.json("log", session_id) if e not in events]
    assert all("via" not in e["payload"] for e in humans_and_phasegate)


async def test_events_from_a_stateless_http_call_name_the_harness(
    cli_project: CliProject, http_server: HttpServer
) -> None:
    """Over stateless HTTP the harness's `initialize` stands for its later tool calls."""
    token = cli_project.agent_token()
    session_id = cli_project.start()
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=120)) as http,
        Client(
            streamable_http_client(http_server.url, http_client=http),
            mode="legacy",
            client_info=HARNESS,
            read_timeout_seconds=120,
        ) as client,
    ):
        await _submit_tests(client, session_id)
    events = _agent_events(cli_project, session_id)
    assert [e["payload"]["via"] for e in events if e["action"] == "submit_tests"] == [
        {"client": "some-harness", "version": "9.8.7", "transport": "http"}
    ]
