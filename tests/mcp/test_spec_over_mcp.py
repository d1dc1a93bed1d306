"""The spec workflow and the reviewer's tools over MCP, with the official SDK client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mcp import Client
from phasegate.config import Project, Settings
from phasegate.domain.principal import Principal
from phasegate.orchestrator import Orchestrator
from tests.conftest import BUGGY_IMPL, GOOD_IMPL, GOOD_TESTS, TEST_COMMAND

pytestmark = pytest.mark.anyio
TESTS = [{"path": "tests/test_calc.py", "content": GOOD_TESTS}]
DESIGN = "# adder\n\nadd(a, b) returns the sum of two integers.\n"


@pytest.fixture
def orch(project_root: Path, db_url: str) -> Iterator[Orchestrator]:
    """Workflows with the reviewer's analysis of failures and pre-review turned on."""
    options = {"review_failures": True, "pre_review": True}
    settings = Settings(database_url=db_url, test_command=TEST_COMMAND, workflows={"spec": options})
    orchestrator = Orchestrator.open(Project(project_root, settings))
    yield orchestrator
    orchestrator.close()


@pytest.fixture
def agent(orch: Orchestrator) -> Principal:
    """One agent token holding every agent role (the client acts as it)."""
    roles = ["designer", "tester", "coder", "reviewer", "runner"]
    return orch.add_principal("agent", "bot", roles)[0]


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content[0].text  # type: ignore[union-attr]
    assert result.structured_content is not None
    return result.structured_content


async def test_spec_session_end_to_end_over_mcp(
    client: Client, orch: Orchestrator, human: Principal
) -> None:
    """Designer, reviewer, tester and coder all work through MCP; only the human decides."""
    task = orch.tasks.add_request("add two numbers", name="adder")
    started = await call(client, "start_session", task=task["id"], workflow="spec")
    sid = started["session_id"]
    assert started["phase"] == "drafting_design"
    assert started["allowed_actions"] == ["get_session_status", "submit"]
    assert (
        'kind="design"' in started["next_action"] and "designs/adder.md" in started["next_action"]
    )
    assert "add two numbers" in started["design"]  # the request, until the design replaces it

    code = await client.call_tool(
        "submit",
        {
            "session_id": sid,
            "kind": "design",
            "files": [{"path": "designs/adder.md", "content": DESIGN}, *TESTS],
        },
    )
    text = code.content[0].text  # type: ignore[union-attr]
    assert code.is_error and text.startswith("Error: refused path 'tests/test_calc.py'")
    assert "\n" not in text

    done = await call(
        client,
        "submit",
        session_id=sid,
        kind="design",
        files=[{"path": "designs/adder.md", "content": DESIGN}],
        note="the sum, nothing more",
    )
    assert done["phase"] == "awaiting_design_review" and done["paths"] == ["designs/adder.md"]
    attached = await client.call_tool("pre_review", {
        "session_id": sid, "verdict": "approve", "summary": "fine", "findings": []
    })  # fmt: skip
    assert not attached.is_error  # a reviewer may attach findings at the design gate
    orch.decide(sid, "approve", human)

    status = await call(client, "get_session_status", session_id=sid)
    assert status["phase"] == "generating_tests" and status["design"] == DESIGN
    locked = await client.call_tool(
        "submit_tests",
        {"session_id": sid, "files": [{"path": "designs/adder.md", "content": "# other\n"}]},
    )
    text = locked.content[0].text  # type: ignore[union-attr]
    assert locked.is_error
    assert text.startswith("Error: refused path 'designs/adder.md': is the approved design")
    await call(client, "submit_tests", session_id=sid, files=TESTS)

    findings = [{"path": "tests/test_calc.py", "line": 4, "comment": "no zero case"}]
    await call(
        client, "pre_review", session_id=sid, verdict="reject", summary="thin", findings=findings
    )
    status = await call(client, "get_session_status", session_id=sid)
    assert status["pre_review"]["verdict"] == "reject"
    assert status["pre_review"]["findings"] == findings
    assert "pre_review" in status["allowed_actions"]
    orch.decide(sid, "approve", human)

    impl = [{"path": "calc.py", "content": BUGGY_IMPL}]
    await call(client, "submit_implementation", session_id=sid, files=impl)
    ran = await call(client, "run_tests", session_id=sid)
    assert ran["phase"] == "analyzing_failures"
    assert ran["allowed_actions"] == ["get_session_status", "submit"]
    analysis = "add() subtracts; use a + b."
    review = await call(client, "submit", session_id=sid, kind="review", note=analysis)
    assert review["phase"] == "fixing_failures" and review["commit"] == ""
    status = await call(client, "get_session_status", session_id=sid)
    assert status["reviews"][-1]["comment"] == analysis

    fix = [{"path": "calc.py", "content": GOOD_IMPL}]
    await call(client, "fix_failures", session_id=sid, files=fix)
    ran = await call(client, "run_tests", session_id=sid)
    assert ran["phase"] == "awaiting_final_review"
    assert orch.decide(sid, "approve", human).phase == "completed"
    actions = [e["action"] for e in orch.timeline(sid)]
    assert actions.count("submit_design") == 1 and "submit_review" in actions
    assert actions.count("pre_review") == 2


async def test_a_reviewer_token_cannot_decide_and_a_review_with_files_is_refused(
    client: Client, orch: Orchestrator, human: Principal, agent: Principal
) -> None:
    """No tool approves; the use case refuses the reviewer; a review carrying code is refused."""
    with pytest.raises(Exception, match="only a human may approve"):
        orch.decide(orch.start_session("design.md", human, again=True).id, "approve", agent)
    approve = await client.call_tool("approve", {"session_id": "abcd"})
    assert approve.is_error
    sid = orch.start_session("design.md", human, workflow="spec", again=True).id
    wrong = await client.call_tool(
        "submit", {"session_id": sid, "kind": "review", "note": "looks fine"}
    )
    text = wrong.content[0].text  # type: ignore[union-attr]
    assert wrong.is_error and text.startswith("Error: can't submit_review: session")
    assert "drafting_design" in text


async def test_a_huge_pre_review_stays_within_the_status_budget(
    client: Client, orch: Orchestrator, human: Principal
) -> None:
    """Fifty long findings are cut in get_session_status; a bad verdict is one `Error:` line."""
    sid = orch.start_session("design.md", human, workflow="spec", again=True).id
    await call(
        client,
        "submit",
        session_id=sid,
        kind="design",
        files=[{"path": "design.md", "content": DESIGN}],
    )
    long = [{"path": "design.md", "line": n, "comment": "y" * 2000} for n in range(1, 51)]
    await call(client, "pre_review", session_id=sid, verdict="reject", summary="z" * 20_000,
               findings=long)  # fmt: skip
    result = await client.call_tool("get_session_status", {"session_id": sid})
    assert result.structured_content is not None
    assert len(result.content[0].text) < 24_500  # type: ignore[union-attr]
    assert len(result.structured_content["pre_review"]["findings"]) == 10
    bad = await client.call_tool(
        "pre_review", {"session_id": sid, "verdict": "maybe", "summary": "", "findings": []}
    )
    text = bad.content[0].text  # type: ignore[union-attr]
    assert bad.is_error and text.startswith("Error: ") and "\n" not in text
    assert orch.get(sid).context["pre_review"]["verdict"] == "reject"
