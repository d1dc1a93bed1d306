"""Closing the loop: merging a completed session's branch, showing and exporting its change.

A merge is a human's act on a finished session: it moves a branch of the
user's repository, so it is refused (and nothing moves) unless the session is
completed and unmerged, its target exists, and that target is where the
session started, or the human says a moved one is fine. It is recorded as a
`merged` event on the session's audit chain, and in its context.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phasegate.domain.principal import Principal
from phasegate.domain.session import Session, describe_wait
from phasegate.domain.workflow import PhaseKind
from phasegate.errors import (
    Conflict,
    InvalidInput,
    InvalidTransition,
    NotFound,
    PermissionDenied,
    StorageError,
)
from phasegate.kernel import Kernel
from phasegate.store import queries as q
from phasegate.workspace import (
    MERGE_MODES,
    MergeOutcome,
    MergeRefused,
    branch_tip,
    commit_count,
    commit_message,
    diff_between,
    format_patch,
    is_ancestor,
    merge_branch,
)

COMPLETED = "completed"
#: The human decisions after which a reviewer has seen the session's code.
REVIEW_ACTIONS = ("approve", "reject", "retry")


@dataclass(frozen=True)
class SessionDiff:
    """The change of a session from one commit to its newest, and where that commit came from."""

    text: str
    since: str
    head: str
    since_what: str  # "the base commit", "the approve at awaiting_test_review (event 5)", …


@dataclass(frozen=True)
class ExportedPatch:
    path: Path
    commits: int


@dataclass(frozen=True)
class Closing:
    """What a session ended with: its final commit and fixes, and how to merge or check it out."""

    head: str | None
    final: bool  # the session is completed: `head` is the approved final commit
    fixes: Sequence[Mapping[str, Any]]
    merged: Mapping[str, Any] | None
    merge_command: str | None  # for a completed session not merged yet
    look_commands: Sequence[str]  # to look at its branch before merging


def merge(
    kernel: Kernel,
    ref: str,
    principal: Principal,
    *,
    into: str | None = None,
    mode: str = "merge",
    allow_moved_base: bool = False,
) -> Session:
    """Merge a completed session's final commit into its starting branch (or `into`)."""
    if mode not in MERGE_MODES:
        raise InvalidInput(f"unknown merge mode {mode!r}; use one of {', '.join(MERGE_MODES)}")
    session = kernel.get(ref)
    if not principal.is_human:
        raise PermissionDenied(
            f"can't merge: only a human may merge a session, and {principal.name} is an agent; "
            "ask a human to run phasegate merge",
            phase=session.phase,
        )
    _require_mergeable(kernel, session)
    target = into or session.context.get("base_branch")
    if not target:
        raise InvalidInput(
            f"can't merge: session {session.short_id} started on a detached HEAD, so it has no "
            "branch to return to; name one with --into BRANCH"
        )
    tip = _target_tip(kernel, session, target)
    moved = tip != session.base_commit
    if moved and not allow_moved_base:
        raise Conflict(
            f"can't merge session {session.short_id}: {target} moved since the session started "
            f"(from {str(session.base_commit)[:10]} to {tip[:10]}); look at what changed there, "
            "then merge with --allow-moved-base (or --into another branch)",
            phase=session.phase,
        )
    try:
        done = merge_branch(
            kernel.project.root,
            target,
            str(session.context["head"]),
            mode=mode,
            message=_message(session, mode, principal),
            expected_tip=tip,
        )
    except MergeRefused as exc:
        raise Conflict(
            f"can't merge session {session.short_id}: {exc}", phase=session.phase
        ) from None
    return _record(kernel, session, principal, done, moved)


def diff(kernel: Kernel, ref: str, *, since_review: bool = False) -> SessionDiff:
    """The session's change from its base (or from the last human review) to its newest commit."""
    session = kernel.get(ref)
    base = _require_base(session)
    head = str(session.context.get("head") or base)
    since, what = base, "the base commit"
    if since_review:
        with kernel.db.read() as conn:
            events = q.session_events(conn, session.id)
        since, what = review_point(session, events)
    text = diff_between(kernel.project.root, since, head)
    return SessionDiff(text, since, head, what)


def review_point(session: Session, events: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """The commit a human last reviewed, and a phrase saying which decision that was.

    Decision events carry no commit, so the commit is the newest one an earlier
    event names (a submission, a test run). Without a review: the approved
    tests, else the base.
    """
    seen = str(session.base_commit)
    point: tuple[str, str] | None = None
    for event in events:
        seen = event.get("commit") or seen
        if event["action"] in REVIEW_ACTIONS and event["actor_kind"] == "human":
            point = (seen, f"the {event['action']} at {event['from_phase']} (event {event['seq']})")
    approved = session.context.get("approved_tests") or {}
    if point is None and approved.get("commit"):
        point = (str(approved["commit"]), "the approved tests")
    base = (str(session.base_commit), "the base commit (no human has reviewed this session yet)")
    return point or base


def export_patch(
    kernel: Kernel, ref: str, output: Path | None = None, *, force: bool = False
) -> ExportedPatch:
    """Write the session's commits as a patch `git am` applies; overwrite only with `force`."""
    session = kernel.get(ref)
    base = _require_base(session)
    head = str(session.context.get("head") or base)
    root = kernel.project.root
    count = commit_count(root, base, head)
    if count == 0:
        raise InvalidInput(f"session {session.short_id} has no commits yet; nothing to export")
    path = output or Path(patch_name(session))
    _write_file(path, format_patch(root, base, head), force=force)
    return ExportedPatch(path, count)


def patch_name(session: Session) -> str:
    """`phasegate-<short id>-<task>.patch`, the task reduced to characters safe in a file name."""
    task = re.sub(r"[^A-Za-z0-9._-]+", "-", session.task_name).strip("-.")[:60]
    return f"phasegate-{session.short_id}-{task or 'session'}.patch"


def closing(session: Session) -> Closing:
    """What `show` and the session page say about a session's result and its merge."""
    head = session.context.get("head")
    final = session.phase == COMPLETED
    merged = session.context.get("merged")
    fixes = session.context.get("fixes") or []
    if not (final and head and not merged):
        return Closing(head, final, fixes, merged, None, ())
    look = (
        f"git checkout {session.branch}",
        f"git log {str(session.base_commit)[:10]}..{str(head)[:10]}",
    )
    return Closing(head, final, fixes, merged, f"phasegate merge {session.short_id}", look)


def _require_mergeable(kernel: Kernel, session: Session) -> None:
    """Refuse a session that is not completed, or already merged, naming where it is."""
    wf = kernel.workflow_of(session)
    if session.phase != COMPLETED:
        if wf.phase(session.phase).kind is PhaseKind.FINAL:
            where = f"is {session.phase}; only a completed session can be merged"
        else:
            where = (
                f"is in {session.phase}, {describe_wait(wf, session)}; "
                "merge it once a human has approved it at the final review"
            )
        raise InvalidTransition(
            f"can't merge: session {session.short_id} {where}",
            phase=session.phase,
            allowed_actions=wf.allowed_actions(session.phase, paused=session.paused),
        )
    if not session.context.get("head"):
        raise InvalidInput(f"session {session.short_id} has no commits; there is nothing to merge")
    merged = session.context.get("merged")
    if merged:
        raise Conflict(
            f"can't merge: session {session.short_id} was already merged into "
            f"{merged['target']} at {merged['commit'][:10]}; see phasegate show "
            f"{session.short_id}",
            phase=session.phase,
        )


def _target_tip(kernel: Kernel, session: Session, target: str) -> str:
    """Where `target` points now; refused if it is missing or already holds the session."""
    if target == session.branch:
        raise InvalidInput(
            f"can't merge session {session.short_id} into its own branch {target}; "
            "name the branch to merge into with --into"
        )
    tip = branch_tip(kernel.project.root, target)
    if tip is None:
        raise NotFound(
            f"can't merge session {session.short_id}: there is no branch {target!r} in "
            f"{kernel.project.root}; create it, or name another with --into"
        )
    head = str(session.context["head"])
    if is_ancestor(kernel.project.root, head, tip):
        raise Conflict(
            f"can't merge session {session.short_id}: {target} already contains its final "
            f"commit {head[:10]}; there is nothing to merge",
            phase=session.phase,
        )
    return tip


def _record(
    kernel: Kernel, session: Session, principal: Principal, done: MergeOutcome, moved: bool
) -> Session:
    """The `merged` event on the session's chain, and `merged` in its context."""
    merged = {
        "target": done.target,
        "mode": done.mode,
        "commit": done.commit,
        "previous": done.previous,
        "base_moved": moved,
    }
    note = f"merged into {done.target} at {done.commit[:10]} ({done.mode})"
    payload = {**merged, "head": session.context["head"], "note": note}
    try:
        return kernel.record(
            session.id, "merged", principal, payload, context_patch={"merged": merged}
        )
    except StorageError as exc:
        raise StorageError(
            f"session {session.short_id} was {note}, but the audit event could not be "
            f"stored ({exc}); the branch has moved, so don't merge again"
        ) from exc


def _require_base(session: Session) -> str:
    if not session.base_commit:
        raise InvalidInput(
            f"session {session.short_id} has no base commit (it never got a worktree); "
            "there is no change to show"
        )
    return session.base_commit


def _message(session: Session, mode: str, principal: Principal) -> str:
    """The new commit's message: the task, the session, and who merged it (as trailers)."""
    title = (
        f"Merge phasegate session {session.short_id}: {session.task_name}"
        if mode == "merge"
        else f"{session.task_name} (phasegate session {session.short_id}, squashed)"
    )
    trailers = {
        "Phasegate-Session": session.id,
        "Phasegate-Branch": str(session.branch),
        "Phasegate-Merged-By": principal.actor().describe(),
    }
    return commit_message(title, trailers)


def _write_file(path: Path, data: bytes, *, force: bool) -> None:
    """Write `data` to `path` whole or not at all; an existing file only with `force`."""
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        scratch.write_bytes(data)
        if force:
            os.replace(scratch, path)
        else:
            os.link(scratch, path)  # fails if `path` exists, atomically
    except FileExistsError:
        raise InvalidInput(
            f"{path} already exists; pass --force to overwrite it, or -o to name another file"
        ) from None
    except OSError as exc:
        raise InvalidInput(
            f"can't write {path}: {exc.strerror or exc}; choose another file with -o"
        ) from None
    finally:
        scratch.unlink(missing_ok=True)
