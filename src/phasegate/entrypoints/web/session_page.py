"""Everything the session page shows, gathered from the orchestrator and git in one place."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from phasegate.domain.session import Session
from phasegate.entrypoints.timeline import REFUSED, refusal_headline
from phasegate.entrypoints.web.diagram import workflow_svg
from phasegate.entrypoints.web.evidence import failure_groups, result_rows, split_diff
from phasegate.entrypoints.web.render import code_html, markdown_html
from phasegate.entrypoints.wording import done_words, phase_words
from phasegate.merging import REVIEW_ACTIONS, closing, review_point
from phasegate.orchestrator import Orchestrator
from phasegate.review_brief import ReviewBrief, build_brief
from phasegate.review_rounds import Round, review_rounds
from phasegate.workspace import WorkspaceError, changed_between, diff_between, read_file_at

MAX_FILES = 30
MAX_ROUNDS = 10
WORK_KINDS = ("design", "tests", "implementation", "fix")  # not a reviewer's analysis
REFUSALS_LINKED = 5

#: What an event's payload says in words on the timeline ("AI reasoning at each step").
NOTE_KEYS = ("note", "comment", "message", "reason", "guidance", "error")


def timeline_entries(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events as the timeline shows them, newest first."""
    entries = []
    for e in events:
        payload = e.get("payload") or {}
        who = e["actor_id"] if e["actor_kind"] != "system" else "phasegate"
        if e["actor_kind"] == "agent" and e.get("actor_role"):
            who = f"{who} ({e['actor_role']})"
        notes = [(k, str(payload[k])) for k in NOTE_KEYS if payload.get(k)]
        created = e["created_at"]
        entries.append(
            {
                "seq": e["seq"],
                "action": e["action"],
                "from_phase": e["from_phase"],
                "to_phase": e["to_phase"],
                "actor_kind": e["actor_kind"],
                "who": who,
                "commit": (e.get("commit") or "")[:10],
                "version": e["version"],
                "at": created.isoformat() if hasattr(created, "isoformat") else str(created),
                "notes": notes,
                "red_run": payload.get("red_run"),
                "refusal": refusal_headline(payload) if e["action"] == REFUSED else None,
            }
        )
    return entries[::-1]


def _files(worktree: Path, submission: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not submission or not submission.get("commit"):
        return []
    files = []
    for path in list(submission.get("paths") or [])[:MAX_FILES]:
        try:
            text = read_file_at(worktree, submission["commit"], path)
            files.append({"path": path, "html": code_html(text, path), "error": None})
        except WorkspaceError as exc:
            files.append({"path": path, "html": None, "error": str(exc)})
    return files


#: The diffs the page can show: "" is the phase's default (the implementation once the tests
#: are approved, else the whole change), then the implementation (every change from the base
#: but the approved tests), since the last review, all.
CHANGE_MODES = ("", "implementation", "since-review", "all")


def _changes(
    worktree: Path, session: Session, events: list[dict[str, Any]], mode: str, reviewed: bool
) -> dict[str, Any]:
    """The change as a file list and per-file diffs, from the commit the mode names to the head.

    Asked for "since the last review" where no human has reviewed yet, it shows the
    whole change and says so, rather than an empty or made-up diff.
    """
    head = session.context.get("head")
    shown: dict[str, Any] = {"mode": mode, "files": [], "error": None, "since": "", "note": ""}
    shown["title"] = "Changes against the base commit"
    if not head or not session.base_commit or head == session.base_commit:
        return shown
    since, what = _diff_start(session, events, mode, reviewed)
    if mode == "since-review" and not reviewed:
        shown["note"] = "No human has reviewed this session yet: this is the whole change."
    approved = (session.context.get("approved_tests") or {}).get("commit")
    try:
        if mode in ("", "implementation") and approved:
            left_out = _approved_test_paths(worktree, session, str(head))
            text = diff_between(worktree, since, str(head), exclude=left_out)
            title = "The implementation: every change but the approved tests"
            return {**shown, "files": split_diff(text), "since": what, "title": title}
        text = diff_between(worktree, since, str(head))
    except WorkspaceError as exc:
        return {**shown, "error": str(exc)}
    return {**shown, "files": split_diff(text), "since": what, "title": f"Changes since {what}"}


def _approved_test_paths(worktree: Path, session: Session, head: str) -> tuple[str, ...]:
    """The paths the implementation view leaves out: the approved tests, and nothing else.

    A path is left out only if the tests changed it before the human approved them,
    it is locked, and nothing changed it since: then the human has read it at the
    test review. Everything else from the base to the head, code committed before a
    `reopen_tests` included, is what merging takes, so the view shows it.
    """
    approved = session.context.get("approved_tests") or {}
    locked = set(approved.get("hashes") or {})
    commit = str(approved.get("commit") or "")
    if not locked or not commit:
        return ()
    tested = set(changed_between(worktree, str(session.base_commit), commit)) & locked
    return tuple(sorted(tested - set(changed_between(worktree, commit, head))))


def _diff_start(
    session: Session, events: list[dict[str, Any]], mode: str, reviewed: bool
) -> tuple[str, str]:
    """The commit a diff in `mode` starts from, and words for it.

    The implementation starts at the base, like the whole change: starting at the
    approved tests would hide code committed before the tests were reopened.
    """
    if mode == "since-review" and reviewed:
        return review_point(session, events)
    return str(session.base_commit), "the base commit"


def _results(runs: list[dict[str, Any]], brief: ReviewBrief) -> dict[str, Any] | None:
    """The run the brief speaks of: a row per test and its failures grouped by reason."""
    run = next((r for r in runs if brief.run_id and r["id"] == brief.run_id), None)
    if run is None:
        return None
    evidence = run.get("evidence") or {}
    return {
        "run": run,
        "expected": brief.run_expected_to_fail,
        "counts": evidence.get("counts") or {},
        "rows": result_rows(evidence),
        "groups": failure_groups(evidence.get("failures") or []),
        "output_tail": evidence.get("output_tail", ""),
    }


def _code_side(rounds: list[Round]) -> bool:
    """Whether the newest work is code: then the diff leads, and the design and tests fold."""
    made = [a.submission for r in rounds for a in r.attempts if a.submission in WORK_KINDS]
    return bool(made) and made[-1] in ("implementation", "fix")


def _confirmation(
    events: list[dict[str, Any]], session: Session, decided: int | None
) -> dict[str, Any] | None:
    """What the decision just made did, read back from the audit trail (not from the URL)."""
    event = next(
        (e for e in events if decided and e["version"] == decided and e["actor_kind"] == "human"),
        None,
    )
    if event is None:
        return None
    return {
        "words": f"{done_words(event['action'])} the session at {phase_words(event['from_phase'])}",
        "by": event["actor_id"],
        "seq": event["seq"],
        "now": phase_words(session.phase),
    }


def session_page_context(
    orch: Orchestrator, session: Session, *, changes: str = "", decided: int | None = None
) -> dict[str, Any]:
    """The template context of /sessions/{id} (and its live fragment)."""
    wf = orch.workflow_of(session)
    ctx = session.context
    worktree = orch.project.root / ctx["worktree"] if ctx.get("worktree") else orch.project.root
    implementation = ctx.get("implementation") or {}
    notes = [("implementation", implementation.get("note", ""), implementation.get("by", ""))]
    notes += [("fix", f.get("note", ""), f.get("by", "")) for f in ctx.get("fixes") or []]
    events = orch.timeline(session.id)
    runs = orch.test_runs(session.id)
    brief = build_brief(wf, session, events, runs)
    rounds = review_rounds(wf, events, runs)
    reviewed = bool(ctx.get("approved_tests")) or any(
        r.decision and r.decision.action in REVIEW_ACTIONS for r in rounds
    )
    timeline = timeline_entries(events)
    return {
        "s": orch.view(session),
        "brief": brief,
        "workflow_svg": workflow_svg(wf, session.phase),
        "mermaid": wf.to_mermaid(highlight=session.phase),
        "design_html": markdown_html(ctx.get("design") or ""),
        "design_path": ctx.get("design_path", ""),
        "design_rounds": _design_rounds(orch, session),
        "feedback": ctx.get("feedback") or [],
        "guidance": ctx.get("guidance") or [],
        "tests": ctx.get("tests") or {},
        "test_files": _files(worktree, ctx.get("tests")),
        "implementation_notes": [n for n in notes if n[1]],
        "changes": _changes(worktree, session, events, changes, reviewed),
        "reviewed": reviewed,
        "results": _results(runs, brief),
        "closing": closing(session),
        "rounds": rounds[::-1][:MAX_ROUNDS],
        "code_side": _code_side(rounds),
        "timeline": timeline,
        "refusals": _refusals(ctx, timeline),
        "setup_error": ctx.get("setup_error"),
        "config": _config(ctx.get("config")),
        "gate": session.phase in wf.gates(),
        "confirmation": _confirmation(events, session, decided),
    }


def _design_rounds(orch: Orchestrator, session: Session) -> list[dict[str, Any]]:
    """A drafted design's rounds after the first, newest first, each as its diff from the
    round before: what the designer changed after a reject."""
    if not session.context.get("designs"):
        return []
    try:
        rounds = orch.design_rounds(session)
    except WorkspaceError:  # a worktree cleaned up after the session: nothing to compare
        return []
    shown = [
        {**r, "n": n, "files": split_diff(r["diff"])}
        for n, r in enumerate(rounds, start=1)
        if n > 1
    ]
    return shown[::-1][:MAX_ROUNDS]


def _config(config: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The configuration the session keeps: its hash, and each value as text (JSON if nested)."""
    if not config:
        return None  # a session from before configurations were kept
    values = sorted((config.get("values") or {}).items())
    shown = [(k, v if isinstance(v, str) else json.dumps(v, sort_keys=True)) for k, v in values]
    return {"hash": config["hash"], "values": shown}


def _refusals(context: Mapping[str, Any], timeline: list[dict[str, Any]]) -> dict[str, Any]:
    """How many submissions were refused, and the newest refusals' timeline entries to link."""
    count = int((context.get("refusals") or {}).get("count") or 0)
    refused = [e for e in timeline if e["refusal"]]  # newest first, as the timeline
    return {"count": count, "entries": refused[:REFUSALS_LINKED]}
