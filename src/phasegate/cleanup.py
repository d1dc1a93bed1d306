"""Removing the worktrees of finished sessions, only when asked (`phasegate gc`).

Branches are kept by default: the audit trail names their commits, and a
deleted branch would leave those commits to git's own garbage collection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from phasegate.workspace import WorkspaceError, remove_worktree

if TYPE_CHECKING:
    from phasegate.orchestrator import Orchestrator


@dataclass(frozen=True)
class Collected:
    session_id: str
    phase: str
    worktree: str
    branch_deleted: bool
    error: str | None = None


def collect_finished_worktrees(
    orch: Orchestrator, *, dry_run: bool, delete_branches: bool
) -> list[Collected]:
    """The worktrees of completed, cancelled and failed sessions, removed unless `dry_run`."""
    done: list[Collected] = []
    for session in orch.list_sessions(include_finished=True, limit=1_000_000):
        if not orch.workflow_of(session).is_final(session.phase):
            continue
        relative = session.context.get("worktree")
        if not relative or not (orch.project.root / relative).exists():
            continue
        error = None
        if not dry_run:
            try:
                remove_worktree(
                    orch.project.root,
                    orch.project.root / relative,
                    session.branch or f"phasegate/{session.id}",
                    delete_branches,
                )
            except WorkspaceError as exc:
                error = str(exc)
        done.append(Collected(session.id, session.phase, relative, delete_branches, error))
    return done
