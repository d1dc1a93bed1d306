"""The review brief in the terminal: what `phasegate show` prints first, before the details."""

from __future__ import annotations

from phasegate.review_brief import ReviewBrief

#: How each kind of session is labelled, and the colour it stands out in.
KIND_LABELS = {
    "review": ("REVIEW", "bold yellow"),
    "escalation": ("ESCALATION", "bold red"),
    "setup_error": ("SETUP ERROR", "bold red"),
    "agent": ("AGENT AT WORK", "cyan"),
    "system": ("PHASEGATE AT WORK", "cyan"),
    "completed": ("COMPLETED", "bold green"),
    "cancelled": ("CANCELLED", "dim"),
    "failed": ("FAILED", "bold red"),
}
RUN_STYLES = {"passed": "green", "failed": "red", "error": "red"}
Line = tuple[str, str | None]  # text, rich style
CODE_PATHS_SHOWN = 12


def brief_lines(brief: ReviewBrief, short_id: str, task: str) -> list[Line]:
    """The brief as labelled lines: headline, question, submission, run, warnings, changes."""
    label, style = KIND_LABELS.get(brief.kind, (brief.kind.upper(), None))
    at = f" · round {brief.round}" if brief.at_gate else ""
    paused = " (paused)" if brief.paused else ""
    lines: list[Line] = [(f"{label}  {brief.phase}{paused}{at} · {task} · {short_id}", style)]
    lines.append((f"decide   {brief.question}", None))
    if brief.approving:
        lines.append((f"approve  {brief.approving}", None))
    if brief.submitted:
        s = brief.submitted
        files = f": {', '.join(s.paths)}" if s.paths else ""
        lines.append(
            (f"by       {s.what} by {s.by} at {s.at} UTC, commit {s.commit[:10]}{files}", None)
        )
        if s.note:
            lines.append((f"note     {s.note}", None))
    if brief.code_paths and (not brief.submitted or brief.submitted.what != "tests"):
        lines.append((f"code     {_code_line(brief.code_paths)}", None))
    if brief.agent_message:
        lines.append((f"message  {brief.agent_message}", None))
    if brief.pre_review:
        review = brief.pre_review
        found = len(review.get("findings") or [])
        lines.append(
            (
                f"reviewer {review.get('by')} suggests {review.get('verdict')} "
                f"({found} finding{'s' if found != 1 else ''}): {review.get('summary')}",
                None,
            )
        )
    run_style = None if brief.run_expected_to_fail else RUN_STYLES.get(brief.run_status)
    lines.append((f"run      {brief.run_line}", run_style))
    lines += [(f"warning  {w}", "red") for w in brief.warnings]
    if brief.last_decision:
        d = brief.last_decision
        said = f": {d.comment}" if d.comment else ""
        lines.append((f"since    {d.action} by {d.by} at {d.at} (event {d.seq}){said}", None))
        lines += [(f"         {c}", None) for c in brief.changes]
    elif brief.at_gate:
        lines.append(
            ("since    first decision at this gate: nothing earlier to compare with", None)
        )
    return lines


def _code_line(paths: tuple[str, ...]) -> str:
    """Every path changed since the base besides the tests: what merging takes, not just the
    newest submission (code sent before a reopen_tests is merged too)."""
    shown = ", ".join(paths[:CODE_PATHS_SHOWN])
    more = len(paths) - CODE_PATHS_SHOWN
    return f"every change but the tests, since the base: {shown}" + (
        f" and {more} more (see the diff)" if more > 0 else ""
    )
