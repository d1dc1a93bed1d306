"""`phasegate demo --yes` runs a whole real session and leaves it to explore."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from phasegate.config import open_project
from phasegate.orchestrator import Orchestrator

PHASEGATE = str(Path(sys.executable).with_name("phasegate"))


def test_demo_completes_a_session_with_real_red_failing_and_green_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo completes, its runs really happened (JUnit reports kept), the chain verifies."""
    target = tmp_path / "demo"
    monkeypatch.setenv("PHASEGATE_CONFIG_DIR", str(tmp_path / "config"))  # the audit key is there
    env = dict(os.environ)
    done = subprocess.run(
        [PHASEGATE, "demo", "--yes", "--dir", str(target)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SCRIPTED agent" in done.stdout and "audit chain of 11 events verifies" in done.stdout

    orch = Orchestrator.open(open_project(target))
    try:
        [session] = orch.list_sessions(include_finished=True)
        assert session.phase == "completed"
        runs = orch.test_runs(session.id)
        assert [(r["kind"], r["status"]) for r in runs] == [
            ("red", "failed"),
            ("verify", "failed"),
            ("verify", "passed"),
        ]
        assert runs[0]["evidence"]["counts"]["failed"] == 16
        assert runs[1]["evidence"]["counts"] == {
            **runs[1]["evidence"]["counts"],
            "failed": 3,
            "passed": 13,
        }
        for run in runs:
            report = target / ".phasegate" / "runs" / f"{run['id']}.xml"
            assert "<testsuite" in report.read_text()
    finally:
        orch.close()

    verify = subprocess.run(
        [PHASEGATE, "audit", "verify"], cwd=target, env=env, capture_output=True, text=True
    )
    assert verify.returncode == 0 and "1 of 1 chains verify" in verify.stdout
    listing = subprocess.run(
        [PHASEGATE, "ls", "--all", "--json"], cwd=target, env=env, capture_output=True, text=True
    )
    assert '"phase": "completed"' in listing.stdout


def test_demo_refuses_a_folder_that_is_not_a_demo(tmp_path: Path) -> None:
    """An existing non-demo folder is refused with one line and left untouched."""
    (tmp_path / "mine.txt").write_text("keep me")
    env = {**os.environ, "PHASEGATE_CONFIG_DIR": str(tmp_path / "config")}
    done = subprocess.run(
        [PHASEGATE, "demo", "--yes", "--dir", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "is not a phasegate demo" in done.stderr
    assert (tmp_path / "mine.txt").read_text() == "keep me"
    assert not (tmp_path / ".git").exists() and not (tmp_path / ".phasegate").exists()
