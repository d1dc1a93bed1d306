"""Event hashing and chain verification: h_n = sha256(h_{n-1} ‖ canonical(event_n))."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64

#: The event fields the hash covers, in order. Changing this breaks old chains.
HASHED_FIELDS = (
    "session_id",
    "seq",
    "action",
    "from_phase",
    "to_phase",
    "actor_kind",
    "actor_id",
    "actor_role",
    "payload",
    "commit",
    "version",
    "created_at",
)


def canonical(event: Mapping[str, Any]) -> bytes:
    """The bytes an event's hash covers: sorted-key JSON of the hashed fields."""
    body = {name: event.get(name) for name in HASHED_FIELDS}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()


def event_hash(prev_hash: str, event: Mapping[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + canonical(event)).hexdigest()


@dataclass(frozen=True)
class ChainReport:
    session_id: str
    events: int
    ok: bool
    broken_at: int | None = None  # seq of the first bad event
    reason: str = ""


def verify_chain(
    session_id: str, events: Iterable[Mapping[str, Any]], head_version: int | None = None
) -> ChainReport:
    """Recompute a session's chain; report the first event that doesn't link.

    `head_version` is the session row's version: a chain whose newest events were
    deleted still links, so only the row can tell that its tail is missing.
    """
    prev, expected_seq, count, version = GENESIS, 1, 0, 0
    for event in events:
        count += 1
        version = int(event["version"])
        seq = int(event["seq"])
        if seq != expected_seq:
            return ChainReport(
                session_id,
                count,
                False,
                expected_seq,
                f"event {expected_seq} is missing (found {seq} next)",
            )
        if int(event["version"]) != seq:
            # Each event records the session version it produced, one per transition.
            return ChainReport(
                session_id,
                count,
                False,
                seq,
                f"event {seq} records version {event['version']}; events before it were removed",
            )
        if event["prev_hash"] != prev:
            return ChainReport(
                session_id, count, False, seq, f"event {seq} does not link to event {seq - 1}"
            )
        if event_hash(prev, event) != event["hash"]:
            return ChainReport(
                session_id, count, False, seq, f"event {seq} was altered (its hash does not match)"
            )
        prev, expected_seq = event["hash"], expected_seq + 1
    if head_version is not None and version != head_version:
        return ChainReport(
            session_id,
            count,
            False,
            expected_seq,
            f"event {expected_seq} is missing: the log ends at version {version} "
            f"but the session is at version {head_version}",
        )
    return ChainReport(session_id, count, True)
