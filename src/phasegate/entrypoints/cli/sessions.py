"""The session commands: start, ls, show, log and the human decisions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
from rich.table import Table

from phasegate.domain.session import Session
from phasegate.entrypoints.cli.base import (
    Context,
    cli,
    duration,
    emit_json,
    out,
    pass_ctx,
    read_passphrase,
)
from phasegate.entrypoints.cli.merging import closing_lines
from phasegate.entrypoints.timeline import event_lines
from phasegate.errors import AlreadyActive

# --- sessions ------------------------------------------------------------------


@cli.command()
@click.argument("task_ref", metavar="TASK")
@click.option("--workflow", help="Workflow name (default from phasegate.toml: tdd).")
@click.option("--again", is_flag=True, help="Start another session if one is in progress.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print the new (or the one in progress) as JSON."
)
@pass_ctx
def start(ctx: Context, task_ref: str, workflow: str | None, again: bool, as_json: bool) -> None:
    """Start a session on a task (id, name, or design file; added if new)."""
    try:
        session = ctx.orch.start_session(task_ref, ctx.human(), workflow=workflow, again=again)
    except AlreadyActive as exc:
        if not as_json:
            raise
        emit_json({**ctx.orch.view(ctx.orch.get(exc.session_id)), "existing": True})
        return
    if as_json:
        emit_json(ctx.orch.view(session))
    else:
        out.print(f"started session {session.id[:8]} on {session.task_name}: {session.phase}")
        out.print(f"worktree {session.context.get('worktree')}, branch {session.branch}")


@cli.command("ls")
@click.option("--all", "show_all", is_flag=True, help="Include completed and cancelled sessions.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def ls_cmd(ctx: Context, show_all: bool, as_json: bool) -> None:
    """List sessions, those waiting on a human first."""
    remote = ctx.remote()
    if remote is not None:
        views = remote.sessions(include_finished=show_all)
    else:
        views = [
            ctx.orch.view(s) for s in ctx.orch.list_sessions(include_finished=show_all, limit=1000)
        ]
    views.sort(key=lambda v: v["waiting_on"] != "human")
    if as_json:
        emit_json(views)
        return
    if not views:
        out.print("no sessions" + ("" if show_all else " in progress (--all shows finished ones)"))
        return
    table = Table("id", "task", "phase", "waiting on", "for", "attempts", box=None)
    for v in views:
        phase = v["phase"] + (" (paused)" if v["paused"] else "")
        table.add_row(
            v["id"][:8],
            v["task"],
            phase,
            v["waiting_on"] or "-",
            duration(v["waiting_s"]),
            f"{v['fix_attempts']}/{v['max_fix_attempts']}",
        )
    out.print(table)


@cli.command()
@click.argument("session_ref", metavar="SESSION")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def show(ctx: Context, session_ref: str, as_json: bool) -> None:
    """Show a session: its phase, what it waits on and for how long, and its evidence."""
    remote = ctx.remote()
    if remote is not None:
        shown = remote.session(session_ref)
        if as_json:
            emit_json(shown)
            return
        out.print(f"session {shown['id']}  task {shown['task']}  workflow {shown['workflow']}")
        out.print(f"phase    {shown['phase']}{' (paused)' if shown['paused'] else ''}")
        out.print(f"waiting  {shown['waiting']} (for {duration(shown['waiting_s'])})")
        if shown["allowed_actions"]:
            out.print(f"next     {', '.join(shown['allowed_actions'])}")
        return
    session = ctx.orch.get(session_ref)
    view = ctx.orch.view(session)
    if as_json:
        emit_json({**view, "context": _context_summary(session)})
        return
    out.print(f"session {session.id}  task {session.task_name}  workflow {session.workflow}")
    out.print(
        f"phase    {session.phase}{' (paused)' if session.paused else ''}  "
        f"version {session.version}"
    )
    out.print(f"waiting  {view['waiting']} (for {duration(view['waiting_s'])})")
    out.print(f"attempts {session.fix_attempts} of {view['max_fix_attempts']}")
    out.print(f"branch   {session.branch}")
    for label, key in (("tests", "tests"), ("implementation", "implementation")):
        entry = session.context.get(key)
        if entry:
            out.print(f"{label:<15}{entry['commit'][:10]}  {', '.join(entry['paths'])}")
    for line in closing_lines(session):
        out.print(line)
    results = session.context.get("test_results") or session.context.get("red_run")
    if results:
        out.print(f"last run {results.get('status')}: {results.get('reason')}")
        for warning in results.get("warnings") or []:
            out.print(f"warning  {warning}")
    for item in (session.context.get("feedback") or [])[-3:]:
        out.print(f"feedback ({item['by']}): {item['comment']}")
    request = session.context.get("approval_request")
    if request and request.get("phase") == session.phase:
        out.print(f"agent says: {request['message']}")
    if view["allowed_actions"]:
        out.print(f"next     {', '.join(view['allowed_actions'])}")


def _context_summary(session: Session) -> dict[str, Any]:
    ctx = dict(session.context)
    if isinstance(ctx.get("design"), str) and len(ctx["design"]) > 4000:
        ctx["design"] = ctx["design"][:4000] + "… (cut; see the design file)"
    return ctx


@cli.command()
@click.argument("session_ref", metavar="SESSION")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def log(ctx: Context, session_ref: str, as_json: bool) -> None:
    """Show a session's audit trail: who did what, when, with which commit."""
    events = ctx.orch.timeline(session_ref)
    if as_json:
        emit_json(events)
        return
    for event in events:
        for line in event_lines(event):
            out.print(line)


def _decision(action: str, needs_message: bool, doc: str) -> Callable[..., None]:
    @click.argument("session_ref", metavar="SESSION")
    @click.option(
        "-m",
        "--message",
        "message",
        required=needs_message,
        default=None if needs_message else "",
        help="Your comment" + (" (required)." if needs_message else "."),
    )
    @click.option("--json", "as_json", is_flag=True, help="Print the session as JSON.")
    @click.option(
        "--passphrase-stdin",
        is_flag=True,
        help="A guarded server's passphrase from standard input's first line (else asked).",
    )
    @pass_ctx
    def command(
        ctx: Context, session_ref: str, message: str, as_json: bool, passphrase_stdin: bool
    ) -> None:
        remote = ctx.remote()
        if remote is not None:  # a guarded server: decide through it, with the passphrase
            seen = remote.session(session_ref)
            secret = read_passphrase(stdin=passphrase_stdin)
            view = remote.decide(seen["id"], action, message, seen["version"], secret)
        else:
            human = ctx.human()
            current = ctx.orch.get(session_ref)
            session = ctx.orch.decide(
                current.id, action, human, comment=message, expected_version=current.version
            )
            view = ctx.orch.view(session)
        if as_json:
            emit_json(view)
        else:
            out.print(
                f"{action}: session {view['id'][:8]} is now in {view['phase']}"
                + (" (paused)" if view["paused"] else "")
            )

    command.__doc__ = doc
    return command


# A missing -m is the session's rule (reject needs one, retry after a setup error not):
# the orchestrator says so in one line, so no option is `required` here.
for _action, _needs, _doc in (
    ("approve", False, "Approve the gate a session waits at."),
    ("reject", False, "Reject the gate with feedback (-m)."),
    (
        "retry",
        False,
        "After the fix loop gave up: retry with guidance (-m); after a setup error: "
        "run again under the fixed configuration.",
    ),
    ("rerun_tests", False, "Run the approved tests again (after a setup error or a flagged run)."),
    ("reopen_tests", False, "After the fix loop gave up: send the session back to write tests."),
    ("pause", False, "Pause a session; resume returns it to the same phase."),
    ("resume", False, "Resume a paused session."),
    ("cancel", False, "Cancel a session for good."),
):
    cli.command(_action.replace("_", "-"))(_decision(_action, _needs, _doc))
