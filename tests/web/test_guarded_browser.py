"""A guarded server in a real browser: the login needs the passphrase, and the header says so."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from phasegate.config import Project, load_settings
from phasegate.orchestrator import Orchestrator
from tests.conftest import GOOD_TESTS, make_project_repo
from tests.web.conftest import PHASEGATE, ServerProcess, start_server, stop_server
from tests.web.test_browser import CHROMIUM

pytestmark = pytest.mark.browser
playwright_api = pytest.importorskip("playwright.sync_api")
PASSPHRASE = "a long and unguessable passphrase"


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[tuple[ServerProcess, str, Orchestrator]]:
    """A guarded server (state in a 0700 directory outside the repository) and alice's token."""
    root = make_project_repo(tmp_path / "project")
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    common = [PHASEGATE, "--project", str(root), "--state-dir", str(state)]
    init = subprocess.run([*common, "init", "--name", "alice"], capture_output=True, text=True)
    assert init.returncode == 0, init.stderr
    token = next(w for w in init.stdout.split() if w.startswith("pgh_"))
    subprocess.run(
        [*common, "token", "passphrase", "alice", "--passphrase-stdin"],
        input=PASSPHRASE + "\n",
        check=True,
        capture_output=True,
        text=True,
    )
    orch = Orchestrator.open(Project(root, load_settings(root), state_dir=state))
    server = start_server(root, {}, state_dir=state, guarded=True)
    yield server, token, orch
    stop_server(server)
    orch.close()


def test_a_guarded_login_needs_the_passphrase_and_then_decides(
    guarded: tuple[ServerProcess, str, Orchestrator],
) -> None:
    """Token alone: refused. Wrong passphrase: refused, with a wait. Right one: in, decide."""
    server, token, orch = guarded
    human = orch.authenticate(token)
    agent, _ = orch.add_principal("agent", "bot", ["tester"])
    session = orch.start_session(str(orch.project.root / "design.md"), human, again=True)
    orch.submit(session.id, "tests", agent, [{"path": "tests/test_calc.py", "content": GOOD_TESTS}])
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        tab = browser.new_page()
        tab.goto(f"{server.url}/")
        assert "guarded" in tab.inner_text(".login")

        def log_in(passphrase: str) -> None:
            tab.fill("input[name=token]", token)
            tab.fill("input[name=passphrase]", passphrase)
            tab.click("button[type=submit]")
            tab.wait_for_load_state()

        tab.evaluate("document.querySelector('input[name=passphrase]').required = false")
        log_in("")
        assert "no passphrase given" in tab.inner_text(".problem") and "/login" in tab.url
        log_in("not it")
        assert "wrong passphrase for alice; the next try waits 1 s" in tab.inner_text(".problem")
        log_in(PASSPHRASE)
        assert "try again in" in tab.inner_text(".problem")  # too soon, even when right
        time.sleep(1.1)
        log_in(PASSPHRASE)
        tab.wait_for_url(f"{server.url}/")
        assert tab.inner_text(".protection").startswith("guarded:")
        tab.goto(f"{server.url}/sessions/{session.id}")
        tab.click("button[value=approve]")
        tab.wait_for_load_state()
        browser.close()
    assert orch.get(session.id).phase == "generating_implementation"
