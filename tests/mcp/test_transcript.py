"""The seed's transcript, end to end, as a real agent would drive it: stdio and HTTP, both eras.

Humans decide through the `phasegate` CLI in another process, as they would.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
import pytest

from mcp import Client
from tests.conftest import BUGGY_IMPL, GOOD_IMPL, GOOD_TESTS
from tests.mcp.conftest import CliProject, HttpServer, http_client, stdio_params

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
MODES = ["auto", "legacy"]
TESTS = [{"path": "tests/test_calc.py", "content": GOOD_TESTS}]


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


async def fails(client: Client, tool: str, **arguments: Any) -> str:
    """A refused call's text: one line that says it failed even without the error flag."""
    result = await client.call_tool(tool, arguments)
    assert result.is_error and len(result.content) == 1
    text = str(result.content[0].text)  # type: ignore[union-attr]
    assert text.startswith("Error: ") and "\n" not in text and "pydantic" not in text
    return text


async def decide_later(project: CliProject, *args: str) -> None:
    """A human deciding in the CLI a moment after the agent started waiting."""
    await anyio.sleep(1.0)
    await anyio.to_thread.run_sync(lambda: project.run(*args))


async def seed_transcript(client: Client, project: CliProject) -> None:
    session_id = project.start()
    status = await call(client, "get_session_status", session_id=session_id)
    assert status["phase"] == "generating_tests"
    assert "Calculator" in status["design"]
    assert "submit_tests" in status["allowed_actions"]

    submitted = await call(
        client,
        "submit_tests",
        session_id=session_id,
        files=TESTS,
        note="one test per behaviour in the design",
    )
    assert submitted["phase"] == "awaiting_test_review"
    assert submitted["red_run"]["status"] == "failed"

    async with anyio.create_task_group() as tg:
        tg.start_soon(decide_later, project, "approve", session_id)
        decision = await call(client, "wait_for_decision", session_id=session_id, timeout_s=30)
    assert decision["decided"] and decision["decision"] == "approve"
    assert decision["phase"] == "generating_implementation"

    status = await call(client, "get_session_status", session_id=session_id)
    assert status["tests"]["approved"]
    assert any(f["content"] == GOOD_TESTS for f in status["tests"]["files"])

    impl = await call(
        client,
        "submit_implementation",
        session_id=session_id,
        files=[{"path": "calc.py", "content": BUGGY_IMPL}],
    )
    assert impl["phase"] == "running_tests" and impl["next_action"].startswith("Call run_tests")

    failed = await call(client, "run_tests", session_id=session_id)
    assert failed["run"]["status"] == "failed" and failed["phase"] == "fixing_failures"
    assert {f["id"] for f in failed["run"]["failures"]} == {
        "tests/test_calc.py::test_add",
        "tests/test_calc.py::test_add_negative",
    }
    assert failed["fix_attempts_left"] == 4

    status = await call(client, "get_session_status", session_id=session_id)
    assert (
        status["last_run"]["run_id"] == failed["run"]["run_id"]
    )  # the current run, not the red one
    assert status["red_run"]["failures"] == [] and session_id in status["red_run"]["omitted"]
    assert "NotImplementedError" not in str(status)
    wrong = await fails(client, "submit_tests", session_id=session_id, files=TESTS)
    assert wrong.endswith("phase fixing_failures; you may call: get_session_status, fix_failures]")
    mistyped = await fails(client, "fix_failures", session_id=session_id, files="calc.py")
    assert mistyped.startswith("Error: fix_failures: 'files' must be a list of {path, content}")

    fixed = await call(
        client,
        "fix_failures",
        session_id=session_id,
        files=[{"path": "calc.py", "content": GOOD_IMPL}],
        note="+ not -",
    )
    assert fixed["phase"] == "running_tests"
    passed = await call(client, "run_tests", session_id=session_id)
    assert passed["run"]["status"] == "passed"
    assert passed["phase"] == "awaiting_final_review"
    assert passed["message"].startswith("All tests passing")

    project.run("approve", session_id)
    final = await call(client, "wait_for_decision", session_id=session_id, timeout_s=5)
    assert final["decision"] == "approve" and final["phase"] == "completed"
    assert project.json("show", session_id)["phase"] == "completed"


async def rejection(client: Client, project: CliProject) -> None:
    session_id = project.start()
    await call(client, "submit_tests", session_id=session_id, files=TESTS)
    async with anyio.create_task_group() as tg:
        tg.start_soon(decide_later, project, "reject", session_id, "-m", "also test adding zero")
        decision = await call(client, "wait_for_decision", session_id=session_id, timeout_s=30)
    assert decision["decision"] == "reject" and decision["comment"] == "also test adding zero"
    assert decision["phase"] == "generating_tests"
    status = await call(client, "get_session_status", session_id=session_id)
    assert status["feedback"][-1]["comment"] == "also test adding zero"
    assert "feedback" in status["next_action"]


Connect = Callable[[str], AbstractAsyncContextManager[Client]]


@pytest.fixture(params=["stdio", "http"])
def connect(request: pytest.FixtureRequest, cli_project: CliProject) -> Connect:
    if request.param == "stdio":
        return lambda mode: Client(
            stdio_params(cli_project),
            mode=mode,  # type: ignore[arg-type]
            read_timeout_seconds=120,
        )
    server: HttpServer = request.getfixturevalue("http_server")
    token = cli_project.agent_token()
    return lambda mode: http_client(server.url, token, mode)


@pytest.mark.parametrize("mode", MODES)
async def test_seed_transcript_end_to_end(
    connect: Connect, cli_project: CliProject, mode: str
) -> None:
    """An agent takes a session from its design to completed; humans decide with the CLI."""
    async with connect(mode) as client:
        await seed_transcript(client, cli_project)


@pytest.mark.parametrize("mode", MODES)
async def test_rejected_tests_bring_the_reviewers_comment_to_the_agent(
    connect: Connect, cli_project: CliProject, mode: str
) -> None:
    """A rejection at the test gate returns the session to the agent with the comment."""
    async with connect(mode) as client:
        await rejection(client, cli_project)
