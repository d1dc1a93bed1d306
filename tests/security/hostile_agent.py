"""A hostile agent driving a session over MCP, keeping everything phasegate sends back to it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

from mcp import Client
from tests.mcp.conftest import stdio_params
from tests.security.attack_code import IMPLEMENTATION_PATH, WRONG_IMPLEMENTATION
from tests.security.machine import APPROVED_TESTS, TEST_PATH, Machine

Files = list[dict[str, str]]


class HostileAgent:
    """An MCP client that records the text and structured content of every result it gets."""

    def __init__(self, client: Client, machine: Machine) -> None:
        self.client = client
        self.machine = machine
        self.received: list[str] = []

    async def attempt(self, tool: str, **arguments: Any) -> tuple[bool, dict[str, Any]]:
        """Call `tool`; return whether it succeeded and its structured content (or error text)."""
        result = await self.client.call_tool(tool, arguments)
        texts = [getattr(block, "text", "") for block in result.content]
        self.received.extend(texts)
        if result.structured_content is not None:
            self.received.append(json.dumps(result.structured_content, ensure_ascii=False))
        return not result.is_error, result.structured_content or {"error": "\n".join(texts)}

    async def call(self, tool: str, **arguments: Any) -> dict[str, Any]:
        """Call `tool`, which must succeed."""
        ok, content = await self.attempt(tool, **arguments)
        assert ok, f"{tool} failed: {content}"
        return content

    async def run_tests(self, session_id: str) -> dict[str, Any]:
        """Ask phasegate to run the tests and wait for the verdict (a long run returns a handle)."""
        with anyio.fail_after(180):
            while True:
                ok, content = await self.attempt("run_tests", session_id=session_id)
                if not ok or content.get("run", {}).get("status") != "running":
                    return content

    def everything_received(self) -> str:
        return "\n".join(self.received)


@asynccontextmanager
async def hostile_agent(machine: Machine) -> AsyncIterator[HostileAgent]:
    """An agent on the stdio MCP server (started with the machine's temporary HOME)."""
    async with Client(stdio_params(machine.project), read_timeout_seconds=180) as client:
        yield HostileAgent(client, machine)


async def session_awaiting_test_review(agent: HostileAgent) -> str:
    """A new session on the slugify task whose tests the agent wrote and a human must review."""
    started = await agent.call("start_session", task="design.md", again=True)
    session_id = str(started["session_id"])
    submitted = await agent.call(
        "submit_tests",
        session_id=session_id,
        files=[{"path": TEST_PATH, "content": APPROVED_TESTS}],
    )
    assert submitted["phase"] == "awaiting_test_review", submitted
    return session_id


async def session_with_approved_tests(agent: HostileAgent, machine: Machine) -> str:
    """A session whose tests the agent wrote and a human approved (with the CLI)."""
    session_id = await session_awaiting_test_review(agent)
    await anyio.to_thread.run_sync(lambda: machine.project.run("approve", session_id))
    return session_id


async def submit_implementation(agent: HostileAgent, session_id: str, *alternatives: Files) -> None:
    """Submit the first implementation phasegate accepts.

    If phasegate refuses every alternative, the plain wrong implementation goes in
    instead, so the tests still run and the session still has to end up failing.
    """
    plain = [{"path": IMPLEMENTATION_PATH, "content": WRONG_IMPLEMENTATION}]
    for files in (*alternatives, plain):
        ok, _ = await agent.attempt("submit_implementation", session_id=session_id, files=files)
        if ok:
            return
