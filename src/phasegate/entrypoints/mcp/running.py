"""`run_tests`: phasegate runs the approved tests; a long run hands back a handle.

The run happens in a thread this process owns, not in the request, so a
client that gives up after ~60 s loses nothing: the next `run_tests` (or
`get_session_status`) on the session picks the result up.
"""

from __future__ import annotations

from typing import Any

from phasegate.domain.session import Session
from phasegate.entrypoints.mcp.budget import RESULT_BUDGET, fit
from phasegate.entrypoints.mcp.calls import Deps
from phasegate.entrypoints.mcp.results import (
    RunTestsResult,
    TestRunSummary,
    run_summary,
    session_fields,
)
from phasegate.entrypoints.mcp.runs import BackgroundWork, Report
from phasegate.entrypoints.mcp.status import resource_uri


async def run_tests_tool(deps: Deps, session_id: str, report: Report) -> RunTestsResult:
    """Start (or join) this session's test run; wait up to `deps.run_wait_s` for its result."""
    orch = deps.orch
    principal = deps.principal()
    session = await deps.call(orch.get, session_id, session_ref=session_id)
    work = deps.runs.get(session.id)
    if work is not None and work.done.is_set() and not _deliverable(work, session):
        deps.runs.forget(session.id, work)
        work = None
    joined = work is not None
    if work is None:
        sid = session.id
        work = deps.runs.start(
            sid, lambda progress: orch.run_tests(sid, principal, progress=progress)
        )
    if not await work.wait(report, deps.run_wait_s):
        fields = session_fields(
            orch,
            session,
            (f"The test run is still going ({work.last_message}); it keeps running in phasegate."),
        )
        fields["next_action"] = (
            "Call run_tests(session_id) again to wait for this run's result "
            f"(handle {work.handle[:8]}); don't submit anything meanwhile."
        )
        return RunTestsResult(
            **fields,
            run=TestRunSummary(status="running", reason=work.last_message, handle=work.handle),
        )
    deps.runs.forget(session.id, work)
    try:
        new, evidence = work.outcome()
    except Exception as exc:
        raise await deps.tool_error(exc, session.id) from exc
    run = run_summary(evidence, resource_uri(new.id)) or TestRunSummary(status="unknown")
    verdict = {
        "passed": "All tests passing",
        "failed": "Tests failed",
        "error": "The test run errored",
    }.get(run.status, run.status)
    message = f"{verdict}: {run.reason}. Session is now in {new.phase}" + (
        " (result of the run started earlier)." if joined else "."
    )
    result = RunTestsResult(**session_fields(orch, new, message), run=run)
    return fit(result, RESULT_BUDGET, resource_uri(new.id))


def _deliverable(work: BackgroundWork[Any], session: Session) -> bool:
    """A finished run's outcome is news unless the session moved on since it ended."""
    if work.error is not None:
        return True
    if work.result is None:
        return False
    new, _ = work.result
    return bool(new.version >= session.version)
