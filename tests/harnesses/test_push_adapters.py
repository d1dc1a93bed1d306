"""`phasegate worker` with the claude, codex and gemini adapters: each real CLI runs headless in
the session's worktree and sandbox and drives its phase over MCP, against the scripted models.

One harness writes the tests and another the code, as docs/workers.md suggests. The worker
serves its own MCP endpoint on 127.0.0.1; a reviewer approves each gate with the CLI. The audit
trail must say which harness did each step, and the timeline must hold each CLI's transcript.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from phasegate.credentials import config_dir
from tests.conftest import GOOD_IMPL, GOOD_TESTS, make_project_repo
from tests.harnesses import installed_clis
from tests.harnesses.agent_clis import HARNESSES, PHASEGATE
from tests.harnesses.fake_models.brain import CODE_FILE, TEST_FILE
from tests.harnesses.fake_models.server import FakeModels
from tests.harnesses.human_side import GATES, Reviewer, on_branch
from tests.mcp.conftest import CliProject

pytestmark = [pytest.mark.node, pytest.mark.slow, pytest.mark.timeout(600)]

clis = installed_clis.clis  # the shared session fixture, requested by name below
AGENT, HUMAN = "bot", "alice"
SESSION_TIMEOUT_S = 420
#: The session without the transcripts, in order: (action, actor kind, role, harness role).
TRAIL = [
    ("begin", "system", None, None),
    ("load_design", "system", None, None),
    ("submit_tests", "agent", "tester", "tester"),
    ("approve", "human", None, None),
    ("submission_refused", "agent", "coder", "coder"),
    ("submit_implementation", "agent", "coder", "coder"),
    ("tests_failed", "system", None, None),
    ("fix_failures", "agent", "coder", "coder"),
    ("tests_passed", "system", None, None),
    ("approve", "human", None, None),
]


@pytest.mark.parametrize(
    ("tester", "coder"),
    [("claude", "codex"), ("codex", "gemini"), ("gemini", "claude")],
    ids=["claude-tests-codex-code", "codex-tests-gemini-code", "gemini-tests-claude-code"],
)
def test_a_worker_drives_a_session_with_a_different_harness_per_role(
    tester: str, coder: str, tmp_path: Path, clis: Path
) -> None:
    """Tests by one real CLI, code by another: the session completes through a refused edit of
    the locked test, a failing run and a fix; each step names its harness, and the timeline
    has each CLI's transcript."""
    project = CliProject(make_project_repo(tmp_path / "project").resolve())
    project.run("init", "--name", HUMAN)
    token = project.agent_token(AGENT)
    sid = project.start()
    worker_log = tmp_path / "worker.log"
    with FakeModels() as fake:
        env = _worker_env(tmp_path, clis, fake.url, token)
        reviewer = Reviewer(project)
        reviewer.start()
        worker = _start_worker(project, env, worker_log, tester=tester, coder=coder)
        try:
            completed = _wait_for_phase(project, sid, "completed", worker)
        finally:
            reviewer.finish()
            _stop(worker)
        report = _report(project, sid, fake, worker_log)
        assert completed, report
        assert not reviewer.problem, f"{reviewer.problem}\n{report}"
        assert [gate for _, gate in reviewer.approved] == list(GATES), report
        unexpected = [
            (method, path, status)
            for method, path, status in fake.paths()
            if status != 200
            or not any(
                re.fullmatch(p, path)
                for name in (tester, coder)
                for p in HARNESSES[name].model_paths
            )
        ]
        assert not unexpected, report

    events: list[dict[str, Any]] = project.json("log", sid)
    harness_of = {"tester": HARNESSES[tester], "coder": HARNESSES[coder]}
    steps = [e for e in events if e["action"] != "agent_transcript"]
    trail = [(e["action"], e["actor_kind"], e["actor_role"]) for e in steps]
    assert trail == [(a, k, r) for a, k, r, _ in TRAIL], report
    for event, (_, _, _, role) in zip(steps, TRAIL, strict=True):
        if role is None:
            assert "via" not in event["payload"], event
            continue
        harness = harness_of[role]
        assert event["actor_id"] == AGENT
        assert event["payload"]["via"] == {
            "client": harness.client,
            "version": harness.version,
            "transport": "http",
        }, event

    transcripts = [e for e in events if e["action"] == "agent_transcript"]
    assert [t["payload"]["harness"] for t in transcripts] == [tester, coder, coder], report
    assert [t["payload"]["phase"] for t in transcripts] == [
        "generating_tests",
        "generating_implementation",
        "fixing_failures",
    ]
    for transcript, tool in zip(
        transcripts, ("submit_tests", "submit_implementation", "fix_failures"), strict=True
    ):
        texts = [s["text"] for s in transcript["payload"]["steps"] if s["kind"] == "tool"]
        assert any(t.startswith(f"{tool}(session_id={sid}") for t in texts), transcript
        assert transcript["payload"]["exit_code"] == 0, transcript

    assert on_branch(project.root, sid, TEST_FILE) == GOOD_TESTS
    assert on_branch(project.root, sid, CODE_FILE) == GOOD_IMPL
    assert project.run("audit", "verify", sid, check=False).returncode == 0
    log = worker_log.read_text()
    assert re.search(r"agent CLIs connect to phasegate at http://127\.0\.0\.1:\d+/mcp", log)


def _worker_env(tmp_path: Path, clis: Path, models: str, token: str) -> dict[str, str]:
    """The worker's environment: the CLIs on PATH, their homes in scratch, pointed at the fake.

    The adapters add phasegate as MCP server themselves; here only each CLI's model provider
    and its switches for updates and telemetry are set, as a user's own login would be.
    """
    home = tmp_path / "home"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("claude", "codex", "gemini"):
        (bin_dir / name).symlink_to(installed_clis.cli(clis, name))
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True)
    (codex_home / "config.toml").write_text(
        'model = "fake-model"\nmodel_provider = "local"\n'
        '[model_providers.local]\nname = "local"\n'
        f'base_url = "{models}/v1"\nwire_api = "responses"\nenv_key = "FAKE_MODEL_KEY"\n'
    )
    (home / ".gemini").mkdir()
    (home / ".gemini" / "settings.json").write_text(
        json.dumps({"security": {"auth": {"selectedType": "gemini-api-key"}}})
    )
    (home / ".claude").mkdir()
    path = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), "/usr/bin", "/bin"])
    return {
        "PATH": path,
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "NO_COLOR": "1",
        "PHASEGATE_AGENT_TOKEN": token,
        "PHASEGATE_CONFIG_DIR": str(config_dir()),  # the audit key, where `init` put it
        "ANTHROPIC_BASE_URL": models,
        "ANTHROPIC_API_KEY": "fake-key",
        "CLAUDE_CONFIG_DIR": str(home / ".claude"),
        "CODEX_HOME": str(codex_home),
        "FAKE_MODEL_KEY": "fake-key",
        "GEMINI_API_KEY": "fake-key",
        "GOOGLE_GEMINI_BASE_URL": models,
    }


def _start_worker(
    project: CliProject, env: dict[str, str], log: Path, *, tester: str, coder: str
) -> subprocess.Popen[bytes]:
    argv = [PHASEGATE, "--project", str(project.root), "worker", "--role", "tester,coder"]
    argv += ["--agent", f"tester={tester}", "--agent", f"coder={coder}", "--lease-ttl", "9"]
    with log.open("wb") as out:
        return subprocess.Popen(argv, cwd=project.root, env=env, stdout=out, stderr=out)


def _wait_for_phase(
    project: CliProject, sid: str, phase: str, worker: subprocess.Popen[bytes]
) -> bool:
    deadline = time.monotonic() + SESSION_TIMEOUT_S
    while time.monotonic() < deadline and worker.poll() is None:
        if project.json("show", sid)["phase"] == phase:
            return True
        time.sleep(1)
    return False


def _stop(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(60)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def _report(project: CliProject, sid: str, fake: FakeModels, worker_log: Path) -> str:
    log = project.run("log", sid, check=False).stdout
    return "\n".join(
        [
            f"--- phasegate log ---\n{log[-6000:]}",
            f"--- worker log (tail) ---\n{worker_log.read_text(errors='replace')[-6000:]}",
            f"--- model requests ---\n{fake.log()}",
        ]
    )
