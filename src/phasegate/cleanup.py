"""Removing the worktrees of finished sessions, only when asked (`phasegate gc`).

Branches are kept by default: the audit trail names their commits, and a
deleted branch would leave those commits to git's own garbage collection.
"""

from __future__ import annotations

from dataclasses import dataclass

from phasegate.domain.workflow import PhaseKind
from phasegate.kernel import Kernel
from phasegate.store import queries as q
from phasegate.workspace import WorkspaceError, remove_worktree


@dataclass(frozen=True)
class Collected:
    session_id: str
    phase: str
    worktree: str
    branch_deleted: bool
    error: str | None = None


def collect_finished_worktrees(
    kernel: Kernel, *, dry_run: bool, delete_branches: bool
) -> list[Collected]:
    """The worktrees of completed, cancelled and failed sessions, removed unless `dry_run`."""
    root = kernel.project.root
    finals = {
        p.name
        for wf in kernel.project.workflows.values()
        for p in wf.phases
        if p.kind is PhaseKind.FINAL
    }
    with kernel.db.read() as conn:
        finished = q.list_sessions(conn, phases=sorted(finals), limit=None)
    done: list[Collected] = []
    for session in finished:
        worktree = kernel.project.worktree_path(session.id)
        if not worktree.exists():
            continue
        relative = str(worktree.relative_to(root))
        error = None
        if not dry_run:
            try:
                remove_worktree(
                    root,
                    root / relative,
                    session.branch or f"phasegate/{session.id}",
                    delete_branches,
                )
            except WorkspaceError as exc:
                error = str(exc)
        done.append(Collected(session.id, session.phase, relative, delete_branches, error))
    return done
