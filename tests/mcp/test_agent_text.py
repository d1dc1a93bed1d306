"""What the model reads: tidy descriptions, one-line `Error:` texts, the current run, a budget."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from mcp import Client
from phasegate.domain.principal import Principal
from phasegate.entrypoints.mcp import build_server
from phasegate.entrypoints.mcp.budget import RESULT_BUDGET, STATUS_BUDGET
from phasegate.orchestrator import Orchestrator
from tests.conftest import BUGGY_IMPL, GOOD_TESTS

pytestmark = pytest.mark.anyio
TESTS = [{"path": "tests/test_calc.py", "content": GOOD_TESTS}]
# Thirty tests that each fail with a 20,000-character message: 600 KB of failure output.
LOUD_TESTS = """\
import pytest


@pytest.mark.parametrize("n", range(30))
def test_loud(n):
    raise AssertionError("boom " * 4000)
"""


def descriptions(schema: Any) -> Iterator[str]:
    """Every `description` in a JSON schema, however deep."""
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "description" and isinstance(value, str):
                yield value
            else:
                yield from descriptions(value)
    elif isinstance(schema, list):
        for item in schema:
            yield from descriptions(item)


def error_text(result: Any) -> str:
    assert result.is_error, result.content
    (block,) = result.content
    return str(block.text)


def size(result: Any) -> int:
    return len(json.dumps(result.structured_content, separators=(",", ":"), ensure_ascii=False))


async def test_tool_and_parameter_descriptions_are_tidy_prose(client: Client) -> None:
    """No source indentation or line breaks reach the model in what tools/list returns."""
    tools = (await client.list_tools()).tools
    for tool in tools:
        texts = [tool.description or "", *descriptions(tool.input_schema)]
        texts += descriptions(tool.output_schema)
        for text in texts:
            assert text == text.strip() and "  " not in text and "\n" not in text, (tool.name, text)
        assert len(tool.description or "") > 40, tool.name


@pytest.mark.parametrize(
    ("tool", "arguments", "expected"),
    [
        (
            "submit_tests",
            {"files": "tests/test_calc.py"},
            "submit_tests: 'files' must be a list of {path, content} (got a string); "
            "nothing was done; call submit_tests(session_id, files=[...])",
        ),
        ("submit_tests", {"session_id": None}, "'session_id' is required"),
        (
            "submit_tests",
            {"note": "x" * 50_001},
            "'note' must be a string of at most 50000 characters (got 50001 characters)",
        ),
        (
            "submit_tests",
            {"files": [{"path": "tests/test_a.py"}]},
            "'files[0].content' is required",
        ),
        (
            "wait_for_decision",
            {"timeout_s": "soon"},
            "'timeout_s' must be an integer (got a string); nothing was done; "
            "call wait_for_decision(session_id, timeout_s=45)",
        ),
        (
            "fix_failures",
            {"file": [{"path": "calc.py", "content": "x = 1\n"}]},
            "fix_failures: unknown argument 'file' (did you mean 'files'?); fix_failures takes "
            "session_id, files, note, idempotency_key; nothing was done; "
            "call fix_failures(session_id, files=[...])",
        ),
        (
            "submit_tests",
            {"files": [{"path": "t.py", "content": "", "mode": "755"}]},
            "'files[0].mode' is not a field here",
        ),
    ],
)
async def test_bad_arguments_get_one_phasegate_line(
    client: Client,
    orch: Orchestrator,
    human: Principal,
    tool: str,
    arguments: dict[str, Any],
    expected: str,
) -> None:
    """Missing, mistyped, too long or unknown: `Error: tool: …; call tool(…)`, no pydantic text."""
    session = orch.start_session("design.md", human, again=True)
    arguments = {"session_id": session.id, **arguments}
    if arguments["session_id"] is None:
        del arguments["session_id"]
    text = error_text(await client.call_tool(tool, arguments))
    assert text.startswith(f"Error: {tool}: ") and "\n" not in text
    assert expected in text, text
    assert "pydantic" not in text.lower() and "[type=" not in text and "http" not in text
    after = orch.get(session.id)
    assert (after.phase, after.version) == (session.phase, session.version)  # nothing happened


async def test_a_harness_argument_is_ignored_and_a_typo_is_not(
    client: Client, orch: Orchestrator, human: Principal
) -> None:
    """Gemini CLI's `wait_for_previous` passes; `file=` instead of `files=` submits nothing."""
    session = orch.start_session("design.md", human, again=True)
    status = await client.call_tool(
        "get_session_status", {"session_id": session.id, "wait_for_previous": True}
    )
    assert not status.is_error
    typo = await client.call_tool("submit_tests", {"session_id": session.id, "file": TESTS})
    assert "did you mean 'files'?" in error_text(typo)
    assert orch.get(session.id).phase == "generating_tests"
    assert not orch.timeline(session.id)[-1]["action"].startswith("submit")


async def test_an_unauthenticated_call_says_so_in_an_error_line(orch: Orchestrator) -> None:
    """Without a principal every tool fails with an `Error:` line that says how to connect."""
    async with Client(build_server(orch, lambda: None)) as client:
        text = error_text(await client.call_tool("list_sessions", {}))
    assert text.startswith("Error: not authenticated: connect with an agent token")


async def test_status_in_fixing_failures_shows_the_latest_run_not_the_red_one(
    client: Client, orch: Orchestrator, human: Principal, agent: Principal
) -> None:
    """After a failed verify run the status carries that run; the red run is a pointer."""
    session = orch.start_session("design.md", human, again=True)
    orch.submit(session.id, "tests", agent, TESTS)
    orch.decide(session.id, "approve", human)
    orch.submit(session.id, "implementation", agent, [{"path": "calc.py", "content": BUGGY_IMPL}])
    failed, _ = orch.run_tests(session.id, agent)
    assert failed.phase == "fixing_failures"

    result = await client.call_tool("get_session_status", {"session_id": session.id})
    status = result.structured_content
    assert status is not None and status["phase"] == "fixing_failures"
    assert status["last_run"]["run_id"] == failed.context["test_results"]["run_id"]
    assert status["last_run"]["commit"] == failed.context["head"]
    assert {f["message"].splitlines()[0] for f in status["failures"]} == {
        "assert -1 == 3",
        "assert 1 == -3",
    }
    whole = f"phasegate://sessions/{session.id}"
    assert status["red_run"]["failures"] == [] and whole in status["red_run"]["omitted"]
    assert status["last_run"]["failures"] == []  # listed once, in `failures`
    assert "NotImplementedError" not in json.dumps(status)  # the red run's failures are gone
    resource = await client.read_resource(whole)
    assert "NotImplementedError" in resource.contents[0].text  # type: ignore[union-attr]


async def test_a_submit_tests_output_tail_does_not_repeat_the_tracebacks(
    client: Client, orch: Orchestrator, human: Principal
) -> None:
    """The red run's tracebacks are in `failures`; its tail keeps pytest's summary and a pointer."""
    session = orch.start_session("design.md", human, again=True)
    result = await client.call_tool("submit_tests", {"session_id": session.id, "files": TESTS})
    red = (result.structured_content or {})["red_run"]
    assert all("raise NotImplementedError" in f["traceback"] for f in red["failures"])
    tail = red["output_tail"]
    assert "raise NotImplementedError" not in tail and "def test_add" not in tail
    assert "FAILED tests/test_calc.py::test_add - NotImplementedError" in tail
    assert f"read phasegate://sessions/{session.id}" in tail


async def test_a_huge_failure_output_stays_within_the_budget_and_points_at_the_resource(
    orch: Orchestrator, human: Principal, agent: Principal
) -> None:
    """600 KB of failures: every result stays under its budget and names the resource."""
    session = orch.start_session("design.md", human, again=True)
    whole = f"phasegate://sessions/{session.id}"
    loud = [{"path": "tests/test_loud.py", "content": LOUD_TESTS}]
    async with Client(build_server(orch, lambda: agent)) as client:
        submitted = await client.call_tool(
            "submit_tests", {"session_id": session.id, "files": loud}
        )
        assert not submitted.is_error, submitted.content
        assert size(submitted) <= RESULT_BUDGET and whole in json.dumps(
            submitted.structured_content
        )
        orch.decide(session.id, "approve", human)
        code = [{"path": "calc.py", "content": BUGGY_IMPL}]
        await client.call_tool("submit_implementation", {"session_id": session.id, "files": code})
        run = await client.call_tool("run_tests", {"session_id": session.id})
        assert (run.structured_content or {})["run"]["failures_total"] == 30
        assert size(run) <= RESULT_BUDGET and whole in json.dumps(run.structured_content)
        status = await client.call_tool("get_session_status", {"session_id": session.id})
        assert (status.structured_content or {})["phase"] == "fixing_failures"
        assert size(status) <= STATUS_BUDGET and whole in json.dumps(status.structured_content)
        assert len(status.content[0].text) < 2 * STATUS_BUDGET  # type: ignore[union-attr]
        resource = await client.read_resource(whole)
        assert len(resource.contents[0].text) > 100_000  # type: ignore[union-attr]


@pytest.mark.parametrize("files", ["null", "{}", "tests/test_calc.py", "3"])
async def test_a_files_list_sent_as_a_string_is_refused_not_read_as_the_worktree(
    client: Client, orch: Orchestrator, human: Principal, files: str
) -> None:
    """`files: "null"` would decode to None, the worktree's changes: it is refused instead."""
    session = orch.start_session("design.md", human, again=True)
    worktree = orch.project.root / session.context["worktree"]
    (worktree / "scratch.py").write_text("print('not meant for review')\n")
    text = error_text(
        await client.call_tool("submit_tests", {"session_id": session.id, "files": files})
    )
    assert text.startswith("Error: submit_tests: 'files' must be a list"), text
    assert "nothing was done" in text and "\n" not in text
    after = orch.get(session.id)
    assert (after.phase, after.version) == (session.phase, session.version)


async def test_a_hostile_argument_name_is_quoted_short_and_printable(
    client: Client, orch: Orchestrator, human: Principal
) -> None:
    """An unknown argument named with escapes and 5,000 characters is shown cut and quoted."""
    session = orch.start_session("design.md", human, again=True)
    name = "\x1b[2J" + "x" * 5000
    text = error_text(
        await client.call_tool("get_session_status", {"session_id": session.id, name: 1})
    )
    assert "\x1b" not in text and len(text) < 600, text
    assert "unknown argument '?[2Jxxx" in text and "…'" in text


async def test_a_submission_of_hundreds_of_long_paths_stays_within_the_budget(
    client: Client, orch: Orchestrator, human: Principal
) -> None:
    """The result lists the first paths and says how many more, within RESULT_BUDGET."""
    session = orch.start_session("design.md", human, again=True)
    folder = "tests/" + "deep_folder_" * 12
    files = [
        {"path": f"{folder}/test_{i:03}.py", "content": "def test_x():\n    assert False\n"}
        for i in range(300)
    ]
    result = await client.call_tool("submit_tests", {"session_id": session.id, "files": files})
    assert not result.is_error, error_text(result)
    text = result.content[0].text  # type: ignore[union-attr]
    assert len(text) <= RESULT_BUDGET, len(text)
    paths = json.loads(text)["paths"]
    assert paths[-1].startswith("[280 more; read phasegate://sessions/")
    assert len(orch.get(session.id).context["tests"]["paths"]) == 300
