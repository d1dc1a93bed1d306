"""The session page of a `spec` session shows what the designer changed between rounds."""

from __future__ import annotations

import html

from starlette.testclient import TestClient

from tests.web.conftest import WebEnv

FIRST = "# adder\n\nadd things.\n"
SECOND = "# adder\n\nadd(a, b) returns the sum of two integers.\n"


def test_a_rejected_design_shows_its_second_round_as_a_diff(
    client: TestClient, env: WebEnv
) -> None:
    """After a reject and a new draft, the design pane has round 2 against round 1."""
    designer = env.orch.add_principal("agent", "drafter", ["designer"])[0]
    task = env.orch.tasks.add_request("add two numbers", name="adder-page")
    sid = env.orch.start_session(task["id"], env.human, workflow="spec").id
    path = env.orch.get(sid).context["design_path"]
    env.orch.submit(sid, "design", designer, [{"path": path, "content": FIRST}], note="draft")
    env.orch.decide(sid, "reject", env.human, comment="say what it returns")
    env.orch.submit(sid, "design", designer, [{"path": path, "content": SECOND}], note="v2")

    page = client.get(f"/sessions/{sid}", headers=env.bearer)
    assert page.status_code == 200
    text = html.unescape(page.text)
    assert 'id="design-rounds"' in page.text and "(2 rounds)" in text
    assert "Round 2" in text and "against round 1" in text and "v2" in text
    rounds = text[text.index('id="design-rounds"') :]
    assert "add things." in rounds and "returns the sum of two integers" in rounds


def test_a_first_draft_shows_no_rounds(client: TestClient, env: WebEnv) -> None:
    """One round is the design itself: no comparison is shown."""
    designer = env.orch.add_principal("agent", "drafter-one", ["designer"])[0]
    task = env.orch.tasks.add_request("multiply two numbers", name="multiplier-page")
    sid = env.orch.start_session(task["id"], env.human, workflow="spec").id
    path = env.orch.get(sid).context["design_path"]
    env.orch.submit(sid, "design", designer, [{"path": path, "content": FIRST}])
    page = client.get(f"/sessions/{sid}", headers=env.bearer)
    assert page.status_code == 200 and 'id="design-rounds"' not in page.text
