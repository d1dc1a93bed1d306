"""Desktop notifications in a real Chromium: after "Notify me", a gate reached elsewhere shows."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.web.conftest import ServerProcess, WebEnv, served, served_project

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="browser tests need Debian's Chromium at /usr/bin/chromium "
        "(apt-get install -y chromium)",
    ),
]
playwright_api = pytest.importorskip("playwright.sync_api")

# Records every notification the page constructs; the real constructor still runs.
RECORD_NOTIFICATIONS = """
(() => {
  const Real = window.Notification;
  window.__shown = [];
  function Recording(title, options) {
    const note = new Real(title, options);
    window.__shown.push({ title: title, body: (options || {}).body || "", note: note });
    return note;
  }
  Recording.requestPermission = (...args) => Real.requestPermission(...args);
  Object.defineProperty(Recording, "permission", { get: () => Real.permission });
  Recording.prototype = Real.prototype;
  window.Notification = Recording;
})();
"""
SHOWN = "window.__shown.map(n => ({title: n.title, body: n.body}))"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebEnv]:
    with served_project(tmp_path_factory, "notify") as env:
        yield env


@pytest.fixture(scope="module")
def server(project: WebEnv) -> Iterator[ServerProcess]:
    with served(project) as running:
        yield running


@pytest.fixture
def page(server: ServerProcess, project: WebEnv) -> Iterator[object]:
    """A logged-in dashboard tab allowed to notify, whose notifications are recorded."""
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        context = browser.new_context()
        context.grant_permissions(["notifications"], origin=server.url)
        context.add_init_script(RECORD_NOTIFICATIONS)
        tab = context.new_page()
        tab.goto(f"{server.url}/")
        tab.fill("input[name=token]", project.human_token)
        tab.click("button[type=submit]")
        tab.wait_for_url(f"{server.url}/")
        tab.wait_for_selector("#live-status.on")
        yield tab
        browser.close()


def shown_once(page: object, count: int, timeout_s: float = 10) -> list[dict[str, str]]:
    """The notifications shown, once there are `count` (polled: the CSP forbids eval)."""
    deadline = time.monotonic() + timeout_s
    while len(shown := page.evaluate(SHOWN)) < count and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.05)
    assert len(shown) >= count, shown
    return list(shown)


def test_a_gate_reached_elsewhere_shows_a_notification_that_opens_the_session(
    page: object, server: ServerProcess, project: WebEnv
) -> None:
    """After "Notify me", a session moved to the test review gate by another process shows
    a desktop notification naming its task; clicking it opens the session's page."""
    page.click("#notify-me:text('Notify me')")  # type: ignore[attr-defined]
    page.wait_for_selector("#notify-me:text('Notifications on')")  # type: ignore[attr-defined]
    (project.root / "slugify.md").write_text("# Slugify\n\n`slugify(text)` makes URL slugs.\n")
    session = project.gate_session(design="slugify.md")

    shown = shown_once(page, 2)
    short = session.id[:8]
    assert {
        "title": "phasegate: slugify",
        "body": f"session {short} waits for your decision at awaiting_test_review",
    } in shown
    assert {
        "title": "phasegate: slugify",
        "body": f"session {short} asks for your decision at awaiting_test_review",
    } in shown

    page.evaluate("window.__shown[0].note.onclick()")  # type: ignore[attr-defined]
    page.wait_for_url(f"{server.url}/sessions/{session.id}")  # type: ignore[attr-defined]


def test_notify_me_can_be_switched_off(
    page: object, server: ServerProcess, project: WebEnv
) -> None:
    """Switched off again, the dashboard shows no notification for a new gate."""
    page.click("#notify-me:text('Notify me')")  # type: ignore[attr-defined]
    page.click("#notify-me:text('Notifications on')")  # type: ignore[attr-defined]
    page.wait_for_selector("#notify-me:text('Notify me')")  # type: ignore[attr-defined]
    (project.root / "quiet.md").write_text("# Quiet\n\nNothing to see.\n")
    session = project.gate_session(design="quiet.md")
    page.wait_for_selector(f"tr.session-row[data-session='{session.id}']")  # type: ignore[attr-defined]
    assert page.evaluate(SHOWN) == []  # type: ignore[attr-defined]
