"""Migration 0004 on a database written by the code before it: real sessions, real runs.

The sessions are made by phasegate as it was before run output left the
context (taken from this repository's history with `git archive`), so their
contexts hold the copies the migration moves out: the red run's whole
evidence and the last run's failures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from io import BytesIO
from pathlib import Path

import pytest
import sqlalchemy as sa
from engine_helpers import BUGGY_IMPL, GOOD_IMPL, GOOD_TESTS

from phasegate.config import Project, Settings
from phasegate.orchestrator import Orchestrator
from phasegate.store.database import normalise_url

REPO = Path(__file__).resolve().parents[2]
# The last commit whose schema ends at 0003: its contexts carry copies of the runs.
BEFORE = "0b39673cf12583b6529e1d57dd7043ada0f20bd7"

OLD_SESSIONS = """
import json, sys
from phasegate.config import Project, Settings
from phasegate.orchestrator import Orchestrator

root, url, tests, buggy = sys.argv[1:5]
orch = Orchestrator.open(Project(__import__("pathlib").Path(root), Settings(
    database_url=url, test_command="python -m pytest -q -p no:cacheprovider")))
human, _ = orch.add_principal("human", "alice")
agent, _ = orch.add_principal("agent", "bot", ["tester", "coder"])
ids = []
for _ in range(2):
    sid = orch.start_session("design.md", human).id
    orch.submit(sid, "tests", agent, [{"path": "tests/test_calc.py", "content": tests}])
    ids.append(sid)
orch.decide(ids[1], "approve", human)
orch.submit(ids[1], "implementation", agent, [{"path": "calc.py", "content": buggy}])
orch.run_tests(ids[1], agent)
print(json.dumps(ids))
"""


def old_phasegate(tmp: Path) -> Path:
    """The phasegate package as it was at BEFORE, unpacked under `tmp`."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", BEFORE, "src/phasegate"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(tmp, filter="data")
    return tmp / "src"


def contexts(url: str) -> dict[str, dict[str, object]]:
    engine = sa.create_engine(normalise_url(url))
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, context FROM sessions")).all()
    engine.dispose()
    return {r.id: r.context if isinstance(r.context, dict) else json.loads(r.context) for r in rows}


@pytest.mark.slow
def test_migration_moves_run_copies_out_and_keeps_runs_and_chain_intact(
    project_root: Path, db_url: str, tmp_path: Path
) -> None:
    """Contexts shrink, every run stays readable, audit verify passes, and sessions go on."""
    old_src = old_phasegate(tmp_path / "old")
    made = subprocess.run(
        [sys.executable, "-c", OLD_SESSIONS, str(project_root), db_url, GOOD_TESTS, BUGGY_IMPL],
        cwd=project_root,
        env={**os.environ, "PYTHONPATH": str(old_src)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr[-3000:]
    gate, failing = json.loads(made.stdout.strip().splitlines()[-1])
    before = contexts(db_url)
    assert "output_tail" in before[gate]["red_run"]  # type: ignore[operator]
    assert before[failing].get("failures")

    project = Project(
        project_root,
        Settings(database_url=db_url, test_command="python -m pytest -q -p no:cacheprovider"),
    )
    orch = Orchestrator.open(project)  # migrates to the newest revision
    try:
        after = contexts(db_url)
        for sid in (gate, failing):
            assert len(json.dumps(after[sid])) < len(json.dumps(before[sid])) / 2
            summary = after[sid]["red_run"]
            assert isinstance(summary, dict) and "output_tail" not in summary
            [red] = orch.stored_runs(summary)
            old_red = before[sid]["red_run"]
            assert isinstance(old_red, dict) and red is not None
            assert red["failures"] == old_red["failures"]
            assert red["output_tail"] == old_red["output_tail"]
        assert "failures" not in after[failing]
        last = after[failing]["test_results"]
        old_failures = before[failing]["failures"]
        assert isinstance(last, dict) and isinstance(old_failures, list)
        assert last["failures_total"] == len(old_failures) >= 1
        assert all(report.ok for report in orch.verify_audit())

        # The sessions go on: the chain continues from the tip the migration put on the row.
        agent, _ = orch.add_principal("agent", "new-bot", ["tester", "coder"])
        human, _ = orch.add_principal("human", "bob")
        orch.submit(failing, "fix", agent, [{"path": "calc.py", "content": GOOD_IMPL}])
        session, run = orch.run_tests(failing, agent)
        assert (session.phase, run["status"]) == ("awaiting_final_review", "passed")
        assert orch.decide(gate, "approve", human).phase == "generating_implementation"
        assert all(report.ok for report in orch.verify_audit())
    finally:
        orch.close()
