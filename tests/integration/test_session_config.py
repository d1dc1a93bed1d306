"""Each session keeps the configuration it started with: editing phasegate.toml changes new ones.

The project is reopened from the edited file, as a new `phasegate` process
would read it; the running session keeps its test command, limits and fix
budget, and its events (which carry the budget) still replay.
"""

from __future__ import annotations

from pathlib import Path

from phasegate.config import open_project
from phasegate.domain.principal import Principal
from phasegate.orchestrator import Orchestrator
from tests.conftest import BUGGY_IMPL, GOOD_TESTS, TEST_COMMAND


def reopen(root: Path, db_url: str, toml: str) -> Orchestrator:
    (root / "phasegate.toml").write_text(f'database_url = "{db_url}"\n{toml}')
    return Orchestrator.open(open_project(root))


def fail_once(orch: Orchestrator, sid: str, agent: Principal) -> None:
    kind = "implementation" if orch.get(sid).phase == "generating_implementation" else "fix"
    orch.submit(sid, kind, agent, [{"path": "calc.py", "content": BUGGY_IMPL + f"# {kind}\n"}])
    orch.run_tests(sid, agent)


def test_a_session_keeps_its_budget_and_command_when_phasegate_toml_changes(
    project_root: Path, db_url: str
) -> None:
    """Two attempts at the start stay two after the file says five; a new session gets the edit."""
    first = reopen(project_root, db_url, f'test_command = "{TEST_COMMAND}"\nmax_fix_attempts = 2\n')
    human = first.add_principal("human", "alice")[0]
    agent = first.add_principal("agent", "bot", ["tester", "coder", "runner"])[0]
    sid = first.start_session("design.md", human).id
    first.submit(sid, "tests", agent, [{"path": "tests/test_calc.py", "content": GOOD_TESTS}])
    first.decide(sid, "approve", human)
    kept = first.get(sid).context["config"]
    first.close()

    edited = f'test_command = "{TEST_COMMAND} -x"\nmax_fix_attempts = 5\n'
    later = reopen(project_root, db_url, edited)
    try:
        session = later.get(sid)
        assert later.view(session)["max_fix_attempts"] == 2
        assert later.kernel.settings_of(session).test_command == TEST_COMMAND
        assert session.context["config"] == kept
        fail_once(later, sid, agent)
        fail_once(later, sid, agent)
        escalated = later.get(sid)
        assert (escalated.phase, escalated.fix_attempts) == ("awaiting_human_intervention", 2)
        runs = [r for r in later.test_runs(sid) if r["kind"] == "verify"]
        assert runs and all("-x" not in r["command"].split() for r in runs)
        assert all(r.ok for r in later.verify_audit(sid))

        newer = later.start_session("design.md", human, again=True)
        assert later.view(newer)["max_fix_attempts"] == 5
        assert newer.context["config"]["values"]["test_command"] == f"{TEST_COMMAND} -x"
        assert newer.context["config"]["hash"] != kept["hash"]
    finally:
        later.close()


def test_a_row_whose_budget_was_raised_behind_phasegate_fails_audit_verify(
    project_root: Path, db_url: str
) -> None:
    """The budget is in the chained events, so raising the column by hand is caught."""
    orch = reopen(project_root, db_url, f'test_command = "{TEST_COMMAND}"\nmax_fix_attempts = 2\n')
    try:
        human = orch.add_principal("human", "alice")[0]
        sid = orch.start_session("design.md", human).id
        with orch.db.write() as conn:
            conn.exec_driver_sql(
                "UPDATE sessions SET max_fix_attempts = 99 WHERE id = %s"
                if conn.dialect.name == "postgresql"
                else "UPDATE sessions SET max_fix_attempts = 99 WHERE id = ?",
                (sid,),
            )
        (report,) = orch.verify_audit(sid)
        assert (report.ok, report.problem) == (False, "row")
        assert "max_fix_attempts 99" in report.reason
    finally:
        orch.close()
