"""The tool surface, in memory: names, annotations, errors an agent can act on, bounded results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mcp import Client
from phasegate.config import Project, Settings
from phasegate.domain.principal import Principal
from phasegate.entrypoints.mcp import build_server
from phasegate.orchestrator import Orchestrator
from tests.conftest import BUGGY_IMPL, GOOD_TESTS

pytestmark = pytest.mark.anyio
TOOLS = {
    "list_sessions",
    "start_session",
    "get_session_status",
    "submit_tests",
    "submit_implementation",
    "run_tests",
    "fix_failures",
    "request_approval",
    "wait_for_decision",
    "claim_next",
    "submit",
    "pre_review",
}
TESTS = [{"path": "tests/test_calc.py", "content": GOOD_TESTS}]


async def test_the_contract_tools_and_no_gate_tool(client: Client) -> None:
    """The agent sees exactly the contract's tools; none approves, rejects or skips."""
    tools = (await client.list_tools()).tools
    assert {t.name for t in tools} == TOOLS
    for tool in tools:
        a = tool.annotations
        assert a is not None and None not in (
            a.read_only_hint,
            a.destructive_hint,
            a.idempotent_hint,
            a.open_world_hint,
        ), tool.name
        assert a.destructive_hint is False and tool.output_schema is not None
    assert {t.name for t in tools if t.annotations and t.annotations.read_only_hint} == {
        "list_sessions",
        "get_session_status",
        "wait_for_decision",
    }
    result = await client.call_tool("approve", {"session_id": "abcd"})
    assert result.is_error
    assert result.content[0].text.startswith("Error: there is no tool 'approve'")  # type: ignore[union-attr]


async def test_a_wrong_phase_error_names_the_phase_and_only_the_tools_to_call(
    client: Client, orch: Orchestrator, human: Principal
) -> None:
    """Code submitted while tests are wanted: `Error:`, the phase, and one list of tools only."""
    session = orch.start_session("design.md", human, again=True)
    result = await client.call_tool(
        "submit_implementation",
        {"session_id": session.id, "files": [{"path": "calc.py", "content": BUGGY_IMPL}]},
    )
    text = result.content[0].text  # type: ignore[union-attr]
    assert result.is_error and text.startswith("Error: ") and "\n" not in text
    assert "phase generating_tests" in text
    assert text.endswith("you may call: get_session_status, submit_tests]")
    for human_only in ("pause", "cancel", "approve", "Allowed now"):
        assert human_only not in text, text
    assert orch.get(session.id).phase == "generating_tests"


async def test_unknown_session_and_locked_tests_are_tool_errors(
    client: Client, orch: Orchestrator, human: Principal
) -> None:
    """An unknown id and a change to approved tests come back as readable tool errors."""
    missing = await client.call_tool("get_session_status", {"session_id": "deadbeef"})
    text = missing.content[0].text  # type: ignore[union-attr]
    assert missing.is_error and text.startswith("Error: ") and "list_sessions" in text
    session = orch.start_session("design.md", human, again=True)
    await client.call_tool("submit_tests", {"session_id": session.id, "files": TESTS})
    orch.decide(session.id, "approve", human)
    tampered = await client.call_tool(
        "submit_implementation",
        {"session_id": session.id, "files": [{"path": "tests/test_calc.py", "content": "x = 1\n"}]},
    )
    text = tampered.content[0].text  # type: ignore[union-attr]
    assert tampered.is_error and text.startswith("Error: refused path 'tests/test_calc.py'")
    assert "you may call: get_session_status, submit_implementation]" in text


async def test_a_huge_design_is_cut_with_a_pointer_to_the_resource(
    client: Client, orch: Orchestrator, human: Principal, project_root: Path
) -> None:
    """get_session_status stays small; the whole design is one resource read away."""
    (project_root / "big.md").write_text("# Big\n" + "lorem ipsum " * 50_000)
    session = orch.start_session(str(project_root / "big.md"), human, again=True)
    result = await client.call_tool("get_session_status", {"session_id": session.id})
    assert len(json.dumps(result.structured_content)) < 40_000
    uri = f"phasegate://sessions/{session.id}/design"
    assert uri in result.structured_content["design"]  # type: ignore[index]
    whole = await client.read_resource(uri)
    assert len(whole.contents[0].text) > 500_000  # type: ignore[union-attr]


async def test_request_approval_outside_a_gate_says_where_the_session_is(
    client: Client, orch: Orchestrator, human: Principal
) -> None:
    """Asking for approval while tests are still wanted is an error naming the phase."""
    session = orch.start_session("design.md", human, again=True)
    result = await client.call_tool(
        "request_approval", {"session_id": session.id, "message": "please look"}
    )
    text = result.content[0].text  # type: ignore[union-attr]
    assert result.is_error and text.startswith("Error: ") and "phase generating_tests" in text


async def test_claim_next_leases_the_waiting_session(
    client: Client, orch: Orchestrator, human: Principal
) -> None:
    """claim_next hands the tester the session waiting for tests, with a lease."""
    session = orch.start_session("design.md", human, again=True)
    result = await client.call_tool("claim_next", {"role": "tester"})
    data = result.structured_content
    assert data is not None and data["claimed"] and data["session"]["session_id"] == session.id
    assert orch.get(session.id).lease_owner == "bot"


async def test_a_long_test_run_returns_a_handle_and_later_its_result(
    tmp_path: Path, project_root: Path, human: Principal
) -> None:
    """A run that outlasts the wait budget hands back a handle; run_tests again gets the result."""
    slow = Project(
        project_root,
        Settings(
            database_url=f"sqlite:///{tmp_path / 'slow.db'}",
            test_command="sleep 2 && python -m pytest -q -p no:cacheprovider",
        ),
    )
    orch = Orchestrator.open(slow)
    human = orch.add_principal("human", "alice")[0]
    agent = orch.add_principal("agent", "bot", ["tester", "coder", "runner"])[0]
    session = orch.start_session("design.md", human, again=True)
    orch.submit(session.id, "tests", agent, TESTS)
    orch.decide(session.id, "approve", human)
    orch.submit(session.id, "implementation", agent, [{"path": "calc.py", "content": BUGGY_IMPL}])
    async with Client(build_server(orch, lambda: agent, run_wait_s=0.5)) as client:
        first = (await client.call_tool("run_tests", {"session_id": session.id})).structured_content
        assert first is not None and first["run"]["status"] == "running" and first["run"]["handle"]
        status = await client.call_tool("get_session_status", {"session_id": session.id})
        assert status.structured_content["test_run_in_progress"]["status"] == "running"  # type: ignore[index]
        for _ in range(40):
            again = await client.call_tool("run_tests", {"session_id": session.id})
            assert again.structured_content is not None
            if again.structured_content["run"]["status"] != "running":
                break
        assert again.structured_content["run"]["status"] == "failed"
        assert again.structured_content["phase"] == "fixing_failures"
    orch.close()
