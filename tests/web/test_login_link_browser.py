"""A one-time login link in a real browser: it logs in once, and its code reaches no log."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from phasegate.entrypoints.web import create_app
from phasegate.entrypoints.web.login_links import issue_login_link
from phasegate.feed import EventFeed
from tests.web.conftest import WebEnv, free_port, served_project

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium at /usr/bin/chromium"),
]
playwright_api = pytest.importorskip("playwright.sync_api")


class Lines(logging.Handler):
    """Keeps every formatted record: what the server would have written to its log."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebEnv]:
    with served_project(tmp_path_factory, "login-link-browser") as env:
        yield env


@pytest.fixture(scope="module")
def server_log() -> Lines:
    return Lines()


@pytest.fixture(scope="module")
def server(project: WebEnv, server_log: Lines) -> Iterator[str]:
    """The app under uvicorn with its access log ON (every request's path and query logged)."""
    for name in ("uvicorn.access", "uvicorn.error", "phasegate"):
        logging.getLogger(name).addHandler(server_log)
    app = create_app(project.orch, EventFeed(project.orch, poll_interval=0.2), secret=b"s" * 32)
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, log_level="info", access_log=True
    )
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uv.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    uv.should_exit = True
    thread.join(10)
    for name in ("uvicorn.access", "uvicorn.error", "phasegate"):
        logging.getLogger(name).removeHandler(server_log)


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_the_link_logs_in_once_and_its_code_is_in_no_url_or_log(
    project: WebEnv, server: str, server_log: Lines, chromium: object
) -> None:
    """Opened in Chromium, the link lands logged in on the session page with a clean address
    bar; the access log shows the page but never the code; opened again it is refused."""
    session = project.gate_session()
    link = issue_login_link(project.orch, project.human, server, f"/sessions/{session.id}")
    code = link.split("#code=")[1]
    context = chromium.new_context()  # type: ignore[attr-defined]
    tab = context.new_page()
    tab.goto(link)
    tab.wait_for_url(f"{server}/sessions/{session.id}")
    assert tab.get_by_role("button", name="Approve").count() >= 1
    assert tab.get_by_text(project.human.name).count() >= 1
    assert code not in tab.url and project.human_token not in tab.url
    history = tab.evaluate("() => [location.href, document.referrer]")
    assert all(code not in entry for entry in history)

    again = context.new_page()
    again.goto(link)
    again.wait_for_selector("[role=alert]")
    assert "used already" in again.inner_text("[role=alert]")
    assert "phasegate login-link" in again.inner_text("[role=alert]")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    again.screenshot(path=str(SCREENSHOTS / "login-link-used.png"), full_page=True)
    context.close()

    visits = [line for line in server_log.lines if "/login/link" in line]
    assert len(visits) >= 4  # two GETs and two POSTs: the access log was on
    assert not any(code in line for line in server_log.lines)
