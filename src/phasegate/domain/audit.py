"""Event chaining and chain verification, keyed: h_n = HMAC(key, h_{n-1} ‖ canonical(event_n)).

Events written before a database had an audit key carry plain SHA-256 links.
When the key is first used, a *legacy seal* signed with it records exactly
which events those are (every id up to a bound, their count and a digest of
their hashes); a plain link is accepted only on a sealed event. Pure: the key
is an argument; finding it is `phasegate.audit_key`'s job.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from phasegate.domain.replay import row_disagreement
from phasegate.domain.session import Session
from phasegate.domain.workflow import Workflow

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
    """The legacy (unkeyed) link: anyone can compute it, so only sealed events may use it."""
    return hashlib.sha256(prev_hash.encode() + b"\n" + canonical(event)).hexdigest()


def event_mac(key: bytes, prev_hash: str, event: Mapping[str, Any]) -> str:
    """The keyed link every new event carries."""
    return hmac.digest(key, prev_hash.encode() + b"\n" + canonical(event), "sha256").hex()


def chain_key(master_key: bytes, database_id: str) -> bytes:
    """One database's chain key: events can't move between databases that share a master key."""
    return hmac.digest(master_key, b"phasegate audit chain v1\n" + database_id.encode(), "sha256")


def key_id(key: bytes) -> str:
    """A public fingerprint of a chain key: tells a wrong key from an altered record."""
    return hmac.digest(key, b"phasegate audit key id", "sha256").hex()[:32]


# --- the legacy seal -----------------------------------------------------------


@dataclass(frozen=True)
class LegacySeal:
    """The signed statement "the unkeyed events are exactly these", made at the key's first use."""

    key_id: str
    max_event_id: int  # every legacy event has an id up to this (0: there are none)
    events: int
    digest: str  # sha256 over "id hash" lines of the legacy events, in id order
    mac: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> LegacySeal | None:
        try:
            data = json.loads(text)
            return cls(
                str(data["key_id"]),
                int(data["max_event_id"]),
                int(data["events"]),
                str(data["digest"]),
                str(data["mac"]),
            )
        except (ValueError, TypeError, KeyError):
            return None


def legacy_digest(id_hashes: Iterable[tuple[int, str]]) -> tuple[int, str]:
    """How many (id, hash) pairs there are, and their digest, in the order given (by id)."""
    digest, count = hashlib.sha256(), 0
    for event_id, link in id_hashes:
        digest.update(f"{int(event_id)} {link}\n".encode())
        count += 1
    return count, digest.hexdigest()


def _seal_mac(key: bytes, max_event_id: int, events: int, digest: str) -> str:
    body = f"phasegate legacy seal v1\n{max_event_id}\n{events}\n{digest}".encode()
    return hmac.digest(key, body, "sha256").hex()


def seal_legacy(key: bytes, id_hashes: Iterable[tuple[int, str]]) -> LegacySeal:
    """Sign the record of the events written before the key existed: (id, hash) in id order."""
    last = 0

    def pairs() -> Iterator[tuple[int, str]]:
        nonlocal last
        for event_id, link in id_hashes:
            last = int(event_id)
            yield last, link

    count, digest = legacy_digest(pairs())
    return LegacySeal(key_id(key), last, count, digest, _seal_mac(key, last, count, digest))


def _signed_by(key: bytes, seal: LegacySeal) -> bool:
    expected = _seal_mac(key, seal.max_event_id, seal.events, seal.digest)
    return seal.key_id == key_id(key) and hmac.compare_digest(expected, seal.mac)


@dataclass(frozen=True)
class SealCheck:
    ok: bool
    legacy_max_id: int  # plain links are accepted on events up to this id
    reason: str = ""


def check_seal(
    key: bytes, seal_text: str | None, legacy: Callable[[int], Iterable[tuple[int, str]]]
) -> SealCheck:
    """Check the seal's signature and that the events it covers are still exactly those.

    A missing or forged seal vouches for nothing: no plain link is accepted then.
    `legacy(max_id)` gives the stored (id, hash) pairs with an id up to `max_id`.
    """
    if seal_text is None:
        return SealCheck(False, 0, "the audit key's record of older events is missing")
    seal = LegacySeal.from_json(seal_text)
    if seal is None or not _signed_by(key, seal):
        return SealCheck(
            False, 0, "the audit key's record of older events was altered (its MAC does not match)"
        )
    count, digest = legacy_digest(legacy(seal.max_event_id))
    if (count, digest) != (seal.events, seal.digest):
        return SealCheck(
            False,
            seal.max_event_id,
            f"events written before the audit key changed: the record covers {seal.events} "
            f"events up to id {seal.max_event_id}, the database now has {count} there",
        )
    return SealCheck(True, seal.max_event_id)


# --- chains ----------------------------------------------------------------------


@dataclass(frozen=True)
class ChainReport:
    session_id: str  # "" for a report on the whole database (the legacy seal)
    events: int
    ok: bool
    broken_at: int | None = None  # seq of the first bad event
    reason: str = ""
    #: What is broken: "chain" (the events), "row" (the session row disagrees with
    #: its events) or "key_record" (the legacy seal); "" when ok.
    problem: str = ""


def seal_report(check: SealCheck) -> ChainReport:
    """The database-wide line `audit verify` adds when the seal does not hold."""
    return ChainReport("", 0, check.ok, None, check.reason, "" if check.ok else "key_record")


def _link_reason(event: Mapping[str, Any], prev: str, key: bytes, legacy_max_id: int) -> str:
    """Why an event's stored hash is not a valid link from `prev` ("" if it is)."""
    seq, stored = int(event["seq"]), str(event["hash"])
    if hmac.compare_digest(event_mac(key, prev, event), stored):
        return ""
    if hmac.compare_digest(event_hash(prev, event), stored):
        if int(event["id"]) <= legacy_max_id:
            return ""
        return (
            f"event {seq} is forged: it carries a plain SHA-256 link, "
            "not the audit key's, and was not written before the key existed"
        )
    return f"event {seq} was altered or forged (its hash does not match the audit key)"


def verify_chain(
    session_id: str,
    events: Iterable[Mapping[str, Any]],
    head_version: int | None = None,
    *,
    key: bytes,
    legacy_max_id: int = 0,
) -> ChainReport:
    """Recompute a session's keyed chain; report the first event that doesn't link.

    `head_version` is the session row's version: a chain whose newest events were
    deleted still links, so only the row can tell that its tail is missing.
    Events with an id up to `legacy_max_id` may carry the older plain link.
    """
    prev, expected_seq, count, version = GENESIS, 1, 0, 0

    def broken(at: int, reason: str) -> ChainReport:
        return ChainReport(session_id, count, False, at, reason, "chain")

    for event in events:
        count += 1
        version = int(event["version"])
        seq = int(event["seq"])
        if seq != expected_seq:
            return broken(expected_seq, f"event {expected_seq} is missing (found {seq} next)")
        if version != seq:
            # Each event records the session version it produced, one per transition.
            return broken(
                seq, f"event {seq} records version {version}; events before it were removed"
            )
        if event["prev_hash"] != prev:
            return broken(seq, f"event {seq} does not link to event {seq - 1}")
        reason = _link_reason(event, prev, key, legacy_max_id)
        if reason:
            return broken(seq, reason)
        prev, expected_seq = event["hash"], expected_seq + 1
    if head_version is not None and version < head_version:
        return broken(
            expected_seq,
            f"event {expected_seq} is missing: the log ends at version {version} "
            f"but the session is at version {head_version}",
        )
    return ChainReport(session_id, count, True)


def verify_session(
    session_id: str,
    row: Session | None,
    events: Sequence[Mapping[str, Any]],
    workflows: Mapping[str, Workflow],
    *,
    key: bytes,
    legacy_max_id: int = 0,
) -> ChainReport:
    """A session's chain, then its row against the replay of its events (the first problem)."""
    report = verify_chain(
        session_id, events, row.version if row else None, key=key, legacy_max_id=legacy_max_id
    )
    if not report.ok or row is None:
        return report
    reason = row_disagreement(row, workflows.get(row.workflow), events)
    return replace(report, ok=False, reason=reason, problem="row") if reason else report
