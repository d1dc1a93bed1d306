"""Refused submissions are on the record: append-only, in the audit chain, paths and causes only."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from phasegate import submissions
from phasegate.domain.principal import Principal
from phasegate.errors import Conflict, InvalidTransition, PermissionDenied, SubmissionRefused
from phasegate.orchestrator import Orchestrator
from tests.conftest import GOOD_IMPL, GOOD_TESTS

SECRET = "return a + b  # the attempted code itself"


def refusals(orch: Orchestrator, sid: str) -> list[dict[str, object]]:
    return [e["payload"] for e in orch.timeline(sid) if e["action"] == "submission_refused"]


def test_a_forbidden_path_and_lease_refusals_are_recorded_and_audited(
    orch: Orchestrator, human: Principal, agent: Principal
) -> None:
    """Each cause lands as one event naming the paths; nothing else about the session moves."""
    sid = orch.start_session("design.md", human, again=True).id
    mixed = [
        {"path": "tests/test_calc.py", "content": GOOD_TESTS},
        {"path": "calc.py", "content": SECRET},
    ]
    with pytest.raises(SubmissionRefused):
        orch.submit(sid, "tests", agent, mixed)

    other = orch.add_principal("agent", "other", ["tester"])[0]
    claimed = orch.claim_next(other, "tester", ttl=timedelta(minutes=5))
    assert claimed is not None and claimed.id == sid
    with pytest.raises(PermissionDenied):  # someone else's live lease
        orch.submit(sid, "tests", agent, mixed[:1])
    orch.release_lease(sid, claimed.lease_epoch)
    again = orch.claim_next(agent, "tester")
    assert again is not None
    with pytest.raises(Conflict):  # a submission under the epoch that was taken over
        orch.submit(sid, "tests", agent, mixed[:1], lease_epoch=claimed.lease_epoch)

    recorded = refusals(orch, sid)
    assert [r["cause"] for r in recorded] == ["forbidden_path", "lease", "lease"]
    assert recorded[0]["paths"] == ["tests/test_calc.py", "calc.py"]
    assert SECRET not in str(recorded)  # paths, never contents
    assert all(r["submission"] == "submit_tests" for r in recorded)
    session = orch.get(sid)
    assert session.phase == "generating_tests" and session.context.get("head") is None
    assert session.context["refusals"]["count"] == 3
    assert all(r.ok for r in orch.verify_audit(sid))


def test_a_submission_in_the_wrong_phase_is_an_error_not_a_refusal_on_record(
    orch: Orchestrator, human: Principal, agent: Principal
) -> None:
    """At a human gate an agent's submission changes nothing, not even the version."""
    sid = orch.start_session("design.md", human, again=True).id
    orch.submit(sid, "tests", agent, [{"path": "tests/test_calc.py", "content": GOOD_TESTS}])
    before = orch.get(sid)
    with pytest.raises(InvalidTransition):
        orch.submit(sid, "implementation", agent, [{"path": "calc.py", "content": GOOD_IMPL}])
    assert orch.get(sid).version == before.version and refusals(orch, sid) == []


def test_a_refusal_cannot_be_erased_from_the_record(
    orch: Orchestrator, human: Principal, agent: Principal
) -> None:
    """The events table is append-only: deleting the refusal fails and it stays on record."""
    sid = orch.start_session("design.md", human, again=True).id
    with pytest.raises(SubmissionRefused):
        orch.submit(sid, "tests", agent, [{"path": "calc.py", "content": SECRET}])
    with pytest.raises(DBAPIError, match="append-only"), orch.db.write() as conn:
        conn.execute(sa.text("DELETE FROM events WHERE action = 'submission_refused'"))
    assert [r["cause"] for r in refusals(orch, sid)] == ["forbidden_path"]
    assert all(r.ok for r in orch.verify_audit(sid))


def test_a_flood_of_one_cause_cannot_hide_a_locked_test_refusal(
    orch: Orchestrator, human: Principal, agent: Principal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the bound for forbidden paths, those stop being stored; a locked test still is."""
    monkeypatch.setattr(submissions, "OTHER_REFUSALS_RECORDED", 3)
    sid = orch.start_session("design.md", human, again=True).id
    orch.submit(sid, "tests", agent, [{"path": "tests/test_calc.py", "content": GOOD_TESTS}])
    orch.decide(sid, "approve", human)
    for n in range(5):
        with pytest.raises(SubmissionRefused):
            orch.submit(sid, "implementation", agent, [{"path": f"../x{n}", "content": "x"}])
    with pytest.raises(SubmissionRefused):
        orch.submit(sid, "implementation", agent, [{"path": "tests/test_calc.py", "content": ""}])
    causes = [r["cause"] for r in refusals(orch, sid)]
    assert causes == ["forbidden_path"] * 3 + ["locked_test"]
    assert "not recorded" in str(refusals(orch, sid)[2]["last_recorded"])
    assert orch.get(sid).context["refusals"]["by_cause"] == {"forbidden_path": 3, "locked_test": 1}
