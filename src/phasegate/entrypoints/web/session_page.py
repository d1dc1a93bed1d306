"""Everything the session page shows, gathered from the orchestrator and git in one place."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from phasegate.domain.session import Session
from phasegate.entrypoints.timeline import REFUSED, refusal_headline
from phasegate.entrypoints.web.diagram import workflow_svg
from phasegate.entrypoints.web.render import code_html, diff_html, markdown_html
from phasegate.merging import closing
from phasegate.orchestrator import Orchestrator
from phasegate.workspace import WorkspaceError, diff_between, read_file_at

MAX_FILES = 30
MAX_RUNS = 10
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


def _diff(worktree: Path, session: Session) -> dict[str, Any]:
    head = session.context.get("head")
    if not head or not session.base_commit or head == session.base_commit:
        return {"html": None, "error": None}
    try:
        text = diff_between(worktree, session.base_commit, head)
    except WorkspaceError as exc:
        return {"html": None, "error": str(exc)}
    return {"html": diff_html(text) if text else None, "error": None}


def _runs(orch: Orchestrator, session_id: str) -> list[dict[str, Any]]:
    runs = orch.test_runs(session_id)[::-1][:MAX_RUNS]
    return [
        {
            **r,
            "failures": (r.get("evidence") or {}).get("failures", []),
            "counts": (r.get("evidence") or {}).get("counts", {}),
            "output_tail": (r.get("evidence") or {}).get("output_tail", ""),
            "warnings": (r.get("evidence") or {}).get("warnings", []),
        }
        for r in runs
    ]


def session_page_context(orch: Orchestrator, session: Session) -> dict[str, Any]:
    """The template context of /sessions/{id} (and its live fragment)."""
    wf = orch.workflow_of(session)
    ctx = session.context
    worktree = orch.project.root / ctx["worktree"] if ctx.get("worktree") else orch.project.root
    implementation = ctx.get("implementation") or {}
    notes = [("implementation", implementation.get("note", ""), implementation.get("by", ""))]
    notes += [("fix", f.get("note", ""), f.get("by", "")) for f in ctx.get("fixes") or []]
    timeline = timeline_entries(orch.timeline(session.id))
    return {
        "s": orch.view(session),
        "workflow_svg": workflow_svg(wf, session.phase),
        "mermaid": wf.to_mermaid(highlight=session.phase),
        "design_html": markdown_html(ctx.get("design") or ""),
        "design_path": ctx.get("design_path", ""),
        "approval_request": ctx.get("approval_request"),
        "feedback": ctx.get("feedback") or [],
        "guidance": ctx.get("guidance") or [],
        "tests": ctx.get("tests") or {},
        "test_files": _files(worktree, ctx.get("tests")),
        "implementation_notes": [n for n in notes if n[1]],
        "diff": _diff(worktree, session),
        "closing": closing(session),
        "red_run": ctx.get("red_run"),
        "runs": _runs(orch, session.id),
        "timeline": timeline,
        "refusals": _refusals(ctx, timeline),
        "setup_error": ctx.get("setup_error"),
        "config": _config(ctx.get("config")),
        "gate": session.phase in wf.gates(),
    }


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
