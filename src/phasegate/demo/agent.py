"""The scripted demo agent: drives a session through the MCP server over HTTP.

It is not an AI. It plays back prepared files, but through exactly the tools
a real agent uses, with the same token rules, so the demo shows the real path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx2
from mcp.client.streamable_http import streamable_http_client

from mcp import Client
from phasegate.demo.project import EXAMPLE, agent_file

Say = Callable[[str], None]
Gate = Callable[[str, str], Awaitable[None]]  # (session id, gate phase) → a human decides

TEST_FILE = "tests/test_ttl_cache.py"
#: The `spec` demo's task: a short request a scripted designer turns into the design.
REQUEST_TASK = "ttl-cache"
REQUEST = (
    "A TTLCache for slow lookups: at most `capacity` entries, least recently used evicted "
    "first, and entries expire `ttl` seconds after they were written."
)
ANALYSIS = (
    "Every failure is at the expiry boundary: `get` treats an entry written at t as alive at "
    "exactly t + ttl because the check is `now > deadline`. The design says an entry is "
    "expired AT t + ttl: compare with `>=` (in get, __contains__, __len__ and purge)."
)


class ToolFailed(RuntimeError):
    """A tool answered with an error the script did not expect."""


class ScriptedAgent:
    def __init__(self, client: Client, say: Say) -> None:
        self.client = client
        self.say = say

    async def call(self, tool: str, **arguments: Any) -> dict[str, Any]:
        """Call a tool and return its structured result; raise if it failed."""

        async def progress(progress: float, total: float | None, message: str | None) -> None:
            if message:
                self.say(f"      … {message}")

        result = await self.client.call_tool(tool, arguments, progress_callback=progress)
        if result.is_error:
            text = " ".join(getattr(c, "text", "") for c in result.content)
            raise ToolFailed(f"{tool} failed: {text}")
        assert isinstance(result.structured_content, dict)
        return result.structured_content

    async def drive(self, wait_for_human: Gate, *, workflow: str = "tdd") -> str:
        """Take the example task to the final gate; return the session id.

        With `spec`, a designer first drafts the design from a request, a reviewer pre-reviews
        the tests and analyses the failed run for the coder.
        """
        spec = workflow == "spec"
        task = REQUEST_TASK if spec else "design.md"
        started = await self.call("start_session", task=task, workflow=workflow)
        sid = started["session_id"]
        self.say(f"agent: started session {sid[:8]} ({workflow}); phase {started['phase']}")
        if spec:
            await self._design(sid, wait_for_human)
        status = await self.call("get_session_status", session_id=sid)
        self.say(f"agent: read the design ({len(status['design'])} characters); writing tests")

        submitted = await self.call(
            "submit_tests",
            session_id=sid,
            files=[{"path": TEST_FILE, "content": agent_file("test_ttl_cache.py")}],
            note="16 tests from design.md: validation, LRU order, expiry exactly at ttl, purge.",
        )
        red = submitted["red_run"]
        self.say(f"phasegate: red run {red['status']}: {red['reason']}")
        await self.call(
            "request_approval",
            session_id=sid,
            message="Tests cover every rule in the design; all fail on the stub as expected.",
        )
        if spec:
            await self._pre_review(sid)
        await self._await_gate(sid, "awaiting_test_review", wait_for_human)
        self.say("agent: the tests are approved (and locked); the coder is implementing…")
        await self.call(
            "submit_implementation",
            session_id=sid,
            files=[{"path": "ttl_cache.py", "content": agent_file("ttl_cache_buggy.py")}],
            note="OrderedDict for LRU order; entries store their write time.",
        )
        failed = await self._run_tests(sid)
        ids = ", ".join(f["id"].split("::")[-1] for f in failed["run"]["failures"])
        self.say(f"agent: {failed['run']['failures_total']} failing ({ids}); reading the failures")
        if failed["phase"] == "analyzing_failures":
            self.say("reviewer: analysing the failures for the coder (text, no code)")
            await self.call("submit", session_id=sid, kind="review", note=ANALYSIS)
            status = await self.call("get_session_status", session_id=sid)
            self.say(f"coder: read the reviewer's analysis ({len(status['reviews'])} in context)")

        await self.call(
            "fix_failures",
            session_id=sid,
            files=[{"path": "ttl_cache.py", "content": agent_file("ttl_cache_fixed.py")}],
            note="Expiry used `>`; the design says an entry is expired AT written_at + ttl: `>=`.",
        )
        await self._run_tests(sid)
        await self.call(
            "request_approval",
            session_id=sid,
            message="All approved tests pass on phasegate's run; one fix (expiry boundary).",
        )
        await self._await_gate(sid, "awaiting_final_review", wait_for_human)
        return str(sid)

    async def _design(self, sid: str, wait_for_human: Gate) -> None:
        """The designer turns the request into the design; a human approves (and locks) it."""
        path = f"designs/{REQUEST_TASK}.md"  # where `task add --request` put the stub
        self.say(f"designer: drafting {path} from the request")
        design = (EXAMPLE / "project" / "design.md").read_text(encoding="utf-8")
        await self.call(
            "submit",
            session_id=sid,
            kind="design",
            files=[{"path": path, "content": design}],
            note="API, eviction order, the exact expiry boundary, and purge.",
        )
        await self._await_gate(sid, "awaiting_design_review", wait_for_human)
        self.say("agent: the design is approved (and locked); the tester is writing tests…")

    async def _pre_review(self, sid: str) -> None:
        """A reviewer agent attaches findings at the test review; the human still decides."""
        finding = {
            "path": TEST_FILE,
            "line": 1,
            "comment": "The expiry boundary (exactly t + ttl) is tested; good.",
        }
        await self.call(
            "pre_review",
            session_id=sid,
            verdict="approve",
            summary="The tests follow the design, including the expiry boundary.",
            findings=[finding],
        )
        self.say("reviewer: attached a pre-review (suggests approve) for the human")

    async def _run_tests(self, sid: str) -> dict[str, Any]:
        self.say("agent: asking phasegate to run the approved tests")
        result = await self.call("run_tests", session_id=sid)
        while result["run"]["status"] == "running":  # a long run: the result comes later
            result = await self.call("run_tests", session_id=sid)
        run = result["run"]
        self.say(f"phasegate: {run['status']}: {run['reason']} → {result['phase']}")
        return result

    async def _await_gate(self, sid: str, gate: str, wait_for_human: Gate) -> None:
        self.say(f"agent: waiting at {gate} for a human decision")
        await wait_for_human(sid, gate)
        while True:
            decision = await self.call("wait_for_decision", session_id=sid, timeout_s=30)
            if decision["decided"]:
                comment = f" ({decision['comment']})" if decision.get("comment") else ""
                self.say(f"human: {decision['decision']} by {decision['decided_by']}{comment}")
                if decision["decision"] != "approve":
                    raise ToolFailed(
                        f"the reviewer chose {decision['decision']}; "
                        "the scripted agent only knows the happy path"
                    )
                return


def agent_client(url: str, token: str) -> tuple[httpx2.AsyncClient, Client]:
    """An MCP client for `url` that authenticates with the agent's bearer token."""
    http = httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {token}"}, timeout=httpx2.Timeout(30, read=120)
    )
    return http, Client(streamable_http_client(url, http_client=http))
