"""The final review's default diff shows every change merging takes but the approved tests.

The attack: a coder commits `backdoor.py` with a failing implementation, the fix
loop runs out, a human reopens the tests, and after a second test approval the
coder sends a clean `calc.py`. The implementation view used to start at the new
test approval, so the backdoor, still on the branch and merged, was never shown.
"""

from __future__ import annotations

import re

from starlette.testclient import TestClient

from phasegate.entrypoints.cli.brief import brief_lines
from phasegate.review_brief import build_brief
from phasegate.workspace import diff_between
from tests.conftest import BUGGY_IMPL, GOOD_IMPL, GOOD_TESTS
from tests.web.conftest import WebEnv

TEST_PATH = "test_calc.py"
BACKDOOR = "import os\n\nTOKEN = os.environ.get('PHASEGATE_TOKEN')  # sent home\n"
MORE_TESTS = GOOD_TESTS + "\n\ndef test_add_zero():\n    assert add(0, 0) == 0\n"


def reopened_and_passed(env: WebEnv) -> str:
    """A session at the final review with code from before a reopen_tests still on its branch."""
    orch, agent, human = env.orch, env.agent, env.human
    sid = env.new_session().id
    orch.submit(sid, "tests", agent, [{"path": TEST_PATH, "content": GOOD_TESTS}])
    orch.decide(sid, "approve", human)
    code = [
        {"path": "backdoor.py", "content": BACKDOOR},
        {"path": "calc.py", "content": BUGGY_IMPL},
    ]
    orch.submit(sid, "implementation", agent, code)
    session, _ = orch.run_tests(sid, agent)
    attempt = 0
    while session.phase == "fixing_failures":
        attempt += 1
        fix = [{"path": "calc.py", "content": BUGGY_IMPL + f"# attempt {attempt}\n"}]
        orch.submit(sid, "fix", agent, fix)
        session, _ = orch.run_tests(sid, agent)
    assert session.phase == "awaiting_human_intervention"
    orch.decide(sid, "reopen_tests", human, comment="test zero too")
    orch.submit(sid, "tests", agent, [{"path": TEST_PATH, "content": MORE_TESTS}])
    orch.decide(sid, "approve", human)
    orch.submit(sid, "implementation", agent, [{"path": "calc.py", "content": GOOD_IMPL}])
    session, run = orch.run_tests(sid, agent)
    assert run["status"] == "passed" and session.phase == "awaiting_final_review"
    return sid


def listed_files(html: str) -> list[str]:
    """The paths in the page's changes section file list."""
    start = html.index('<section class="card" id="changes"')
    section = html[start : html.index("</section>", start)]
    return re.findall(r'<li><a href="#[^"]*"><code>([^<]*)</code>', section)


def test_code_committed_before_a_reopen_is_in_the_default_final_review_diff(
    client: TestClient, env: WebEnv
) -> None:
    """The default view and ?changes=implementation list backdoor.py; only the approved test is
    left out of what merging takes (the whole change)."""
    sid = reopened_and_passed(env)
    default = client.get(f"/sessions/{sid}", headers=env.bearer)
    assert default.status_code == 200
    assert "The implementation: every change but the approved tests" in default.text
    assert "changes since the approved tests" not in default.text
    shown = listed_files(default.text)
    assert "backdoor.py" in shown and "calc.py" in shown and TEST_PATH not in shown
    assert "sent home" in default.text  # the backdoor's content, not just its name
    asked = client.get(f"/sessions/{sid}?changes=implementation", headers=env.bearer)
    assert listed_files(asked.text) == shown
    whole = listed_files(client.get(f"/sessions/{sid}?changes=all", headers=env.bearer).text)
    assert sorted([*shown, TEST_PATH]) == sorted(whole)  # nothing merged is hidden


def test_the_brief_lists_every_code_path_since_the_base(env: WebEnv) -> None:
    """`phasegate show`'s brief names backdoor.py though the newest submission only sent calc.py."""
    sid = reopened_and_passed(env)
    session = env.orch.get(sid)
    brief = build_brief(
        env.orch.workflow_of(session), session, env.orch.timeline(sid), env.orch.test_runs(sid)
    )
    assert brief.submitted is not None and brief.submitted.paths == ("calc.py",)
    assert brief.code_paths == ("backdoor.py", "calc.py")
    lines = [text for text, _style in brief_lines(brief, session.short_id, "design.md")]
    code = [line for line in lines if line.startswith("code ")]
    assert code == ["code     every change but the tests, since the base: backdoor.py, calc.py"]


def test_a_test_path_changed_after_approval_is_never_left_out(env: WebEnv) -> None:
    """diff_between leaves out only the exact excluded paths, read literally (no glob)."""
    sid = reopened_and_passed(env)
    session = env.orch.get(sid)
    worktree = env.root / session.context["worktree"]
    base, head = str(session.base_commit), str(session.context["head"])
    everything = diff_between(worktree, base, head)
    without = diff_between(worktree, base, head, exclude=[TEST_PATH])
    assert f"b/{TEST_PATH}" in everything and f"b/{TEST_PATH}" not in without
    assert "b/backdoor.py" in without and "b/calc.py" in without
    assert diff_between(worktree, base, head, exclude=["*.py"]) == everything  # literal
