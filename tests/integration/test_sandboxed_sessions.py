"""Sessions under the sandbox: configuration, no sandbox, an opted-out run, a flagged run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from phasegate.config import Project, Settings, load_settings
from phasegate.domain.principal import Principal
from phasegate.errors import ConfigError
from phasegate.orchestrator import Orchestrator
from tests.conftest import BUGGY_IMPL, GOOD_TESTS, TEST_COMMAND

TESTS = [{"path": "tests/test_calc.py", "content": GOOD_TESTS}]
CHEAT = "import _pytest.reports\n\n\ndef add(a: int, b: int) -> int:\n    return a - b\n"


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ("[sandbox]\nnetwork = true\nmemroy_mb = 512\n", "sandbox.memroy_mb"),
        ('[sandbox]\nread_only = ["/no/such/dir"]\n', "sandbox.read_only"),
        ("[sandbox]\nmemory_mb = 1\n", "sandbox.memory_mb"),
        ("[sandbox]\nmax_processes = 0\n", "sandbox.max_processes"),
        ('sandbox = "chroot"\n', "sandbox.mode"),
    ],
)
def test_a_sandbox_configuration_that_cannot_work_is_refused_naming_the_key(
    tmp_path: Path, toml: str, named: str
) -> None:
    """Unknown keys, missing bind paths and out-of-range limits fail when the file is read."""
    (tmp_path / "phasegate.toml").write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path)
    assert named in str(caught.value) and "\n" not in str(caught.value)


def test_sandbox_none_is_the_short_form_of_mode_none(tmp_path: Path) -> None:
    """`sandbox = "none"` at the top level opts out, as PRODUCT.md spells it."""
    (tmp_path / "phasegate.toml").write_text('sandbox = "none"\n')
    assert load_settings(tmp_path).sandbox.mode == "none"


def _reviewed(orch: Orchestrator, human: Principal, agent: Principal) -> str:
    session = orch.start_session("design.md", human, again=True)
    orch.submit(session.id, "tests", agent, TESTS)
    orch.decide(session.id, "approve", human)
    return session.id


def test_code_that_reaches_into_pytest_sends_the_session_to_a_human_with_the_line(
    orch: Orchestrator, human: Principal, agent: Principal
) -> None:
    """An implementation importing _pytest is flagged: the run fails and a human must look."""
    sid = _reviewed(orch, human, agent)
    orch.submit(sid, "implementation", agent, [{"path": "calc.py", "content": CHEAT}])
    session, run = orch.run_tests(sid, agent)
    assert session.phase == "awaiting_human_intervention"
    assert run["status"] == "failed" and run["reason"].startswith("flagged for a human: calc.py:1")
    assert any("import _pytest.reports" in w for w in run["warnings"])
    assert orch.timeline(sid)[-1]["action"] == "tests_flagged"
    shown = subprocess.run(
        ["phasegate", "--project", str(orch.project.root), "show", sid],
        capture_output=True,
        text=True,
        env=_cli_env(orch),
        check=False,
    )
    assert "harness tampering flagged: calc.py:1" in shown.stdout, shown.stderr


def _cli_env(orch: Orchestrator) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "PATH": bin_dir + os.pathsep + os.environ["PATH"],
        "PHASEGATE_DATABASE_URL": orch.db.url,
    }


def test_an_unsandboxed_run_is_marked_in_its_evidence_and_warnings(
    project_root: Path, db_url: str
) -> None:
    """With sandbox = "none" the run happens, and every view of it says it was unsandboxed."""
    settings = Settings(database_url=db_url, test_command=TEST_COMMAND, sandbox="none")  # type: ignore[arg-type]
    orch = Orchestrator.open(Project(project_root, settings))
    try:
        human = orch.add_principal("human", "alice")[0]
        agent = orch.add_principal("agent", "bot", ["tester", "coder", "runner"])[0]
        sid = _reviewed(orch, human, agent)
        red = orch.get(sid).context["red_run"]
        assert red["sandbox"] == "none" and red["warnings"][0].startswith("UNSANDBOXED")
        orch.submit(sid, "implementation", agent, [{"path": "calc.py", "content": BUGGY_IMPL}])
        session, run = orch.run_tests(sid, agent)
        assert session.phase == "fixing_failures" and run["sandbox"] == "none"
        assert session.context["test_results"]["warnings"][0].startswith("UNSANDBOXED")
        assert orch.test_runs(sid)[-1]["evidence"]["sandbox"] == "none"
    finally:
        orch.close()


def test_without_a_sandbox_no_run_happens_and_a_human_is_asked(
    orch: Orchestrator, human: Principal, agent: Principal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without bwrap nothing runs: the session goes to a human naming [sandbox], no attempt used."""
    sid = _reviewed(orch, human, agent)
    orch.submit(sid, "implementation", agent, [{"path": "calc.py", "content": BUGGY_IMPL}])
    monkeypatch.setenv("PHASEGATE_BWRAP", "/nonexistent/bwrap")
    after, run = orch.run_tests(sid, agent)
    assert run["setup_error"] is True and 'sandbox = "none"' in run["reason"]
    assert (after.phase, after.fix_attempts) == ("awaiting_human_intervention", 0)
    assert after.context["setup_error"]["fix"].startswith("[sandbox]")
    assert "\n" not in after.context["setup_error"]["reason"]
    assert orch.test_runs(sid)[-1]["kind"] == "red"  # no verify run was recorded

    other = orch.start_session("design.md", human, again=True)
    head = orch.get(other.id).context.get("head")
    sent = orch.submit(other.id, "tests", agent, TESTS)
    assert sent.phase == "awaiting_human_intervention"
    assert "bubblewrap" in sent.context["setup_error"]["reason"]
    assert sent.context.get("head") == head  # the tests were not accepted
    worktree = orch.project.root / sent.context["worktree"]
    assert (worktree / TESTS[0]["path"]).read_text() == TESTS[0]["content"]  # still there


def test_a_command_that_names_no_tests_pins_no_inventory_and_its_exit_code_decides(
    project_root: Path, db_url: str
) -> None:
    """With a non-pytest command and no JUnit report, approval pins nothing and exit 0 passes."""
    settings = Settings(database_url=db_url, test_command="grep -q 'a + b' calc.py")
    orch = Orchestrator.open(Project(project_root, settings))
    try:
        human = orch.add_principal("human", "alice")[0]
        agent = orch.add_principal("agent", "bot", ["tester", "coder", "runner"])[0]
        sid = _reviewed(orch, human, agent)
        assert orch.get(sid).context["approved_tests"]["inventory"] is None
        good = "def add(a: int, b: int) -> int:\n    return a + b\n"
        orch.submit(sid, "implementation", agent, [{"path": "calc.py", "content": good}])
        session, run = orch.run_tests(sid, agent)
        assert session.phase == "awaiting_final_review", run["reason"]
    finally:
        orch.close()
