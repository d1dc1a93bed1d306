"""Resources (the whole session, its design, its timeline) and the prompt that teaches the flow."""

from __future__ import annotations

import json
from typing import Any

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError

from phasegate.entrypoints.mcp.calls import Deps
from phasegate.errors import PhasegateError

DRIVE_SESSION = """\
You are working on a phasegate session{which}. phasegate enforces test-driven development
with human review; it runs the tests itself, so never claim results you did not get from it.

1. get_session_status(session_id): read `phase`, `next_action`, the `design`, and any
   `feedback` from the reviewer. Always do what `next_action` says.
2. generating_tests: write tests from the design (test files only) and call
   submit_tests(session_id, files=[{{path, content}}], note="why these tests").
   phasegate runs them once; they should fail because the code does not exist yet.
3. awaiting_test_review: a human reviews the tests. Call wait_for_decision(session_id)
   until `decided` is true. If rejected, read the `comment`, fix the tests, submit again.
4. generating_implementation: the approved tests are locked (changing them is refused).
   Write the code and call submit_implementation(session_id, files, note).
5. running_tests: call run_tests(session_id). If it fails, read `run.failures`, then call
   fix_failures(session_id, files, note) and run_tests again. Each failed run uses one
   of the limited fix attempts (`fix_attempts_left`); out of attempts, a human steps in.
6. awaiting_final_review: call wait_for_decision(session_id). Approved → completed.
   Rejected → fixing_failures with the reviewer's comment: fix, then run_tests again.

You can never approve, reject or skip a gate: only a human can. A call that failed
returns one line starting `Error:`; read it: it says what went wrong, the session's phase
and the tools you may call now (or, for a bad argument, the call to make instead).
"""


def register_resources(mcp: MCPServer, deps: Deps) -> None:
    """Add the session resources and the `drive_session` prompt to `mcp`."""
    orch = deps.orch

    async def load(session_id: str, what: str) -> Any:
        deps.principal()

        def read() -> Any:
            session = orch.get(session_id)
            if what == "design":
                return str(session.context.get("design") or "")
            if what == "timeline":
                return orch.timeline(session.id)
            return {
                **orch.view(session),
                "context": dict(session.context),
                "runs": orch.test_runs(session.id),
            }

        try:
            return await deps.call(read)
        except Exception as exc:
            cause = exc.__cause__ if isinstance(exc.__cause__, PhasegateError) else exc
            raise ResourceError(str(getattr(cause, "message", cause))) from exc

    @mcp.resource(
        "phasegate://sessions/{session_id}",
        mime_type="application/json",
        description="The whole session: its state, full context (design, tests, feedback) "
        "and every test run with its output and failures, uncut",
    )
    async def session_resource(session_id: str) -> str:
        return json.dumps(await load(session_id, "session"), default=str, indent=1)

    @mcp.resource(
        "phasegate://sessions/{session_id}/design",
        mime_type="text/markdown",
        description="The session's design document",
    )
    async def design_resource(session_id: str) -> str:
        return str(await load(session_id, "design"))

    @mcp.resource(
        "phasegate://sessions/{session_id}/timeline",
        mime_type="application/json",
        description="The session's audit trail: every transition and decision, with "
        "the agents' notes and the reviewers' comments",
    )
    async def timeline_resource(session_id: str) -> str:
        return json.dumps(await load(session_id, "timeline"), default=str, indent=1)

    @mcp.prompt(
        title="Drive a phasegate session",
        description="How to take a session from its design to a human-approved, "
        "green implementation with the phasegate tools",
    )
    def drive_session(session_id: str = "") -> str:
        return DRIVE_SESSION.format(which=f" ({session_id})" if session_id else "")
