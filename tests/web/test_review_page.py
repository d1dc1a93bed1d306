"""The session page built for deciding, in Chromium at 1280 by 800, on the demo's TTLCache project.

The demo project (`phasegate.demo.project.prepare`) with its scripted agent's
files, driven through the orchestrator: a test review, a final review, a reject
and resubmission, a refused submission and an exhausted fix loop. Screenshots
go to artifacts/screenshots/.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

from phasegate.demo.agent import TEST_FILE
from phasegate.demo.project import DemoProject, agent_file, prepare
from phasegate.domain.principal import Principal
from phasegate.entrypoints.web import create_app
from phasegate.errors import SubmissionRefused
from phasegate.feed import EventFeed
from tests.web.conftest import free_port, module_audit_key

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
TWO_SCREENS = 1600  # px: two 800 px windows

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="browser tests need Debian's Chromium at /usr/bin/chromium "
        "(apt-get install -y chromium)",
    ),
]
playwright_api = pytest.importorskip("playwright.sync_api")

TESTS = agent_file("test_ttl_cache.py")
EXTRA_TEST = (
    "\n\ndef test_capacity_two_keeps_two(clock):\n    assert len(TTLCache(2, 10.0, clock)) == 0\n"
)


@dataclass
class Demo:
    project: DemoProject
    human: Principal
    agent: Principal
    url: str

    def at_test_review(self, tests: str = TESTS) -> str:
        """A new session on the demo design whose tests wait for review (as the demo agent's)."""
        orch = self.project.orch
        sid = orch.start_session("design.md", self.human, again=True).id
        orch.submit(
            sid,
            "tests",
            self.agent,
            [{"path": TEST_FILE, "content": tests}],
            note="16 tests from design.md: validation, LRU order, expiry exactly at ttl, purge.",
        )
        orch.request_approval(sid, self.agent, "Tests cover every rule; all fail on the stub.")
        return sid

    def implement(self, sid: str, buggy: bool = True) -> None:
        """Submit the demo's implementation (buggy first) and run the tests."""
        name = "ttl_cache_buggy.py" if buggy else "ttl_cache_fixed.py"
        self.project.orch.submit(
            sid,
            "implementation",
            self.agent,
            [{"path": "ttl_cache.py", "content": agent_file(name)}],
        )
        self.project.orch.run_tests(sid, self.agent)

    def fix(self, sid: str, name: str = "ttl_cache_fixed.py") -> str:
        """Submit a fix and run the tests; return the phase the session is in after."""
        files = [{"path": "ttl_cache.py", "content": agent_file(name) + f"# {time.time()}\n"}]
        self.project.orch.submit(sid, "fix", self.agent, files, note="expiry boundary: >=")
        session, _ = self.project.orch.run_tests(sid, self.agent)
        return session.phase


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """The demo project, its reviewer and agent, and the dashboard served on a free port."""
    config = tmp_path_factory.mktemp("config")
    saved = os.environ.get("PHASEGATE_CONFIG_DIR")
    os.environ["PHASEGATE_CONFIG_DIR"] = str(config)  # prepare() keeps the reviewer's token there
    with module_audit_key():
        project = prepare(tmp_path_factory.mktemp("review") / "demo")
        orch = project.orch
        human, agent = (
            orch.authenticate(project.human_token),
            orch.authenticate(project.agent_token),
        )
        app = create_app(orch, EventFeed(orch, poll_interval=0.2), secret=b"test-secret")
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        yield Demo(project, human, agent, f"http://127.0.0.1:{port}")
        server.should_exit = True
        thread.join(10)
        orch.close()
    if saved is None:
        os.environ.pop("PHASEGATE_CONFIG_DIR", None)
    else:
        os.environ["PHASEGATE_CONFIG_DIR"] = saved


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(chromium: object, demo: Demo) -> Iterator[object]:
    """A reviewer logged in through the form, in a 1280 by 800 window."""
    context = chromium.new_context(viewport={"width": 1280, "height": 800})  # type: ignore[attr-defined]
    tab = context.new_page()
    tab.goto(f"{demo.url}/login")
    tab.fill("input[name=token]", demo.project.human_token)
    tab.click("button[type=submit]")
    tab.wait_for_url(f"{demo.url}/")
    yield tab
    context.close()


def open_session(page: object, demo: Demo, sid: str, query: str = "") -> None:
    page.goto(f"{demo.url}/sessions/{sid}{query}")  # type: ignore[attr-defined]
    page.wait_for_selector("#live-status.on")  # type: ignore[attr-defined]


def height(page: object) -> int:
    return int(page.evaluate("document.body.scrollHeight"))  # type: ignore[attr-defined]


def precedes(page: object, first: str, second: str) -> bool:
    """Whether the element `first` comes before `second` in the document."""
    script = (
        "([a, b]) => !!(document.querySelector(a).compareDocumentPosition("
        "document.querySelector(b)) & Node.DOCUMENT_POSITION_FOLLOWING)"
    )
    return bool(page.evaluate(script, [first, second]))  # type: ignore[attr-defined]


def shot(page: object, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)  # type: ignore[attr-defined]


def style(page: object, selector: str, prop: str) -> str:
    script = f"getComputedStyle(document.querySelector({selector!r})).{prop}"
    return str(page.evaluate(script))  # type: ignore[attr-defined]


def test_test_review_page_leads_with_the_brief_and_fits_two_screens(
    page: object, demo: Demo
) -> None:
    """The demo's test review: brief first, design beside tests, 16 identical failures as one
    expected group, a row per test, the sticky decision bar after the evidence, ≤ 1,600 px."""
    sid = demo.at_test_review()
    open_session(page, demo, sid)
    assert page.evaluate("document.querySelector('main .card').id") == "brief"  # type: ignore[attr-defined]
    brief = page.inner_text("#brief")  # type: ignore[attr-defined]
    assert "Are these the right tests for the design?" in brief
    assert "Approving locks these tests" in brief
    assert f"submitted by {demo.agent.name} (tester)" in brief
    assert "16 tests from design.md" in brief and "Tests cover every rule" in brief
    assert "16 of 16 tests failed, as expected before any implementation" in brief
    assert "First decision at this gate" in brief

    pair = page.evaluate(  # type: ignore[attr-defined]
        "['#design', '#tests'].map(s => document.querySelector(s).getBoundingClientRect().top)"
    )
    assert abs(pair[0] - pair[1]) < 2  # the design beside the tests
    groups = page.locator("#failure-groups .group")  # type: ignore[attr-defined]
    assert groups.count() == 1 and groups.first.get_attribute("data-count") == "16"
    assert "group-expected" in (groups.first.get_attribute("class") or "")
    assert "16 tests failed with NotImplementedError" in groups.first.inner_text()
    assert page.locator("#failure-groups .group pre").count() == 1  # type: ignore[attr-defined]
    assert "shown once for 16 identical failures" in groups.first.inner_text()
    assert page.locator("#test-table tbody tr").count() == 16  # type: ignore[attr-defined]

    assert precedes(page, "#tests", "#decide") and precedes(page, "#test-runs", "#decide")
    assert precedes(page, "#decide", "#timeline")
    assert style(page, "#decide", "position") == "sticky"
    assert page.locator("#workflow[open]").count() == 0  # type: ignore[attr-defined]
    assert height(page) <= TWO_SCREENS, height(page)
    shot(page, "review-test-review.png")


def test_a_decision_is_confirmed_and_the_final_review_shows_the_implementation(
    page: object, demo: Demo
) -> None:
    """Approving shows a confirmation read from the audit trail; at the final review the
    implementation is a file list and highlighted per-file diffs, and the page fits otherwise."""
    sid = demo.at_test_review()
    open_session(page, demo, sid)
    page.fill("#comment", "Covers the design.")  # type: ignore[attr-defined]
    page.click("button[value=approve]")  # type: ignore[attr-defined]
    confirmation = page.locator("#confirmation")  # type: ignore[attr-defined]
    confirmation.wait_for()
    text = confirmation.inner_text()
    assert "approved the session at awaiting test review" in text
    assert "generating implementation" in text and "event #" in text
    shot(page, "review-confirmation.png")

    demo.implement(sid)
    assert demo.fix(sid) == "awaiting_final_review"
    demo.project.orch.request_approval(sid, demo.agent, "All 16 pass; one fix.")
    open_session(page, demo, sid)
    brief = page.inner_text("#brief")  # type: ignore[attr-defined]
    assert "Is this implementation what the design asked for?" in brief
    assert "all 16 tests passed" in brief
    changes = page.locator("#changes")  # type: ignore[attr-defined]
    assert "The implementation: every change but the approved tests" in changes.inner_text()
    files = page.locator("#file-list li").all_inner_texts()  # type: ignore[attr-defined]
    assert len(files) == 1 and files[0].startswith("ttl_cache.py")  # tests are not re-shown
    assert page.locator(".file-diff .hl").count() == 1  # type: ignore[attr-defined]
    assert precedes(page, "#changes", "#decide") and precedes(page, "#test-runs", "#decide")
    rows = page.locator("#test-table tbody tr.outcome-passed").count()  # type: ignore[attr-defined]
    assert rows == 16
    diff = page.evaluate("document.querySelector('#changes').offsetHeight")  # type: ignore[attr-defined]
    assert height(page) - diff <= TWO_SCREENS, (height(page), diff)
    shot(page, "review-final-review.png")


def test_after_a_reject_and_resubmit_the_page_shows_what_changed_since(
    page: object, demo: Demo
) -> None:
    """Round 2 names the reject and its comment, and the since-review diff holds the new test."""
    sid = demo.at_test_review()
    open_session(page, demo, sid)
    page.fill("#comment", "Also cover a capacity of two.")  # type: ignore[attr-defined]
    page.click("button[value=reject]")  # type: ignore[attr-defined]
    page.locator("#confirmation").wait_for()  # type: ignore[attr-defined]
    demo.project.orch.submit(
        sid, "tests", demo.agent, [{"path": TEST_FILE, "content": TESTS + EXTRA_TEST}]
    )
    open_session(page, demo, sid)
    since = page.inner_text("#since-last")  # type: ignore[attr-defined]
    assert "reject by" in since and "Also cover a capacity of two." in since
    assert "submit_tests" in since and "(before: 16 of 16 tests failed)" in since
    assert "round 2" in page.inner_text("#brief .meta")  # type: ignore[attr-defined]
    rounds = page.inner_text("#rounds")  # type: ignore[attr-defined]
    assert "Round 1" in rounds and "reject by" in rounds and "Round 2" in rounds

    page.click("#since-last a:text('See the diff since that review')")  # type: ignore[attr-defined]
    page.wait_for_selector("#changes[data-mode=since-review]")  # type: ignore[attr-defined]
    heading = page.inner_text("#changes h2")  # type: ignore[attr-defined]
    assert "Changes since the reject at awaiting_test_review" in heading
    files = page.locator("#file-list li").all_inner_texts()  # type: ignore[attr-defined]
    assert len(files) == 1 and files[0].startswith(TEST_FILE) and "+4" in files[0]
    assert "test_capacity_two_keeps_two" in page.inner_text(".file-diff")  # type: ignore[attr-defined]
    assert "def test_put_then_get" not in page.inner_text(".file-diff")  # type: ignore[attr-defined]
    shot(page, "review-since-last-review.png")


def test_since_the_last_review_without_a_review_shows_the_whole_change_and_says_so(
    page: object, demo: Demo
) -> None:
    """Asked for changes since a review no one made, the page shows everything and says why."""
    sid = demo.at_test_review()
    open_session(page, demo, sid, "?changes=since-review")
    assert "No human has reviewed this session yet: this is the whole change." in page.inner_text(
        "#changes-note"
    )  # type: ignore[attr-defined]
    files = page.locator("#file-list li").all_inner_texts()  # type: ignore[attr-defined]
    assert [f.split()[0] for f in files] == [TEST_FILE]


def test_a_refused_attempt_shows_in_the_brief_and_the_timeline(page: object, demo: Demo) -> None:
    """A coder that touched a locked test: a warning in the brief, a red REFUSED entry."""
    sid = demo.at_test_review()
    demo.project.orch.decide(sid, "approve", demo.human)
    hack = [{"path": TEST_FILE, "content": "def test_nothing():\n    pass\n"}]
    with pytest.raises(SubmissionRefused):
        demo.project.orch.submit(sid, "implementation", demo.agent, hack)
    demo.implement(sid, buggy=False)
    open_session(page, demo, sid)
    assert "1 refused submission" in page.inner_text("#warnings")  # type: ignore[attr-defined]
    refused = page.locator("#timeline .ev-refused")  # type: ignore[attr-defined]
    assert refused.count() == 1
    assert "REFUSED submit_implementation: touched a locked test" in refused.inner_text()
    assert "refused" in page.inner_text("#rounds")  # type: ignore[attr-defined]
    shot(page, "review-refused-attempt.png")


def test_an_escalation_looks_different_from_a_routine_review(page: object, demo: Demo) -> None:
    """After the fix loop gives up, the brief, its label and the phase badge take the alarm
    colour a routine review does not, the bar offers retry instead of approve, and the list
    marks the session as an escalation."""
    review = demo.at_test_review()
    open_session(page, demo, review)
    calm = [style(page, s, p) for s, p in BRIEF_STYLES]

    sid = demo.at_test_review()
    demo.project.orch.decide(sid, "approve", demo.human)
    demo.implement(sid)
    phase = demo.project.orch.get(sid).phase
    while phase == "fixing_failures":
        phase = demo.fix(sid, "ttl_cache_buggy.py")
    assert phase == "awaiting_human_intervention"
    open_session(page, demo, sid)
    alarm = [style(page, s, p) for s, p in BRIEF_STYLES]
    assert all(a != c for a, c in zip(alarm, calm, strict=True)), (alarm, calm)
    assert page.inner_text("#brief .kind-label") == "ESCALATION"  # type: ignore[attr-defined]
    assert "used all its attempts" in page.inner_text("#brief")  # type: ignore[attr-defined]
    buttons = page.locator("#decide .buttons button").all_inner_texts()  # type: ignore[attr-defined]
    assert "Retry with guidance" in buttons and "Approve" not in buttons
    shot(page, "review-escalation.png")

    page.goto(f"{demo.url}/")  # type: ignore[attr-defined]
    row = "tr.session-row[data-session='{}'] .badge-escalation"
    assert page.locator(row.format(sid)).count() == 1  # type: ignore[attr-defined]
    assert page.locator(row.format(review)).count() == 0  # type: ignore[attr-defined]


#: What sets an escalation apart: the brief's edge and ground, its label, the phase badge.
BRIEF_STYLES = (
    ("#brief", "borderLeftColor"),
    ("#brief", "backgroundColor"),
    ("#brief .kind-label", "backgroundColor"),
    ("#phase", "backgroundColor"),
)
