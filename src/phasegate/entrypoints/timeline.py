"""One line per audit event, as the CLI's `log` and the demo print them."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

DETAIL_KEYS = ("comment", "note", "message", "reason")


def event_lines(event: Mapping[str, Any]) -> Iterator[str]:
    """The event's headline, then one indented line per detail (comment, note, reason)."""
    actor = event["actor_id"] + (f" ({event['actor_role']})" if event["actor_role"] else "")
    if event["from_phase"] == event["to_phase"]:
        move = event["to_phase"]
    else:
        move = f"{event['from_phase']} → {event['to_phase']}"
    commit = f" @{event['commit'][:8]}" if event["commit"] else ""
    when = str(event["created_at"])[:19].replace("T", " ")
    yield f"{event['seq']:>3} {when} {event['action']:<22} {move}  by {actor}{commit}"
    for key in DETAIL_KEYS:
        if event["payload"].get(key):
            yield f"      {key}: {event['payload'][key]}"
