"""`phasegate demo --workflow spec --yes`: designer, reviewer, tester and coder, one session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from phasegate.config import open_project
from phasegate.orchestrator import Orchestrator

PHASEGATE = str(Path(sys.executable).with_name("phasegate"))


def test_spec_demo_runs_every_role_through_a_whole_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The design is drafted and locked, the reviewer analyses and pre-reviews, it completes."""
    target = tmp_path / "demo"
    monkeypatch.setenv("PHASEGATE_CONFIG_DIR", str(tmp_path / "config"))
    done = subprocess.run(
        [PHASEGATE, "demo", "--yes", "--workflow", "spec", "--dir", str(target)],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "designer: drafting designs/ttl-cache.md" in done.stdout
    assert "reviewer: analysing the failures" in done.stdout

    orch = Orchestrator.open(open_project(target))
    try:
        [session] = orch.list_sessions(include_finished=True)
        session = orch.get(session.id)
        assert session.workflow == "spec" and session.phase == "completed"
        assert list(session.context["approved_design"]["hashes"]) == ["designs/ttl-cache.md"]
        assert "`>=`" in session.context["reviews"][-1]["comment"]
        actions = [e["action"] for e in orch.timeline(session.id)]
        for action in ("submit_design", "pre_review", "submit_review", "fix_failures"):
            assert action in actions
        assert actions.count("approve") == 3  # the design, the tests, the result: all by a human
        assert orch.verify_audit(session.id)[0].ok
    finally:
        orch.close()
