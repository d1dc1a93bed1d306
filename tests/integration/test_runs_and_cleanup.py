"""Infrastructure errors in test runs, and cleaning up finished sessions' worktrees."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from phasegate.cleanup import collect_finished_worktrees
from phasegate.config import Settings
from phasegate.domain.principal import Principal
from phasegate.orchestrator import Orchestrator
from phasegate.workspace import clear_stale_index_lock
from tests.conftest import BUGGY_IMPL, GOOD_TESTS, git, setup_error_at_verify


def at_running_tests(orch: Orchestrator, human: Principal, agent: Principal) -> str:
    session = orch.start_session("design.md", human, again=True)
    orch.submit(session.id, "tests", agent, [{"path": "tests/test_calc.py", "content": GOOD_TESTS}])
    orch.decide(session.id, "approve", human)
    orch.submit(session.id, "implementation", agent, [{"path": "calc.py", "content": BUGGY_IMPL}])
    return session.id


def test_a_missing_test_command_goes_to_a_human_and_retry_resumes_after_the_fix(
    orch: Orchestrator, human: Principal, agent: Principal
) -> None:
    """A command that isn't found is a setup error: a human, no attempt; retry runs the fix."""
    sid = setup_error_at_verify(orch, human, agent)
    good = replace_command(orch, "PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 python -m pytest -q")
    orch.project.settings = good
    resumed = orch.decide(sid, "retry", human)  # no comment: run again under today's settings
    assert (resumed.phase, resumed.context["setup_error"]) == ("running_tests", None)
    assert resumed.context["config"]["values"]["test_command"] == good.test_command
    session, run = orch.run_tests(sid, agent)
    assert (session.phase, session.fix_attempts, run["status"]) == ("fixing_failures", 1, "failed")
    assert orch.verify_audit(sid)[0].ok


def test_retry_with_guidance_after_a_setup_error_goes_to_the_coder(
    orch: Orchestrator, human: Principal, agent: Principal
) -> None:
    """A human who thinks the code is at fault says so with -m: the coder gets the guidance."""
    sid = setup_error_at_verify(orch, human, agent)
    kept = orch.get(sid).context["config"]
    session = orch.decide(sid, "retry", human, comment="your code exits 127; fix calc.py")
    assert (session.phase, session.context["setup_error"]) == ("fixing_failures", None)
    assert session.context["guidance"][-1]["comment"] == "your code exits 127; fix calc.py"
    assert session.context["config"] == kept  # the code was at fault, not the settings


def replace_command(orch: Orchestrator, command: str) -> Settings:
    return orch.project.settings.model_copy(update={"test_command": command})


def test_gc_removes_only_finished_worktrees_and_keeps_branches(
    orch: Orchestrator, human: Principal, agent: Principal
) -> None:
    """gc removes a cancelled session's worktree, leaves active ones, and keeps every branch."""
    active = orch.start_session("design.md", human, again=True)
    finished = orch.start_session("design.md", human, again=True)
    orch.decide(finished.id, "cancel", human)
    root = orch.project.root

    listed = collect_finished_worktrees(orch.kernel, dry_run=True, delete_branches=False)
    assert [c.session_id for c in listed] == [finished.id]
    assert (root / finished.context["worktree"]).exists()

    collect_finished_worktrees(orch.kernel, dry_run=False, delete_branches=False)
    assert not (root / finished.context["worktree"]).exists()
    assert (root / active.context["worktree"]).exists()
    branches = subprocess.run(
        ["git", "branch", "--list", "phasegate/*"], cwd=root, capture_output=True, text=True
    ).stdout
    assert finished.id in branches and active.id in branches
    assert collect_finished_worktrees(orch.kernel, dry_run=False, delete_branches=False) == []


def test_a_stale_git_lock_left_by_a_killed_commit_does_not_block_the_session(
    orch: Orchestrator, human: Principal, agent: Principal
) -> None:
    """An index.lock older than a minute (a SIGKILLed commit) is cleared before the next submit."""
    session = orch.start_session("design.md", human, again=True)
    worktree = orch.project.root / session.context["worktree"]
    git_dir = Path(
        subprocess.run(
            ["git", "rev-parse", "--absolute-git-dir"],
            cwd=worktree,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    lock = git_dir / "index.lock"
    lock.write_text("")
    os.utime(lock, (time.time() - 3600, time.time() - 3600))

    orch.submit(session.id, "tests", agent, [{"path": "tests/test_calc.py", "content": GOOD_TESTS}])
    assert orch.get(session.id).phase == "awaiting_test_review"
    assert not lock.exists()


def test_a_fresh_git_lock_is_left_to_its_owner(tmp_path: Path) -> None:
    """A recent index.lock may belong to a running git command, so it is kept."""
    git_dir = tmp_path / ".git"
    git_dir.mkdir()
    (git_dir / "index.lock").write_text("")
    assert clear_stale_index_lock(tmp_path) is False
    assert (git_dir / "index.lock").exists()


def test_a_submission_killed_after_its_commit_can_be_submitted_again(
    orch: Orchestrator, human: Principal, agent: Principal
) -> None:
    """A commit no transition recorded (a crash in between) is undone, so the retry goes through."""
    session = orch.start_session("design.md", human, again=True)
    worktree = orch.project.root / session.context["worktree"]
    (worktree / "tests").mkdir()
    (worktree / "tests" / "test_calc.py").write_text(GOOD_TESTS)
    git(worktree, "add", "tests/test_calc.py")
    git(worktree, "commit", "-qm", "committed by a submission that was then SIGKILLed")

    files = [{"path": "tests/test_calc.py", "content": GOOD_TESTS}]
    after = orch.submit(session.id, "tests", agent, files)
    assert after.phase == "awaiting_test_review"
    parent = git(worktree, "rev-parse", f"{after.context['head']}^").strip()
    assert parent == session.base_commit  # the orphan commit is not in the session's history
