"""The session commands: start, ls, show, log and the human decisions."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import click

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
from phasegate.entrypoints.timeline import REFUSED, event_lines, refused_paths
from phasegate.entrypoints.wording import command_name, done_words, phase_words
from phasegate.errors import AlreadyActive, StorageBusy, StorageError

if TYPE_CHECKING:
    from rich.text import Text

    from phasegate.domain.session import Session
    from phasegate.entrypoints.cli.remote import Remote
    from phasegate.review_brief import ReviewBrief

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
    from rich.table import Table

    table = Table("id", "task", "phase", "waiting on", "for", "attempts", box=None)
    for v in views:
        phase = v["phase"] + (" (paused)" if v["paused"] else "")
        table.add_row(
            v["id"][:8],
            v["task"],
            phase,
            _waiting_cell(v),
            duration(v["waiting_s"]),
            f"{v['fix_attempts']}/{v['max_fix_attempts']}",
        )
    out.print(table)


def _waiting_cell(view: Mapping[str, Any]) -> Text:
    """Who the session waits on; in yellow, marked stale, when an agent has gone quiet."""
    from rich.text import Text

    if view.get("stale"):  # .get: an older guarded server does not say
        return Text(f"{view['waiting_on']} (stale)", style="yellow")
    return Text(view["waiting_on"] or "-")


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
        _print_remote_brief(remote, shown["id"])
        out.console.rule(style="dim")
        out.print(f"session {shown['id']}  task {shown['task']}  workflow {shown['workflow']}")
        out.print(f"phase    {shown['phase']}{' (paused)' if shown['paused'] else ''}")
        out.print(f"waiting  {shown['waiting']} (for {duration(shown['waiting_s'])})")
        _print_notes(shown["id"][:8], shown.get("context") or {})
        if shown["allowed_actions"]:
            out.print(f"next     {_next_commands(shown['allowed_actions'])}")
        return
    session = ctx.orch.get(session_ref)
    view = ctx.orch.view(session)
    if as_json:
        emit_json({**view, "context": _context_summary(session)})
        return
    _print_brief(ctx, session)
    out.console.rule(style="dim")
    out.print(f"session {session.id}  task {session.task_name}  workflow {session.workflow}")
    out.print(
        f"phase    {session.phase}{' (paused)' if session.paused else ''}  "
        f"version {session.version}"
    )
    out.print(f"waiting  {view['waiting']} (for {duration(view['waiting_s'])})")
    out.print(f"attempts {session.fix_attempts} of {view['max_fix_attempts']}")
    _print_notes(session.short_id, session.context)
    out.print(f"branch   {session.branch}")
    for label, key in (("tests", "tests"), ("implementation", "implementation")):
        entry = session.context.get(key)
        if entry:
            out.print(f"{label:<15}{entry['commit'][:10]}  {', '.join(entry['paths'])}")
    for line in closing_lines(session):
        out.print(line)
    for item in (session.context.get("feedback") or [])[-3:]:
        out.print(f"feedback ({item['by']}): {item['comment']}")
    if view["allowed_actions"]:
        out.print(f"next     {_next_commands(view['allowed_actions'])}")


def _print_brief(ctx: Context, session: Session) -> None:
    """The review brief, first: what is decided, on what evidence, what changed (as the page)."""
    _print_brief_lines(ctx.orch.brief(session), session.short_id, session.task_name)


def _print_remote_brief(remote: Remote, session_id: str) -> None:
    """The brief the server built, as `_print_brief` prints one built here; a server of
    another phasegate version may not build it, or not in these words: then one line."""
    from pydantic import ValidationError

    from phasegate.entrypoints.cli.remote import RemoteError
    from phasegate.entrypoints.web.models import SessionBrief

    try:
        shown = SessionBrief.model_validate(remote.brief(session_id))
    except (RemoteError, ValidationError) as exc:
        why = str(exc).splitlines()[0]
        out.print(
            f"brief    not available from this server ({why}); is it the same phasegate "
            "version as this one?",
            style="yellow",
            highlight=False,
        )
        return
    _print_brief_lines(shown.brief, shown.session_id[:8], shown.task)


def _print_brief_lines(brief: ReviewBrief, short_id: str, task: str) -> None:
    from phasegate.entrypoints.cli.brief import brief_lines

    for text, style in brief_lines(brief, short_id, task):
        out.print(text, style=style, highlight=False)


#: Where a setup error happened, in words.
SETUP_STEPS = {"verify": "the test run", "red_run": "the red run (the first run of the tests)"}
PLAIN_TOKEN = re.compile(r"[\w./:+-]+")  # a setting value shown without quotes


def _print_notes(short_id: str, context: Mapping[str, Any]) -> None:
    """What a human should know before deciding: a setup error, refusals, the configuration."""
    problem = context.get("setup_error")
    if problem:
        where = SETUP_STEPS.get(problem.get("at"), "the test run")
        out.print(f"setup error at {where}: {problem.get('reason')}", style="red")
        out.print(
            f"         fix: {problem.get('fix')}; then: phasegate retry {short_id}", style="red"
        )
    refusals = context.get("refusals") or {}
    if refusals.get("count"):
        n, last = refusals["count"], (refusals.get("recent") or [{}])[-1]
        out.print(
            f"refused  {n} submission{'s' if n != 1 else ''} "
            f"(last: {last.get('cause')} — {refused_paths(last)})",
            style="red",
        )
    config = context.get("config")
    if config:
        for line in _config_lines(config["hash"], config.get("values") or {}):
            out.print(line)


def _config_lines(config_hash: str, values: Mapping[str, Any]) -> list[str]:
    """The configuration a session runs under: its hash and the values that matter most."""
    sandbox = values.get("sandbox") or {}
    return [
        f"config   {config_hash}  test_command={_setting(values.get('test_command'))}  "
        f"max_fix_attempts={_setting(values.get('max_fix_attempts'))}  "
        f"sandbox={_setting(sandbox.get('mode'))}",
        f"         test_timeout_s={_setting(values.get('test_timeout_s'))}  "
        f"junit_path={_setting(values.get('junit_path'))}  "
        f"env_allow={_setting(values.get('env_allow'))}  "
        f"network={'on' if sandbox.get('network') else 'off'}",
    ]


def _setting(value: Any) -> str:
    """A configuration value as one token: `none`, a list, a number, text (quoted if needed)."""
    if value is None or value == []:
        return "none"
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str) and not PLAIN_TOKEN.fullmatch(value):
        return json.dumps(value)  # spaces, quotes and control characters shown unambiguously
    return str(value)


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
        style = "red" if event["action"] == REFUSED else None  # an agent overstepped: stand out
        for line in event_lines(event):
            out.print(line, style=style)


def _decision(action: str, doc: str) -> Callable[..., None]:
    # A missing -m is the session's rule (reject needs one, retry after a setup error not):
    # the orchestrator says so in one line, so the option is never `required` here.
    @click.argument("session_ref", metavar="SESSION")
    @click.option("-m", "--message", "message", default="", help="Your comment.")
    @click.option("--json", "as_json", is_flag=True, help="Print the session as JSON.")
    @click.option(
        "--passphrase-stdin",
        is_flag=True,
        help="A guarded server's passphrase from standard input's first line (else asked).",
    )
    @click.option(
        "--idempotency-key",
        "key",
        metavar="KEY",
        help="Run again with the same KEY to get the first run's result (default: a new one).",
    )
    @pass_ctx
    def command(
        ctx: Context,
        session_ref: str,
        message: str,
        as_json: bool,
        passphrase_stdin: bool,
        key: str | None,
    ) -> None:
        key = key or str(uuid.uuid4())
        remote = ctx.remote()
        if remote is not None:  # a guarded server: decide through it, with the passphrase
            seen = remote.session(session_ref)
            secret = read_passphrase(stdin=passphrase_stdin)
            view = remote.decide(seen["id"], action, message, seen["version"], secret, key)
        else:
            view = ctx.orch.view(_decide(ctx, session_ref, action, message, key))
        if as_json:
            emit_json(view)
        else:
            out.print(_decided_line(action, view))

    command.__doc__ = doc
    return command


def _decide(ctx: Context, session_ref: str, action: str, message: str, key: str) -> Session:
    """Decide once; when the commit's outcome is unknown, ask again with the same key."""
    human = ctx.human()
    current = ctx.orch.get(session_ref)

    def attempt() -> Session:
        return ctx.orch.decide(
            current.id,
            action,
            human,
            comment=message,
            expected_version=current.version,
            idempotency_key=key,
        )

    try:
        return attempt()
    except StorageBusy:
        raise  # nothing changed: the lock was never taken
    except StorageError:
        # It landed (the key replays it) or it didn't (this makes it): the real outcome.
        return attempt()


def _next_commands(allowed: Sequence[str]) -> str:
    """What can happen next: the agent's action, then the commands a human would type."""
    from phasegate.orchestrator import HUMAN_ACTIONS  # loaded already unless a server answered

    agent = [a for a in allowed if a not in HUMAN_ACTIONS]
    human = [command_name(a) for a in allowed if a in HUMAN_ACTIONS]
    parts = [f"agent: {', '.join(agent)}"] if agent else []
    return " · ".join([*parts, f"you: {', '.join(human)}"] if human else parts)


def _decided_line(action: str, view: Mapping[str, Any]) -> str:
    """What a decision did and what the session does now, in words (never `reopen_tests`)."""
    short, phase = view["id"][:8], phase_words(view["phase"])
    if view["paused"]:
        now = f"it is paused in {phase}; phasegate resume {short} lets it go on"
    elif not view["allowed_actions"]:
        now = f"it is now {phase}"
    else:
        now = f"it is now in {phase}, {view['waiting']}"
    return f"{done_words(action)} session {short}; {now}"


for _action, _doc in (
    ("approve", "Approve the gate a session waits at."),
    ("reject", "Reject the gate with feedback (-m)."),
    (
        "retry",
        "After the fix loop gave up: retry with guidance (-m); after a setup error without "
        "-m: run again under today's phasegate.toml.",
    ),
    ("rerun_tests", "Run the approved tests again (after a setup error or a flagged run)."),
    ("reopen_tests", "After the fix loop gave up: send the session back to write tests."),
    ("pause", "Pause a session; resume returns it to the same phase."),
    ("resume", "Resume a paused session."),
    ("cancel", "Cancel a session for good."),
):
    cli.command(command_name(_action))(_decision(_action, _doc))
