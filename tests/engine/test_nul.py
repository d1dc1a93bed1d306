"""A NUL character an agent slips into what phasegate stores is stored as U+FFFD, on both databases.

PostgreSQL keeps no NUL in text or JSONB: without care, a reviewer message or
a failing test's output with a NUL in it made the transaction fail, and a
failing run could never be recorded.
"""

from __future__ import annotations

import uuid

import pytest
from engine_helpers import drive, start

from phasegate.domain.principal import Principal
from phasegate.errors import InvalidInput
from phasegate.orchestrator import Orchestrator
from phasegate.testrun import TestCaseResult, TestRunEvidence
from phasegate.verification import insert_run


def test_a_message_and_a_runs_output_with_nul_are_stored(
    orch: Orchestrator, human: Principal, agent: Principal
) -> None:
    """The transition and the run both land, with the NUL marked, and the chain still holds."""
    session = drive(orch, start(orch, human).id, "awaiting_test_review")
    kept = "\ufffd"  # marked, on both databases
    asked = orch.request_approval(session.id, agent, "look at S\x00NUL")
    assert asked.version == session.version + 1
    assert orch.get(session.id).context["approval_request"]["message"] == f"look at S{kept}NUL"
    failure = TestCaseResult(id="t::x", outcome="failed", message="'S\x00' != 'a'")
    evidence = TestRunEvidence(
        status="failed",
        reason="1 failed: t::x\x00",
        infrastructure=False,
        exit_code=1,
        duration_s=0.1,
        command="pytest",
        commit="c" * 40,
        failures=(failure,),
        output_tail="E  S\x00NUL",
    )
    run_id = uuid.uuid4().hex
    with orch.db.write() as conn:
        insert_run(orch.kernel, conn, run_id, session.id, "verify", "c" * 40, evidence)
    [run] = orch.stored_runs({"run_id": run_id})
    assert run is not None and run["output_tail"] == f"E  S{kept}NUL"
    assert run["failures"][0]["message"] == f"'S{kept}' != 'a'"
    assert all(report.ok for report in orch.verify_audit(session.id))


def test_a_task_reference_with_nul_is_refused(orch: Orchestrator, human: Principal) -> None:
    """One clear line instead of a database error."""
    with pytest.raises(InvalidInput, match="NUL"):
        orch.start_session("design.md\x00", human)
