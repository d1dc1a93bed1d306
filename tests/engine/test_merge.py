"""Closing the loop: merge, diff and export a finished session, with real git, on both databases."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from engine_helpers import BUGGY_IMPL, GOOD_IMPL, GOOD_TESTS, event_count, phasegate, start
from rich.console import Console
from starlette.testclient import TestClient
from tests.conftest import git as run_git

from phasegate import merging
from phasegate.domain.principal import Principal
from phasegate.domain.session import Session
from phasegate.entrypoints.cli import merging as cli_merging
from phasegate.entrypoints.web import create_app
from phasegate.errors import Conflict, InvalidInput, InvalidTransition, PermissionDenied
from phasegate.feed import EventFeed
from phasegate.orchestrator import Orchestrator

DOCUMENTED_IMPL = GOOD_IMPL.replace(":\n", ':\n    """The sum."""\n', 1)


def git(cwd: Path, *args: str) -> str:
    """Run git with a throwaway identity; its output without the trailing newline."""
    return run_git(cwd, *args).rstrip("\n")


@pytest.fixture
def alice(orch: Orchestrator, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Principal:
    """The project's human, whose token the in-process CLI uses too."""
    principal, token = orch.add_principal("human", "alice")
    monkeypatch.setenv("PHASEGATE_TOKEN", token)
    monkeypatch.setenv("PHASEGATE_DATABASE_URL", db_url)
    return principal


def cli(orch: Orchestrator, *args: str) -> tuple[int, str, str]:
    return phasegate("--project", str(orch.project.root), *args)


def reviewed(orch: Orchestrator, human: Principal, agent: Principal) -> Session:
    """A session whose buggy implementation was fixed once, now at the final review."""
    sid = start(orch, human).id
    orch.submit(sid, "tests", agent, [{"path": "test_calc.py", "content": GOOD_TESTS}])
    orch.decide(sid, "approve", human)
    orch.submit(sid, "implementation", agent, [{"path": "calc.py", "content": BUGGY_IMPL}])
    orch.run_tests(sid, agent)
    orch.submit(sid, "fix", agent, [{"path": "calc.py", "content": GOOD_IMPL}])
    session, _ = orch.run_tests(sid, agent)
    assert session.phase == "awaiting_final_review"
    return session


def completed(orch: Orchestrator, human: Principal, agent: Principal) -> Session:
    """A session approved at the final review, its branch not merged."""
    session = orch.decide(reviewed(orch, human, agent).id, "approve", human)
    assert session.phase == "completed"
    return session


def commit_on_main(orch: Orchestrator, path: str, content: str) -> str:
    """Someone moves main after the session started; returns main's new tip."""
    root = orch.project.root
    (root / path).write_text(content)
    git(root, "add", path)
    git(root, "commit", "-qm", f"change {path} on main")
    return tip(orch, "main")


def tip(orch: Orchestrator, branch: str) -> str:
    return git(orch.project.root, "rev-parse", f"refs/heads/{branch}")


def parents(orch: Orchestrator, commit: str) -> list[str]:
    return git(orch.project.root, "rev-list", "--parents", "-n1", commit).split()[1:]


def assert_one_line(result: tuple[int, str, str], *needles: str) -> str:
    code, out, err = result
    assert code == 1, (out, err)
    [line] = err.strip().splitlines()
    assert line.startswith("phasegate: ")
    for needle in needles:
        assert needle in line, line
    return line


def assert_nothing_merged(orch: Orchestrator, sid: str, main_tip: str, events: int) -> None:
    """main, the checkout and the session's record are as they were; no merge is half done."""
    root = orch.project.root
    assert tip(orch, "main") == main_tip
    assert git(root, "status", "--porcelain", "--untracked-files=no") == ""
    git_dir = Path(git(root, "rev-parse", "--absolute-git-dir"))
    assert not (git_dir / "MERGE_HEAD").exists()
    assert event_count(orch, sid) == events
    assert "merged" not in orch.get(sid).context


def test_a_clean_merge_makes_a_merge_commit_on_the_branch_it_started_from(
    orch: Orchestrator, alice: Principal, agent: Principal
) -> None:
    """Default merge: a --no-ff commit on main, the checkout updated, a chained `merged` event."""
    session = completed(orch, alice, agent)
    root, head = orch.project.root, session.context["head"]
    assert session.context["base_branch"] == "main"

    code, out, err = cli(orch, "merge", session.short_id)
    assert code == 0, err
    merge_commit = tip(orch, "main")
    assert parents(orch, merge_commit) == [session.base_commit, head]
    assert f"into main at {merge_commit[:10]} (merge commit" in out
    message = git(root, "log", "-1", "--format=%B", merge_commit)
    assert f"Merge phasegate session {session.short_id}: design" in message
    assert f"Phasegate-Session: {session.id}" in message
    assert (root / "calc.py").read_text() == GOOD_IMPL  # the checkout moved with main
    assert (root / "test_calc.py").read_text() == GOOD_TESTS

    [event] = [e for e in orch.timeline(session.id) if e["action"] == "merged"]
    assert event["actor_kind"] == "human" and event["actor_id"] == "alice"
    assert event["payload"] | {"note": ""} == {
        "target": "main",
        "mode": "merge",
        "commit": merge_commit,
        "previous": session.base_commit,
        "base_moved": False,
        "head": head,
        "note": "",
    }
    assert "merged" in cli(orch, "log", session.short_id)[1]
    assert cli(orch, "audit", "verify", session.short_id)[0] == 0
    assert all(r.ok for r in orch.verify_audit(session.id))
    shown = cli(orch, "show", session.short_id)[1]
    assert f"merged   into main at {merge_commit[:10]}" in shown
    assert "phasegate merge" not in shown

    events = event_count(orch, session.id)
    assert_one_line(
        cli(orch, "merge", session.short_id), "already merged into main", merge_commit[:10]
    )
    assert (tip(orch, "main"), event_count(orch, session.id)) == (merge_commit, events)


def test_squash_makes_one_commit_with_the_whole_change(
    orch: Orchestrator, alice: Principal, agent: Principal
) -> None:
    """--squash: one new commit on main, its only parent the base, its tree the final one."""
    session = completed(orch, alice, agent)
    root = orch.project.root
    code, out, err = cli(orch, "merge", session.short_id, "--squash")
    assert code == 0, err
    squashed = tip(orch, "main")
    assert parents(orch, squashed) == [session.base_commit]
    assert git(root, "rev-parse", f"{squashed}^{{tree}}") == git(
        root, "rev-parse", f"{session.context['head']}^{{tree}}"
    )
    assert "squashed commit" in out
    assert orch.get(session.id).context["merged"]["mode"] == "squash"


def test_ff_only_fast_forwards_and_refuses_when_it_cannot(
    orch: Orchestrator, alice: Principal, agent: Principal
) -> None:
    """--ff-only moves main to the final commit; once main has its own commit, it is refused."""
    session = completed(orch, alice, agent)
    assert cli(orch, "merge", session.short_id, "--ff-only")[0] == 0
    assert tip(orch, "main") == session.context["head"]

    other = completed_again(orch, alice, agent)
    moved = commit_on_main(orch, "NOTES.md", "notes\n")
    events = event_count(orch, other.id)
    assert_one_line(
        cli(orch, "merge", other.short_id, "--ff-only", "--allow-moved-base"),
        "can't be fast-forwarded",
        "merge without --ff-only",
    )
    assert_nothing_merged(orch, other.id, moved, events)


def completed_again(orch: Orchestrator, human: Principal, agent: Principal) -> Session:
    """Another completed session on the same task, started from main as it is now."""
    sid = start(orch, human).id
    orch.submit(sid, "tests", agent, [{"path": "test_more.py", "content": GOOD_TESTS}])
    orch.decide(sid, "approve", human)
    orch.submit(sid, "implementation", agent, [{"path": "calc.py", "content": DOCUMENTED_IMPL}])
    orch.run_tests(sid, agent)
    return orch.decide(sid, "approve", human)


def test_a_conflict_is_refused_and_leaves_everything_as_it_was(
    orch: Orchestrator, alice: Principal, agent: Principal
) -> None:
    """A merge that conflicts names the paths; main, its files and the record are untouched."""
    session = completed(orch, alice, agent)
    moved = commit_on_main(orch, "calc.py", "def add(a, b):\n    return b + a  # main's own\n")
    events = event_count(orch, session.id)
    assert_one_line(
        cli(orch, "merge", session.short_id, "--allow-moved-base"), "conflict", "calc.py"
    )
    assert_nothing_merged(orch, session.id, moved, events)
    assert "main's own" in (orch.project.root / "calc.py").read_text()


def test_a_moved_base_is_refused_unless_allowed(
    orch: Orchestrator, alice: Principal, agent: Principal
) -> None:
    """main moved since the start: refused; with --allow-moved-base, a real merge of both."""
    session = completed(orch, alice, agent)
    moved = commit_on_main(orch, "NOTES.md", "notes\n")
    events = event_count(orch, session.id)
    assert_one_line(
        cli(orch, "merge", session.short_id),
        "main moved since the session started",
        "--allow-moved-base",
    )
    assert_nothing_merged(orch, session.id, moved, events)

    assert cli(orch, "merge", session.short_id, "--allow-moved-base")[0] == 0
    merged = tip(orch, "main")
    assert parents(orch, merged) == [moved, session.context["head"]]
    assert orch.get(session.id).context["merged"]["base_moved"] is True
    root = orch.project.root
    assert (root / "NOTES.md").exists() and (root / "calc.py").read_text() == GOOD_IMPL


def test_a_branch_not_checked_out_moves_without_touching_the_working_tree(
    orch: Orchestrator, alice: Principal, agent: Principal
) -> None:
    """--into a branch nobody has checked out: only its ref moves; main's checkout stays put."""
    session = completed(orch, alice, agent)
    root = orch.project.root
    git(root, "branch", "release", session.base_commit)
    assert cli(orch, "merge", session.short_id, "--into", "release")[0] == 0
    assert parents(orch, tip(orch, "release")) == [session.base_commit, session.context["head"]]
    assert tip(orch, "main") == session.base_commit
    assert (root / "calc.py").read_text() != GOOD_IMPL
    assert git(root, "status", "--porcelain") == ""


@pytest.mark.parametrize(
    ("setup", "needles"),
    [
        ("dirty", ("uncommitted changes to calc.py", "commit or stash")),
        ("untracked", ("untracked files (test_calc.py)",)),
    ],
)
def test_a_checkout_that_is_not_clean_is_refused(
    orch: Orchestrator, alice: Principal, agent: Principal, setup: str, needles: tuple[str, ...]
) -> None:
    """Uncommitted changes, or an untracked file the merge would overwrite: nothing moves."""
    session = completed(orch, alice, agent)
    root = orch.project.root
    target = root / ("calc.py" if setup == "dirty" else "test_calc.py")
    target.write_text("# mine, not committed\n")
    events = event_count(orch, session.id)
    assert_one_line(cli(orch, "merge", session.short_id), "checked out in", *needles)
    assert target.read_text() == "# mine, not committed\n"
    assert tip(orch, "main") == session.base_commit
    assert event_count(orch, session.id) == events


def test_what_cannot_be_merged_is_refused_in_one_line(
    orch: Orchestrator, alice: Principal, agent: Principal
) -> None:
    """A running session names its phase; an agent may not merge; a missing target is named."""
    sid = start(orch, alice).id
    orch.submit(sid, "tests", agent, [{"path": "test_calc.py", "content": GOOD_TESTS}])
    orch.decide(sid, "approve", alice)
    orch.submit(sid, "implementation", agent, [{"path": "calc.py", "content": GOOD_IMPL}])
    assert_one_line(cli(orch, "merge", sid[:8]), f"session {sid[:8]} is in running_tests")
    with pytest.raises(InvalidTransition) as refused:
        orch.merge(sid, alice)
    assert refused.value.phase == "running_tests"

    orch.run_tests(sid, agent)
    orch.decide(sid, "approve", alice)
    with pytest.raises(PermissionDenied):
        orch.merge(sid, agent)
    assert_one_line(cli(orch, "merge", sid[:8], "--into", "nope"), "no branch 'nope'")
    assert_one_line(cli(orch, "merge", sid[:8], "--squash", "--ff-only"), "exclude each other")
    assert tip(orch, "main") == orch.get(sid).base_commit


def test_a_session_started_on_a_detached_head_needs_into(
    orch: Orchestrator, alice: Principal, agent: Principal
) -> None:
    """No branch to return to: --into is required, and then the merge goes there."""
    git(orch.project.root, "checkout", "-q", "--detach")
    session = completed(orch, alice, agent)
    assert session.context["base_branch"] is None
    with pytest.raises(InvalidInput, match=r"detached HEAD.*--into BRANCH"):
        orch.merge(session.id, alice)
    merged = orch.merge(session.id, alice, into="main")
    assert merged.context["merged"]["target"] == "main"
    assert parents(orch, tip(orch, "main"))[1] == session.context["head"]


def test_unknown_sessions_are_one_line_errors_that_write_nothing(
    orch: Orchestrator, alice: Principal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """merge, diff and export of a session that doesn't exist: one line, no file, no ref moved."""
    monkeypatch.chdir(tmp_path)
    before = tip(orch, "main")
    for command in ("merge", "diff", "export"):
        assert_one_line(cli(orch, command, "abcdef12"), "no session 'abcdef12'")
    assert list(tmp_path.glob("*.patch")) == []
    assert tip(orch, "main") == before


def test_export_writes_a_patch_git_am_applies_at_the_base(
    orch: Orchestrator,
    alice: Principal,
    agent: Principal,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The patch file rebuilds the final tree on a fresh clone; it is never overwritten silently."""
    session = completed(orch, alice, agent)
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(orch, "export", session.short_id)
    assert code == 0, err
    patch = tmp_path / f"phasegate-{session.short_id}-design.patch"
    assert f"wrote {patch.name}: 3 commits" in out

    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(orch.project.root), str(clone))
    git(clone, "checkout", "-q", session.base_commit)
    git(clone, "am", "-q", str(patch))
    assert git(clone, "rev-parse", "HEAD^{tree}") == git(
        orch.project.root, "rev-parse", f"{session.context['head']}^{{tree}}"
    )

    patch.write_text("keep me\n")
    assert_one_line(cli(orch, "export", session.short_id), "already exists", "--force")
    assert patch.read_text() == "keep me\n"
    assert cli(orch, "export", session.short_id, "--force")[0] == 0
    assert patch.read_text().startswith("From ")
    assert list(tmp_path.glob(".*.tmp")) == []


def test_diff_shows_the_change_and_what_changed_since_the_last_review(
    orch: Orchestrator, alice: Principal, agent: Principal
) -> None:
    """diff: base..head as plain text when piped; --since-review: only what followed a decision."""
    session = reviewed(orch, alice, agent)
    code, out, err = cli(orch, "diff", session.short_id)
    assert code == 0, err
    assert "+    return a + b" in out and "+++ b/test_calc.py" in out
    assert "\x1b[" not in out  # piped: no colour
    assert err.startswith(f"diff {session.base_commit[:10]}..") and "the base commit" in err

    code, out, err = cli(orch, "diff", session.short_id, "--since-review")
    tests_commit = session.context["tests"]["commit"]
    assert f"diff {tests_commit[:10]}.." in err and "the approve at awaiting_test_review" in err
    assert "+    return a + b" in out and "test_calc.py" not in out

    orch.decide(session.id, "reject", alice, comment="document it")
    hostile = DOCUMENTED_IMPL + "# \x1b[2J\n"  # an escape sequence that would clear the screen
    orch.submit(session.id, "fix", agent, [{"path": "calc.py", "content": hostile}])
    orch.run_tests(session.id, agent)
    code, out, err = cli(orch, "diff", session.short_id, "--since-review")
    assert "the reject at awaiting_final_review" in err
    added = [line for line in out.splitlines() if line.startswith("+") and "+++" not in line]
    assert added == ['+    """The sum."""', "+# \x1b[2J"]  # piped: the exact change


def test_diff_on_a_terminal_is_coloured_and_shows_control_characters_escaped(
    orch: Orchestrator, alice: Principal, agent: Principal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a tty, added lines are green, and an agent's escape sequence is printed as text."""
    session = start(orch, alice)
    hostile = GOOD_TESTS + "# \x1b[2J\n"
    orch.submit(session.id, "tests", agent, [{"path": "test_calc.py", "content": hostile}])
    terminal = Console(file=io.StringIO(), force_terminal=True, color_system="standard")
    monkeypatch.setattr(cli_merging, "out", terminal)
    assert cli(orch, "diff", session.short_id)[0] == 0
    shown = terminal.file.getvalue()  # type: ignore[attr-defined]
    assert "\x1b[32m+# \\x1b[2J" in shown and "\x1b[2J" not in shown


def test_show_and_the_session_page_name_the_final_commit_the_fixes_and_how_to_merge(
    orch: Orchestrator, alice: Principal, agent: Principal
) -> None:
    """show and the dashboard give the final commit, fixes, merge command, then the merge."""
    session = completed(orch, alice, agent)
    head, [fix] = session.context["head"], session.context["fixes"]
    code, out, err = cli(orch, "show", session.short_id)
    assert code == 0, err
    assert f"final          {head[:10]}" in out
    assert f"fix            {fix['commit'][:10]}  calc.py" in out
    assert f"merge    phasegate merge {session.short_id}" in out
    assert f"git checkout {session.branch}" in out

    app = create_app(orch, EventFeed(orch), allowed_hosts=["testserver"], secret=b"test")
    bearer = {"Authorization": f"Bearer {os.environ['PHASEGATE_TOKEN']}"}
    with TestClient(app) as client:
        page = client.get(f"/sessions/{session.id}", headers=bearer).text
        assert f"Final commit <small><code>{head[:10]}</code>" in page
        assert f"<code>{fix['commit'][:10]}</code> calc.py" in page
        assert f"<code>phasegate merge {session.short_id}</code>" in page
        merged = orch.merge(session.id, alice).context["merged"]["commit"]
        page = client.get(f"/sessions/{session.id}", headers=bearer).text
        assert f"Merged into <code>main</code> at <code>{merged[:10]}</code>" in page
        assert "phasegate merge" not in page


def test_a_lost_race_for_the_target_is_a_conflict(
    orch: Orchestrator, alice: Principal, agent: Principal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the target moves between the check and the merge, the ref swap refuses it."""
    session = completed(orch, alice, agent)
    git(orch.project.root, "branch", "release", session.base_commit)
    elsewhere = commit_on_main(orch, "NOTES.md", "notes\n")
    real_tip = merging.branch_tip

    def tip_then_move(repo: Path, branch: str) -> str | None:
        seen = real_tip(repo, branch)
        git(repo, "update-ref", f"refs/heads/{branch}", elsewhere)  # someone else was faster
        return seen

    monkeypatch.setattr(merging, "branch_tip", tip_then_move)
    events = event_count(orch, session.id)
    with pytest.raises(Conflict, match="release moved while it was being merged"):
        orch.merge(session.id, alice, into="release")
    assert tip(orch, "release") == elsewhere
    assert event_count(orch, session.id) == events


def test_diff_since_review_with_no_review_yet_shows_the_whole_change(
    orch: Orchestrator, alice: Principal, agent: Principal
) -> None:
    """Before any human decision --since-review diffs from the base, and says so."""
    session = start(orch, alice)
    session = orch.submit(
        session.id, "tests", agent, [{"path": "test_calc.py", "content": GOOD_TESTS}]
    )
    code, out, err = cli(orch, "diff", session.short_id, "--since-review")
    assert code == 0, err
    assert err.startswith(f"diff {session.base_commit[:10]}..") and "no human has reviewed" in err
    assert "+++ b/test_calc.py" in out
