"""The obedient agent: from the tool results a harness sends back, the next phasegate call.

Vendor-neutral. Each wire module turns a request into the tools it declares and the calls
made so far (with what the harness showed the model for each), asks `decide`, and turns the
answer back into its wire format. The agent reads phasegate's own results (`phase`,
`allowed_actions`, `next_action`, the refusal text) and only calls a tool that phasegate
allows now and names in its advice.
The scenario's files are scripted: tests, an implementation that also edits the approved
test (refused), a wrong implementation (fails), then the fix (passes).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.conftest import BUGGY_IMPL, GOOD_IMPL, GOOD_TESTS

TEST_FILE = "tests/test_calc.py"
CODE_FILE = "calc.py"
#: The approved test "made to pass": the edit phasegate's test lock must refuse.
TAMPERED_TESTS = GOOD_TESTS.replace("== -3", "== 1")
PROMPT = (
    "Work on the calculator task (design.md) with phasegate's tools, from start to the "
    "final human approval."
)
PHASEGATE_TOOLS = (
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
)
SUBMISSIONS = ("submit_tests", "submit_implementation", "fix_failures")
#: How a worker's harness prompt names its session (src/phasegate/agents/harness.py).
_PUSHED = re.compile(r'session_id \\"([0-9a-f-]{8,})\\"')
WAIT_FOR_SERVERS = "WaitForMcpServers"
WAITS = 30


@dataclass(frozen=True)
class Outcome:
    """One tool call the model made earlier and what the harness showed it as the result."""

    name: str
    arguments: dict[str, Any]
    text: str
    error: bool = False


@dataclass(frozen=True)
class Call:
    """Call the declared tool `name` with `arguments`."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Reply:
    """End the turn with this text."""

    text: str


#: `decide`'s signature: the server hands the vendor modules a recording one.
Decide = Callable[[Sequence[str], Sequence[Outcome]], Call | Reply]


def short_name(name: str) -> str | None:
    """phasegate's own name for a harness's tool name (`mcp__phasegate__run_tests`…)."""
    for tool in PHASEGATE_TOOLS:
        suffixed = "phasegate" in name and any(name.endswith(s + tool) for s in "_./")
        if name == tool or suffixed:
            return tool
    return None


def result_of(text: str) -> dict[str, Any] | None:
    """The first JSON object in what the harness showed (Codex and Gemini wrap it in text)."""
    decoder = json.JSONDecoder()
    for start, char in enumerate(text):
        if char != "{":
            continue
        try:
            value, _ = decoder.raw_decode(text, start)
        except ValueError:
            continue
        if isinstance(value, dict) and ("phase" in value or "session_id" in value):
            return value
        if isinstance(value, dict):  # a wrapper ({"output": "…"}): look inside its strings
            for inner in _strings(value):
                found = result_of(inner)
                if found is not None:
                    return found
    return None


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def pushed_session(body: object) -> str | None:
    """The session a push-mode worker's prompt hands the agent (`session_id "…"`), if any."""
    found = _PUSHED.search(json.dumps(body))
    return found[1] if found else None


def decide(
    declared: Sequence[str], history: Sequence[Outcome], *, pushed: str | None = None
) -> Call | Reply:
    """The next step of a well-behaved agent, given the declared tools and the calls so far.

    `pushed`: the session a `phasegate worker` adapter gave the agent, for one phase: it starts
    with that session's status and stops once its submission is accepted, as its prompt asks.
    """
    tools = {short: name for name in declared if (short := short_name(name))}
    if "submit_tests" not in tools:
        # Claude Code may ask before phasegate is connected, and offers a tool that waits
        # (about 5 s a call) for MCP servers still connecting: wait up to WAITS times.
        waiter = next((n for n in declared if n.endswith(WAIT_FOR_SERVERS)), None)
        if waiter is not None and sum(o.name == waiter for o in history) < WAITS:
            return Call(waiter, {})
        return Reply(f"I cannot see phasegate's tools; declared: {sorted(declared)}")
    done = [(s, o) for o in history if (s := short_name(o.name))]
    if not done:
        if pushed:
            return Call(tools["get_session_status"], {"session_id": pushed})
        return Call(tools["start_session"], {"task": "design.md"})
    sid = pushed or _session_id(done)
    last_tool, last = done[-1]
    result = result_of(last.text)
    if result is None or "allowed_actions" not in result:  # an error, or its echoed arguments
        return _after_error(tools, sid, last_tool, last)
    if pushed and last_tool in SUBMISSIONS:
        return Reply(f"Submitted; session {sid} is now in {result.get('phase')}. Stopping.")
    step = _next_step(sid, last_tool, result)
    if isinstance(step, Reply):
        return step
    short, arguments = step
    allowed = result.get("allowed_actions") or []
    advice = str(result.get("next_action", ""))
    if short not in allowed or short not in advice:
        return Reply(f"Stopping: phasegate allows {allowed} and advises {advice!r}, not {short}.")
    return Call(tools[short], arguments)


def _session_id(done: Sequence[tuple[str, Outcome]]) -> str:
    for _, outcome in done:
        result = result_of(outcome.text)
        if result and result.get("session_id"):
            return str(result["session_id"])
    return ""


def _after_error(tools: dict[str, str], sid: str, tool: str, last: Outcome) -> Call | Reply:
    """A refused submission that touched the locked test is resubmitted without it."""
    text = last.text.lower()
    locked = "test" in text and ("lock" in text or "approved" in text)
    if tool == "submit_implementation" and locked:
        files = [{"path": CODE_FILE, "content": BUGGY_IMPL}]
        note = "Resubmitting without the test file: approved tests are locked."
        return Call(tools[tool], {"session_id": sid, "files": files, "note": note})
    return Reply(f"Stopping: {tool} failed: {last.text[:500]}")


def _next_step(sid: str, tool: str, result: dict[str, Any]) -> tuple[str, dict[str, Any]] | Reply:
    """What phasegate's phase asks for; the scenario decides the content."""
    phase = result.get("phase")
    ref = {"session_id": sid}
    if tool == "wait_for_decision" and not result.get("decided"):
        return "wait_for_decision", {**ref, "timeout_s": 45}
    if phase == "generating_tests":
        files = [{"path": TEST_FILE, "content": GOOD_TESTS}]
        return "submit_tests", {**ref, "files": files, "note": "Two tests from the design."}
    if phase in ("awaiting_test_review", "awaiting_final_review"):
        if tool in ("submit_tests", "run_tests"):
            return "request_approval", {**ref, "message": f"Ready for review at {phase}."}
        return "wait_for_decision", {**ref, "timeout_s": 45}
    if phase == "generating_implementation":
        files = [
            {"path": CODE_FILE, "content": BUGGY_IMPL},
            {"path": TEST_FILE, "content": TAMPERED_TESTS},
        ]
        return "submit_implementation", {**ref, "files": files, "note": "add, and a test tweak."}
    if phase == "running_tests":
        return "run_tests", ref
    if phase == "fixing_failures":
        files = [{"path": CODE_FILE, "content": GOOD_IMPL}]
        return "fix_failures", {**ref, "files": files, "note": "add subtracted; it must add."}
    if phase == "completed":
        return Reply(f"Session {sid} is completed.")
    return Reply(f"Stopping: session {sid} is in {phase}, which this agent does not handle.")
