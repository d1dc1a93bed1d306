"""Starting a session: the row, its worktree, and the opening system phases."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from phasegate.config import session_config
from phasegate.domain.principal import Principal
from phasegate.domain.session import SYSTEM, Command, Session, claim_key
from phasegate.errors import AlreadyActive, InvalidInput, PermissionDenied
from phasegate.idempotency import Idempotency
from phasegate.kernel import Kernel
from phasegate.store import queries as q
from phasegate.tasks import Tasks
from phasegate.workspace import (
    RepositoryError,
    create_worktree,
    current_branch,
    head_commit,
    read_without_links,
)


def start_session(
    kernel: Kernel,
    task_ref: str,
    principal: Principal,
    *,
    workflow: str | None = None,
    idempotency_key: str | None = None,
    again: bool = False,
) -> Session:
    """Create a session, its worktree and branch, load the design, and wait for a tester.

    A task that already has a session in progress gets a second one only with
    `again`: starting twice by mistake would have two agents write the same code.
    """
    request = {"op": "start", "task": task_ref, "workflow": workflow}
    replay = kernel.replayed(principal, idempotency_key, request)
    if replay is not None:
        return replay
    if not principal.is_human and "starter" not in principal.roles and not principal.roles:
        raise PermissionDenied(f"agent {principal.name} has no role; it can't start sessions")
    wf = kernel.project.workflow(workflow)
    tasks = Tasks(kernel.project, kernel.db, kernel.clock)
    task = tasks.resolve(task_ref, by_agent=not principal.is_human)
    if not again:
        _refuse_second_session(kernel, task)
    try:  # never through a link: the file may sit where an agent can write
        design = read_without_links(kernel.project.root, task["design_path"]).decode("utf-8")
    except (RepositoryError, UnicodeDecodeError) as exc:
        raise InvalidInput(
            f"can't read the design of task {task['name']} ({task['design_path']}): {exc}; "
            "restore the file or add the task again"
        ) from exc
    try:
        base = head_commit(kernel.project.root)
        base_branch = current_branch(kernel.project.root)
    except RepositoryError as exc:
        raise InvalidInput(f"{exc}") from exc
    config = session_config(kernel.project.settings, wf.max_fix_attempts)

    session_id = uuid.uuid4().hex
    now = kernel.clock()
    session = Session(
        id=session_id,
        task_id=task["id"],
        workflow=wf.name,
        phase=wf.initial,
        version=0,
        fix_attempts=0,
        paused=False,
        context={},
        results={},
        created_at=now,
        updated_at=now,
        phase_entered_at=now,
        base_commit=base,
        branch=f"phasegate/{session_id}",
        task_name=task["name"],
        max_fix_attempts=wf.max_fix_attempts,
    )
    with kernel.db.write() as conn:
        q.insert_session(conn, session, claim_key(wf, session))
    worktree = kernel.project.worktree_path(session_id)
    try:
        create_worktree(kernel.project.root, worktree, f"phasegate/{session_id}", base)
    except RepositoryError as exc:
        reason = f"worktree could not be created: {exc}"
        kernel.transition(
            session_id,
            lambda s: Command("fail", SYSTEM, payload={"reason": reason}),
        )
        raise InvalidInput(f"can't create the session's worktree: {exc}") from exc

    actor = principal.actor()
    kernel.transition(
        session_id,
        lambda s: Command(
            "begin",
            SYSTEM,
            payload={
                "started_by": actor.describe(),
                "task": task["name"],
                "base_commit": base,
                "base_branch": base_branch,
                "config": config["hash"],
            },
            commit=base,
            context_patch={
                "worktree": str(worktree.relative_to(kernel.project.root)),
                "base_branch": base_branch,
                "config": config,
            },
            max_fix_attempts=wf.max_fix_attempts,
        ),
    )
    idem = Idempotency.of(principal, idempotency_key, request)
    return kernel.transition(
        session_id,
        lambda s: Command(
            "load_design",
            SYSTEM,
            payload={"design_path": task["design_path"], "bytes": len(design.encode())},
            context_patch={"design": design, "design_path": task["design_path"]},
        ),
        idempotency=idem,
    )


def _refuse_second_session(kernel: Kernel, task: Mapping[str, Any]) -> None:
    with kernel.db.read_one() as conn:
        active = q.active_session_of_task(conn, task["id"])
    if active is not None:
        session_id, phase = active
        raise AlreadyActive(
            f"task {task['name']} already has a session in progress: {session_id[:8]} "
            f"({phase}); continue that one, or start another on purpose "
            "(--again on the command line, again=true over MCP or the API)",
            session_id=session_id,
            phase=phase,
        )
