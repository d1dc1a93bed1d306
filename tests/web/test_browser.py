"""The dashboard in a real browser: Playwright drives Debian's Chromium against phasegate serve."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from phasegate.domain.session import Session
from tests.conftest import GOOD_TESTS
from tests.web.conftest import (
    PHASEGATE,
    ServerProcess,
    WebEnv,
    served,
    served_project,
)
from tests.web.test_pages import HOSTILE_DESIGN

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="browser tests need Debian's Chromium at /usr/bin/chromium "
        "(apt-get install -y chromium)",
    ),
]
playwright_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebEnv]:
    with served_project(tmp_path_factory, "browser") as env:
        yield env


@pytest.fixture(scope="module")
def server(project: WebEnv) -> Iterator[ServerProcess]:
    with served(project) as running:
        yield running


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def first_gate(project: WebEnv) -> Session:
    """The session that has waited longest at the test review gate."""
    return project.gate_session(GOOD_TESTS)


@pytest.fixture
def page(chromium: object, server: ServerProcess, project: WebEnv) -> Iterator[object]:
    """A logged-in browser tab (a new context, so cookies don't leak between tests)."""
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})  # type: ignore[attr-defined]
    tab = context.new_page()
    tab.goto(f"{server.url}/")
    assert "/login" in tab.url
    tab.fill("input[name=token]", project.human_token)
    tab.click("button[type=submit]")
    tab.wait_for_url(f"{server.url}/")
    yield tab
    context.close()


def open_session(page: object, server: ServerProcess, session: Session) -> None:
    page.goto(f"{server.url}/sessions/{session.id}")  # type: ignore[attr-defined]
    page.wait_for_selector("#live-status.on")  # type: ignore[attr-defined]


def test_gate_session_is_on_top_and_approval_moves_it(
    page: object, server: ServerProcess, project: WebEnv, first_gate: Session
) -> None:
    """Logged in, the waiting gate session heads the list; its page shows the tests and red run;
    approving with a comment moves it to generating_implementation."""
    project.new_session()  # agent work, listed below
    page.reload()  # type: ignore[attr-defined]
    first_row = page.locator("#section-human tr.session-row").first  # type: ignore[attr-defined]
    assert first_row.get_attribute("data-session") == first_gate.id
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "sessions-list.png"), full_page=True)  # type: ignore[attr-defined]

    first_row.locator("a").click()
    page.wait_for_selector("#live-status.on")  # type: ignore[attr-defined]
    tests = page.locator("#tests").inner_text()  # type: ignore[attr-defined]
    assert "def test_add_negative" in tests
    runs = page.locator("#test-runs").inner_text()  # type: ignore[attr-defined]
    assert "red run" in runs and "test_calc.py::test_add" in runs and "NotImplementedError" in runs
    page.screenshot(path=str(SCREENSHOTS / "session-test-review.png"), full_page=True)  # type: ignore[attr-defined]

    page.fill("#comment", "Good coverage, go ahead.")  # type: ignore[attr-defined]
    page.click("button[value=approve]")  # type: ignore[attr-defined]
    page.wait_for_selector("#phase:text('generating_implementation')")  # type: ignore[attr-defined]
    assert "Good coverage, go ahead." in page.locator("#timeline").inner_text()  # type: ignore[attr-defined]


def test_cli_change_appears_live_and_stale_approval_is_refused(
    page: object, server: ServerProcess, project: WebEnv
) -> None:
    """A reject from the CLI shows on the open page within 2 s without reload; approving on
    the old version is then refused with a visible explanation."""
    session = project.gate_session()
    open_session(page, server, session)
    page.evaluate("window.__notReloaded = true")  # type: ignore[attr-defined]
    subprocess.run(
        [
            PHASEGATE,
            "--project",
            str(project.root),
            "reject",
            session.id,
            "-m",
            "Rejected from the terminal",
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "PHASEGATE_TOKEN": project.human_token},
        timeout=60,
    )
    done = time.monotonic()
    page.wait_for_selector("#phase:text('generating_tests')", timeout=2000)  # type: ignore[attr-defined]
    assert time.monotonic() - done < 2.0
    assert page.evaluate("window.__notReloaded === true")  # type: ignore[attr-defined]
    assert "Rejected from the terminal" in page.locator("#timeline").inner_text()  # type: ignore[attr-defined]
    assert page.locator("#stale-banner").is_visible()  # type: ignore[attr-defined]

    page.click("button[value=approve]")  # type: ignore[attr-defined]
    problem = page.locator("#problem")  # type: ignore[attr-defined]
    problem.wait_for()
    assert "changed since you looked" in problem.inner_text()
    assert project.orch.get(session.id).phase == "generating_tests"


def test_reject_with_a_comment_shows_in_the_timeline(
    page: object, server: ServerProcess, project: WebEnv
) -> None:
    """Rejecting with a comment sends the tests back and the comment is in the timeline."""
    session = project.gate_session()
    open_session(page, server, session)
    page.fill("#comment", "Please also test add(0, 0).")  # type: ignore[attr-defined]
    page.click("button[value=reject]")  # type: ignore[attr-defined]
    page.wait_for_selector("#phase:text('generating_tests')")  # type: ignore[attr-defined]
    timeline = page.locator("#timeline").inner_text()  # type: ignore[attr-defined]
    assert "reject by alice" in timeline and "Please also test add(0, 0)." in timeline


def test_hostile_design_is_text_not_markup(
    page: object, server: ServerProcess, project: WebEnv
) -> None:
    """A design with <script>, <img onerror> and HTML shows them as text and runs nothing."""
    (project.root / "evil.md").write_text(HOSTILE_DESIGN)
    session = project.new_session("evil.md")
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))  # type: ignore[attr-defined]
    open_session(page, server, session)
    design = page.locator("#design")  # type: ignore[attr-defined]
    assert '<script>alert("design")</script>' in design.inner_text()
    assert "<b>bold html</b>" in design.inner_text()
    assert design.locator("script, img, b").count() == 0
    assert dialogs == []
