"""The dashboard's HTML: list order, the session page's evidence, decisions, and escaping."""

from __future__ import annotations

import re

from starlette.testclient import TestClient

from tests.web.conftest import WebEnv
from tests.web.test_api import snapshot

HOSTILE_DESIGN = """# Evil design

<script>alert("design")</script>
<img src=x onerror="alert('img')">
<b>bold html</b> and [a link](javascript:alert('link'))
"""


def section_ids(html: str, key: str) -> list[str]:
    """The session ids listed in one section of the list page, in order."""
    part = html.split(f'id="section-{key}"', 1)[1].split("</section>", 1)[0]
    return re.findall(r'data-session="([0-9a-f]+)"', part)


def test_list_shows_gate_sessions_first(client: TestClient, env: WebEnv) -> None:
    """Needs-a-human comes before agent work, which comes before finished sessions."""
    waiting = env.gate_session()
    working = env.new_session()
    done = env.new_session()
    env.orch.decide(done.id, "cancel", env.human)
    html = client.get("/", headers=env.bearer).text
    assert (
        html.index('id="section-human"')
        < html.index('id="section-agents"')
        < html.index('id="section-finished"')
    )
    assert waiting.id in section_ids(html, "human")
    assert working.id in section_ids(html, "agents")
    assert done.id in section_ids(html, "finished")


def test_list_fragment_is_the_sections_alone(client: TestClient, env: WebEnv) -> None:
    """The live fragment carries the sections without the page around them."""
    html = client.get("/fragments/sessions", headers=env.bearer).text
    assert 'id="section-human"' in html and "<html" not in html


def test_session_page_shows_the_evidence(client: TestClient, env: WebEnv) -> None:
    """At the gate the page shows the tests, the red run's failures, the message, the diagram."""
    session = env.gate_session()
    response = client.get(f"/sessions/{session.id}", headers=env.bearer)
    html = response.text
    assert response.status_code == 200
    assert 'class="hl"' in html and "test_add_negative" in html  # highlighted test file
    assert "red run" in html and "NotImplementedError" in html
    assert "Two tests for add; both fail now." in html
    assert "I covered positive and negative sums." in html
    assert 'class="p current" data-phase="awaiting_test_review"' in html
    assert f'name="expected_version" value="{session.version}"' in html
    assert ">Approve</button>" in html and ">Reject</button>" in html


def test_pages_send_a_strict_content_security_policy(client: TestClient, env: WebEnv) -> None:
    """Pages forbid inline and foreign scripts, so injected markup could not run anyway."""
    headers = client.get("/", headers=env.bearer).headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"


def test_hostile_design_is_shown_as_text(client: TestClient, env: WebEnv) -> None:
    """Script tags, HTML and javascript: links in a design are escaped, never interpreted."""
    (env.root / "evil.md").write_text(HOSTILE_DESIGN)
    session = env.new_session("evil.md")
    html = client.get(f"/sessions/{session.id}", headers=env.bearer).text
    design = html.split('id="design"', 1)[1]
    assert "<script>alert" not in html and "<img src=x" not in html and "<b>bold" not in html
    assert "&lt;script&gt;alert(&quot;design&quot;)&lt;/script&gt;" in design
    assert 'href="javascript:' not in html


def test_form_approval_moves_the_session_on(client: TestClient, env: WebEnv) -> None:
    """Approving from the page redirects back and the page shows the next phase."""
    session = env.gate_session()
    response = client.post(
        f"/sessions/{session.id}/decide",
        headers=env.bearer,
        data={"action": "approve", "comment": "ship it", "expected_version": str(session.version)},
    )
    assert response.status_code == 200  # followed the 303 back to the page
    assert 'id="phase">generating_implementation<' in response.text
    assert "ship it" in response.text  # in the timeline


def test_stale_form_decision_explains_itself(client: TestClient, env: WebEnv) -> None:
    """A decision on a version the session has left is a 409 page that says what happened."""
    session = env.gate_session()
    env.orch.decide(session.id, "reject", env.human, comment="needs more")
    before = snapshot(env)
    response = client.post(
        f"/sessions/{session.id}/decide",
        headers=env.bearer,
        data={"action": "approve", "expected_version": str(session.version)},
    )
    assert response.status_code == 409
    assert 'id="problem"' in response.text and "changed since you looked" in response.text
    assert 'id="phase">generating_tests<' in response.text
    assert snapshot(env) == before


def test_form_with_bad_fields_is_a_4xx_page(client: TestClient, env: WebEnv) -> None:
    """An unknown action or a missing version is a 422 page; nothing changes."""
    session = env.new_session()
    before = snapshot(env)
    url = f"/sessions/{session.id}/decide"
    bad = client.post(url, headers=env.bearer, data={"action": "explode", "expected_version": "1"})
    missing = client.post(url, headers=env.bearer, data={"action": "pause"})
    assert bad.status_code == missing.status_code == 422
    assert "unknown action" in bad.text and "version you saw" in missing.text
    assert "<title>Can't do that · phasegate</title>" in bad.text  # words, not `invalid_input`
    assert snapshot(env) == before


def test_unknown_session_page_is_404(client: TestClient, env: WebEnv) -> None:
    """A session page for an id that matches nothing is a 404 page."""
    response = client.get("/sessions/0123456789", headers=env.bearer)
    assert response.status_code == 404 and "phasegate ls" in response.text
