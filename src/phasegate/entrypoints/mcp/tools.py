"""The agent's tools. Each one calls the orchestrator and returns a structured result.

There is deliberately no tool that approves, rejects or skips a gate: only a
human decides, in the dashboard or with the CLI, under a human token.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.types import ToolAnnotations
from pydantic import Field

from phasegate.domain.session import Session
from phasegate.entrypoints.mcp import decisions
from phasegate.entrypoints.mcp.budget import RESULT_BUDGET, fit
from phasegate.entrypoints.mcp.calls import Deps
from phasegate.entrypoints.mcp.errors import AgentErrors, refuse_flagged
from phasegate.entrypoints.mcp.results import (
    ClaimResult,
    DecisionResult,
    FileItem,
    FindingItem,
    ListResult,
    RunTestsResult,
    SessionResult,
    SessionSummary,
    StatusResult,
    SubmitResult,
    run_summary,
    session_fields,
    summary,
)
from phasegate.entrypoints.mcp.running import run_tests_tool
from phasegate.entrypoints.mcp.runs import Report, run_with_progress
from phasegate.entrypoints.mcp.status import build_status, resource_uri
from phasegate.store.queries import Keyset

F = TypeVar("F", bound=Callable[..., Any])
SessionId = Annotated[
    str,
    Field(
        min_length=4,
        max_length=64,
        pattern=r"^[0-9a-fA-F]+$",
        description="The session id (or a unique prefix of it)",
    ),
]
Files = Annotated[
    list[FileItem] | None,
    Field(
        max_length=500,
        description="Files to write, each {path, content}; omit to submit the "
        "uncommitted changes in the session's worktree instead",
    ),
]
Note = Annotated[
    str,
    Field(
        max_length=50_000, description="Your reasoning, shown to the human reviewer in the timeline"
    ),
]
IdemKey = Annotated[
    str | None,
    Field(
        max_length=200,
        description="Optional: the same key makes a retried call return the first call's result",
    ),
]


def hints(title: str, *, read_only: bool, idempotent: bool) -> ToolAnnotations:
    """All four hints, explicitly: nothing here destroys data or reaches outside the project."""
    return ToolAnnotations(
        title=title,
        read_only_hint=read_only,
        destructive_hint=False,
        idempotent_hint=idempotent,
        open_world_hint=False,
    )


def agent_tool(
    mcp: MCPServer, errors: AgentErrors, title: str, *, read_only: bool, idempotent: bool
) -> Callable[[F], F]:
    """Register a tool described by its docstring as one paragraph (no source indentation)."""

    def register(fn: F) -> F:
        @functools.wraps(fn)
        async def checked(*args: Any, **kwargs: Any) -> Any:
            refuse_flagged()
            return await fn(*args, **kwargs)

        errors.add(fn)
        mcp.tool(
            name=fn.__name__,
            description=" ".join((fn.__doc__ or "").split()),
            annotations=hints(title, read_only=read_only, idempotent=idempotent),
        )(checked)
        return fn

    return register


def reporter(ctx: Context) -> Report:
    async def report(step: float, message: str) -> None:
        await ctx.report_progress(step, None, message)

    return report


def register_tools(mcp: MCPServer, deps: Deps) -> None:
    """Add the twelve agent tools to `mcp`, and the middleware that words their errors."""
    orch = deps.orch
    errors = AgentErrors()
    mcp.middleware.append(errors)

    @agent_tool(mcp, errors, "List sessions", read_only=True, idempotent=True)
    async def list_sessions(
        scope: Literal["active", "mine", "all"] = "active",
        limit: Annotated[int, Field(ge=1, le=50)] = 20,
        after: Annotated[
            str | None,
            Field(max_length=100, description="The `next` value of the previous page"),
        ] = None,
    ) -> ListResult:
        """List sessions, those waiting longest first. scope: active (not finished), mine (waiting
        for one of your roles), all (finished too). Then call get_session_status on one."""
        principal = deps.principal()
        roles = list(principal.roles) if scope == "mine" else None

        def load() -> tuple[list[SessionSummary], str | None]:
            found = orch.list_sessions(
                include_finished=scope == "all", roles=roles, limit=limit + 1, after=after
            )
            page = found[:limit]
            cursor = Keyset.of(page[-1]).token if len(found) > limit else None
            return [summary(orch, s) for s in page], cursor

        items, cursor = await deps.call(load)
        return ListResult(
            sessions=items,
            count=len(items),
            next=cursor,
            message=f"{len(items)} session(s) ({scope})"
            + (", more with `after`" if cursor else ""),
            next_action=(
                "Call get_session_status(session_id) on the session to work on."
                if items
                else "No sessions; call start_session(task) with a design file."
            ),
        )

    @agent_tool(mcp, errors, "Start a session", read_only=False, idempotent=False)
    async def start_session(
        task: Annotated[
            str,
            Field(
                min_length=1,
                max_length=1024,
                description=(
                    "A task id, name, or the path of a design Markdown file in the project"
                ),
            ),
        ],
        workflow: Annotated[str | None, Field(max_length=100)] = None,
        idempotency_key: IdemKey = None,
        again: Annotated[
            bool,
            Field(description="Start another session even if the task has one in progress"),
        ] = False,
    ) -> StatusResult:
        """Start a session (tdd workflow: design → tests → human review → code → tests → human
        review) on a task. phasegate reads the design; you then write tests (submit_tests)."""
        principal = deps.principal()
        root = orch.project.root
        ref = str(root / task) if (root / task).is_file() else task
        session = await deps.call(
            orch.start_session,
            ref,
            principal,
            workflow=workflow,
            idempotency_key=idempotency_key,
            again=again,
        )
        return await deps.call(
            build_status,
            orch,
            session,
            f"Started session {session.short_id} on {session.task_name}.",
        )

    @agent_tool(mcp, errors, "Session status", read_only=True, idempotent=True)
    async def get_session_status(session_id: SessionId) -> StatusResult:
        """Where a session is and everything you need to work on it: design, tests (approved ones
        are locked), the latest failures, the reviewer's feedback, fix attempts left."""
        deps.principal()
        session = await deps.call(orch.get, session_id, session_ref=session_id)
        work = deps.runs.get(session.id)
        running = None
        if work is not None and not work.done.is_set():
            running = run_summary(
                {"status": "running", "reason": work.last_message}, resource_uri(session.id)
            )
            if running is not None:
                running.handle = work.handle
        return await deps.call(
            build_status,
            orch,
            session,
            f"Session {session.short_id} is in {session.phase}.",
            running,
        )

    async def submit_kind(
        kind: str,
        session_id: str,
        files: list[FileItem] | None,
        note: str,
        key: str | None,
        ctx: Context,
    ) -> SubmitResult:
        principal = deps.principal()
        payload = [f.model_dump() for f in files] if files is not None else None
        known = await deps.call(orch.get, session_id, session_ref=session_id)
        stale = deps.runs.get(known.id)
        if stale is not None and stale.done.is_set():
            deps.runs.forget(known.id, stale)
        try:
            session = await run_with_progress(
                lambda progress: orch.submit(
                    session_id,
                    kind,
                    principal,
                    payload,
                    note=note,
                    idempotency_key=key,
                    progress=progress,
                ),
                reporter(ctx),
            )
        except Exception as exc:
            raise await deps.tool_error(exc, session_id) from exc
        return await deps.call(_submit_result, deps, session, kind)

    @agent_tool(mcp, errors, "Submit tests", read_only=False, idempotent=False)
    async def submit_tests(
        session_id: SessionId,
        ctx: Context,
        files: Files = None,
        note: Note = "",
        idempotency_key: IdemKey = None,
    ) -> SubmitResult:
        """In generating_tests: submit test files only (no code). phasegate commits them, runs
        them once against the current code (they should fail) and asks a human to review."""
        return await submit_kind("tests", session_id, files, note, idempotency_key, ctx)

    @agent_tool(mcp, errors, "Submit implementation", read_only=False, idempotent=False)
    async def submit_implementation(
        session_id: SessionId,
        ctx: Context,
        files: Files = None,
        note: Note = "",
        idempotency_key: IdemKey = None,
    ) -> SubmitResult:
        """In generating_implementation: submit the code that makes the approved tests pass
        (approved tests are locked). Then call run_tests."""
        return await submit_kind("implementation", session_id, files, note, idempotency_key, ctx)

    @agent_tool(mcp, errors, "Submit a fix", read_only=False, idempotent=False)
    async def fix_failures(
        session_id: SessionId,
        ctx: Context,
        files: Files = None,
        note: Note = "",
        idempotency_key: IdemKey = None,
    ) -> SubmitResult:
        """In fixing_failures: submit a code fix for the failures or the reviewer's feedback
        (never edit approved tests). Then call run_tests. Each failed run uses one attempt."""
        return await submit_kind("fix", session_id, files, note, idempotency_key, ctx)

    @agent_tool(mcp, errors, "Submit work", read_only=False, idempotent=False)
    async def submit(
        session_id: SessionId,
        kind: Annotated[
            Literal["design", "review", "tests", "implementation", "fix"],
            Field(description="What you submit: the artifact of the phase the session is in"),
        ],
        ctx: Context,
        files: Files = None,
        note: Note = "",
        idempotency_key: IdemKey = None,
    ) -> SubmitResult:
        """Submit the work of the phase the session is in. kind=design in drafting_design: the
        design document only (a human reviews it, then it is locked). kind=review in
        analyzing_failures: your analysis of the failures in note, and no files (a reviewer
        changes no code). tests, implementation and fix work as submit_tests,
        submit_implementation and fix_failures."""
        return await submit_kind(kind, session_id, files, note, idempotency_key, ctx)

    @agent_tool(mcp, errors, "Pre-review a gate", read_only=False, idempotent=False)
    async def pre_review(
        session_id: SessionId,
        verdict: Annotated[
            Literal["approve", "reject"], Field(description="What you suggest the human decides")
        ],
        summary: Annotated[str, Field(max_length=20_000, description="Your review in short")],
        findings: Annotated[
            list[FindingItem],
            Field(max_length=50, description="Each finding: {path, line, comment}"),
        ],
    ) -> SessionResult:
        """Reviewers only, at a human gate when the workflow has pre_review on: attach findings
        (file, line, comment) and a suggested verdict for the human, who still decides. It
        approves nothing; then call wait_for_decision."""
        principal = deps.principal()
        session = await deps.call(
            orch.pre_review,
            session_id,
            principal,
            verdict,
            summary,
            [f.model_dump() for f in findings],
            session_ref=session_id,
        )
        return SessionResult(
            **session_fields(
                orch,
                session,
                f"Your {verdict} suggestion and {len(findings)} finding(s) are attached to the "
                f"{session.phase} gate; a human decides.",
            )
        )

    @agent_tool(mcp, errors, "Run the tests", read_only=False, idempotent=False)
    async def run_tests(session_id: SessionId, ctx: Context) -> RunTestsResult:
        """In running_tests: phasegate runs the approved tests on your newest commit. Pass → final
        human review; fail → fixing_failures with structured failures. A long run returns a
        handle: call run_tests again for its result."""
        return await run_tests_tool(deps, session_id, reporter(ctx))

    @agent_tool(mcp, errors, "Message the reviewer", read_only=False, idempotent=False)
    async def request_approval(
        session_id: SessionId,
        message: Annotated[
            str,
            Field(
                min_length=1,
                max_length=20_000,
                description=("What the reviewer should know or look at"),
            ),
        ],
    ) -> SessionResult:
        """At a human gate: attach your message for the reviewer and notify the humans. It does not
        approve anything; then call wait_for_decision."""
        principal = deps.principal()
        session = await deps.call(
            orch.request_approval, session_id, principal, message, session_ref=session_id
        )
        return SessionResult(
            **session_fields(
                orch,
                session,
                f"Your message is attached to the {session.phase} gate: the reviewers see it "
                "on the dashboard and in `phasegate show`"
                + (
                    ", and phasegate's webhooks tell them."
                    if orch.project.settings.notify.configured
                    else "."
                ),
            )
        )

    @agent_tool(mcp, errors, "Wait for the human", read_only=True, idempotent=True)
    async def wait_for_decision(
        session_id: SessionId,
        ctx: Context,
        timeout_s: Annotated[int, Field(ge=1, le=50, description="At most 50 s")] = 45,
    ) -> DecisionResult:
        """Block until a human decides the gate this session waits at (or resumes it), or the
        timeout passes; then says the decision and the reviewer's comment, or to call again."""
        deps.principal()
        return await decisions.wait(deps, session_id, float(timeout_s), reporter(ctx))

    @agent_tool(mcp, errors, "Claim work", read_only=False, idempotent=False)
    async def claim_next(
        role: Annotated[
            str,
            Field(
                min_length=1,
                max_length=100,
                pattern=r"^[a-z][a-z0-9_-]*$",
                description="designer, tester, coder, reviewer or runner",
            ),
        ],
        lease_s: Annotated[int, Field(ge=60, le=7200, description="How long you hold it")] = 1800,
    ) -> ClaimResult:
        """Lease the session that has waited longest for your role; while you hold the lease,
        nobody else may submit to it. Returns its status, or claimed=false if none waits."""
        from datetime import timedelta

        principal = deps.principal()
        session = await deps.call(orch.claim_next, principal, role, ttl=timedelta(seconds=lease_s))
        if session is None:
            return ClaimResult(
                claimed=False,
                message=f"No session waits for a {role} now.",
                next_action="Call claim_next again later, or list_sessions.",
            )
        status = await deps.call(
            build_status, orch, session, f"You hold session {session.short_id} for {lease_s} s."
        )
        expires = session.lease_expires_at.isoformat() if session.lease_expires_at else None
        return ClaimResult(
            claimed=True,
            message=status.message,
            next_action=status.next_action,
            session=status,
            lease_expires_at=expires,
            lease_epoch=session.lease_epoch,
        )


def _submit_result(deps: Deps, session: Session, kind: str) -> SubmitResult:
    """What a submission did: its commit and paths; for tests, phasegate's first run of them."""
    orch = deps.orch
    ctx = session.context
    entries = {
        "tests": ctx.get("tests"),
        "implementation": ctx.get("implementation"),
        "fix": (ctx.get("fixes") or [{}])[-1],
        "design": (ctx.get("designs") or [{}])[-1],
        "review": {},  # text only: no commit, no paths
    }
    entry: dict[str, Any] = entries[kind] or {}
    red = (
        run_summary(orch.stored_runs(ctx.get("red_run"))[0], resource_uri(session.id))
        if kind == "tests"
        else None
    )
    what = {"tests": "Tests", "implementation": "Implementation", "fix": "Fix", "design": "Design"}
    message = (
        f"Review recorded for the coder; session is now in {session.phase}."
        if kind == "review"
        else f"{what[kind]} committed as {str(entry.get('commit', ''))[:10]} "
        f"({len(entry.get('paths') or [])} file(s)); session is now in {session.phase}."
    )
    if red is not None:
        message += f" phasegate ran the new tests once: {red.status} ({red.reason})."
    result = SubmitResult(
        **session_fields(orch, session, message),
        commit=str(entry.get("commit", "")),
        paths=list(entry.get("paths") or []),
        deleted=list(entry.get("deleted") or []),
        red_run=red,
    )
    return fit(result, RESULT_BUDGET, resource_uri(session.id))
