"""What a session's change tells the humans: gate, escalation or completion, and in words.

Pure: the webhook notifier (notify.py) sends these, and the dashboard's desktop
notifications (static/live.js) follow the same three kinds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from phasegate.domain.workflow import CANCELLED, FAILED, PAUSE, PhaseKind, Workflow

GATE, ESCALATION, COMPLETION = "gate", "escalation", "completion"
ESCALATION_PHASE = "awaiting_human_intervention"  # the fix loop gave up: a human must step in
REQUEST_APPROVAL = "request_approval"  # an agent's message for the reviewer at a gate
GATE_WORDS = {
    "awaiting_test_review": "waits for your review of its tests",
    "awaiting_final_review": "waits for your final review",
    "awaiting_design_review": "waits for your review of its design",
}
WHY_CHARS, LINE_WHY_CHARS = 500, 200  # of a reason: in the payload, in the line


def notice_kind(workflow: Workflow, action: str, from_phase: str, to_phase: str) -> str | None:
    """What a change tells the humans, if anything: "gate", "escalation" or "completion"."""
    entered = from_phase != to_phase
    kind = workflow.phase(to_phase).kind
    if action == PAUSE or (entered and to_phase in (FAILED, ESCALATION_PHASE)):
        return ESCALATION
    if entered and kind is PhaseKind.FINAL:
        return None if to_phase == CANCELLED else COMPLETION
    if kind is PhaseKind.HUMAN and (entered or action == REQUEST_APPROVAL):
        return GATE
    return None


def build_notice(
    kind: str, session_id: str, version: int, subject: Mapping[str, Any], base_url: str | None
) -> dict[str, Any]:
    """The JSON payload of a change (`subject`: its event, workflow and task)."""
    path = f"/sessions/{session_id}"
    notice = {
        "event": kind,
        "session_id": session_id,
        "version": version,
        "task": subject["task"],
        "workflow": subject["workflow"],
        "phase": subject["to_phase"],
        "from_phase": subject["from_phase"],
        "action": subject["action"],
        "actor": subject["actor_id"],
        "why": _why(subject["payload"]),
        "path": path,
        "url": f"{base_url}{path}" if base_url else None,
        "at": subject["created_at"],
    }
    url = f" — {notice['url']}" if notice["url"] else ""
    return {**notice, "text": summary_line(notice) + url}


def summary_line(notice: Mapping[str, Any]) -> str:
    """One line: "phasegate: session abcd1234 (slugify) waits for your review of its tests"."""
    why = " ".join(str(notice["why"]).split())
    why = why if len(why) <= LINE_WHY_CHARS else why[: LINE_WHY_CHARS - 1] + "…"
    line = f"phasegate: session {notice['session_id'][:8]} ({notice['task']}) {_what(notice)}"
    return f"{line}: {why}" if why else line


def slack_body(notice: Mapping[str, Any]) -> dict[str, str]:
    """Slack's incoming-webhook body: the line, escaped as Slack asks, and a link."""
    text = summary_line(notice).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return {"text": text + (f" — <{notice['url']}>" if notice["url"] else "")}


def _what(notice: Mapping[str, Any]) -> str:
    phase = notice["phase"]
    if notice["event"] == COMPLETION:
        return "completed"
    if notice["action"] == PAUSE:
        return f"was paused in {phase}"
    if phase == FAILED:
        return "failed"
    if phase == ESCALATION_PHASE:
        return "needs a human to step in"
    if notice["action"] == REQUEST_APPROVAL:
        return f"asks for your decision at {phase}"
    return GATE_WORDS.get(phase, f"waits for your decision at {phase}")


def _why(payload: Mapping[str, Any]) -> str:
    """The reason a change carries: the agent's message or note, a comment, a run's reason."""
    red = payload.get("red_run")
    candidates = [payload.get(k) for k in ("message", "comment", "reason", "note")]
    candidates.append(red.get("reason") if isinstance(red, Mapping) else None)
    for value in candidates:
        if isinstance(value, str) and value.strip():
            return value.strip()[:WHY_CHARS]
    return ""
