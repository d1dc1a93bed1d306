"""One line per audit event, as the CLI's `log` and the demo print them.

Refused submissions get words of their own here (the CLI, the dashboard and
the MCP status all say them the same way): what was tried, why it was
refused, and the paths it named — never the contents.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

DETAIL_KEYS = ("comment", "note", "message", "reason", "output", "summary")
REFUSED = "submission_refused"
PATHS_SHOWN = 5

#: Why a submission was refused, as the end of "the submission …".
CAUSE_WORDS = {
    "locked_test": "touched a locked test",
    "locked_design": "touched the locked design",
    "review_with_files": "was a review that changed files",
    "forbidden_path": "touched a path it may not",
    "lease": "came without a valid lease",
    "refused": "could not be applied",
}


def refused_paths(entry: Mapping[str, Any]) -> str:
    """The paths a refused submission named, the first few and how many more."""
    paths = [str(p) for p in entry.get("paths") or []]
    more = len(paths) - PATHS_SHOWN + int(entry.get("more_paths") or 0)
    shown = ", ".join(paths[:PATHS_SHOWN]) or "no paths"
    return shown + (f" and {more} more" if more > 0 else "")


def refusal_words(entry: Mapping[str, Any]) -> str:
    """What a refusal was about: `touched a locked test — tests/test_calc.py`."""
    cause = str(entry.get("cause") or "refused")
    return f"{CAUSE_WORDS.get(cause, cause)} — {refused_paths(entry)}"


def refusal_headline(entry: Mapping[str, Any]) -> str:
    """`REFUSED submit_implementation: touched a locked test — … (cause locked_test)`."""
    return (
        f"REFUSED {entry.get('submission') or 'submission'}: {refusal_words(entry)} "
        f"(cause {entry.get('cause') or 'refused'})"
    )


# C0 and C1 controls (but tab and newline), zero-width and bidi characters: agent text (a note,
# a run's reason, an agent's output) must not clear a human's screen or draw a fake line.
_UNSHOWABLE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]"
)


def showable(text: str) -> str:
    """`text` with every control or invisible character written out (`\\u001b`)."""
    return _UNSHOWABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def event_lines(event: Mapping[str, Any]) -> Iterator[str]:
    """The event's headline, then one indented line per detail (comment, note, reason)."""
    for line in _event_lines(event):
        yield showable(line)


def _event_lines(event: Mapping[str, Any]) -> Iterator[str]:
    actor = event["actor_id"] + (f" ({event['actor_role']})" if event["actor_role"] else "")
    if event["from_phase"] == event["to_phase"]:
        move = event["to_phase"]
    else:
        move = f"{event['from_phase']} → {event['to_phase']}"
    commit = f" @{event['commit'][:8]}" if event["commit"] else ""
    when = str(event["created_at"])[:19].replace("T", " ")
    yield f"{event['seq']:>3} {when} {event['action']:<22} {move}  by {actor}{commit}"
    if event["action"] == REFUSED:
        yield f"      {refusal_headline(event['payload'])}"
    if event["action"] == "pre_review":  # a reviewer agent's suggestion; a human decides
        findings = event["payload"].get("findings") or []
        yield f"      suggests {event['payload'].get('verdict')} ({len(findings)} finding(s))"
        for finding in findings[:PATHS_SHOWN]:
            yield f"      {finding.get('path')}:{finding.get('line')}: {finding.get('comment')}"
    for key in DETAIL_KEYS:
        if event["payload"].get(key):
            yield f"      {key}: {event['payload'][key]}"
