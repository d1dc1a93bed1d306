"""The `phasegate` command line. Every command calls the orchestrator; errors are one line."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.table import Table

from phasegate import credentials
from phasegate.config import CONFIG_FILE, Project, load_settings, open_project
from phasegate.domain.principal import Principal
from phasegate.domain.session import Session
from phasegate.entrypoints.timeline import event_lines
from phasegate.errors import PhasegateError, Unauthenticated
from phasegate.orchestrator import Orchestrator

out = Console(highlight=False, soft_wrap=True, markup=False)  # agents write some of what we print

DEFAULT_CONFIG = """\
# phasegate settings: https://github.com/phasegate/phasegate#configuration
test_command = "python -m pytest -q"
test_timeout_s = 600
max_fix_attempts = 5
"""


class Context:
    """Opens the project and orchestrator lazily, so `--help` never touches the disk."""

    def __init__(self, project_dir: Path | None) -> None:
        self.project_dir = project_dir
        self._orch: Orchestrator | None = None

    @property
    def orch(self) -> Orchestrator:
        if self._orch is None:
            self._orch = Orchestrator.open(open_project(self.project_dir))
        return self._orch

    def human(self) -> Principal:
        """The human principal whose token `phasegate init` stored for this project."""
        key = project_key(self.orch.project)
        token = credentials.stored_human_token(key)
        if token is None:
            raise Unauthenticated(
                f"no human token for {key}; run `phasegate init` here, or set PHASEGATE_TOKEN "
                "to a human token"
            )
        principal = self.orch.authenticate(token)
        if not principal.is_human:
            raise Unauthenticated(
                "PHASEGATE_TOKEN holds an agent token; the CLI decides as a human"
            )
        return principal


def project_key(project: Project) -> str:
    return str(project.root)


pass_ctx = click.make_pass_decorator(Context)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--project",
    "project_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The project directory (default: found from the current directory).",
)
@click.version_option(package_name="phasegate")
@click.pass_context
def cli(click_ctx: click.Context, project_dir: Path | None) -> None:
    """phasegate walks AI coding agents through design → tests → review → code, durably."""
    click_ctx.obj = Context(project_dir)


# --- project -----------------------------------------------------------------


@cli.command()
@click.option(
    "--name",
    default=lambda: os.environ.get("USER") or "me",
    show_default="$USER",
    help="Your name as a human reviewer.",
)
@click.pass_obj
def init(ctx: Context, name: str) -> None:
    """Set up phasegate in this git repository and create your human token."""
    root = (ctx.project_dir or Path.cwd()).resolve()
    if not (root / ".git").exists():
        raise click.ClickException(f"{root} is not a git repository; run `git init` first")
    config = root / CONFIG_FILE
    if not config.exists() and not _pyproject_has_table(root):
        config.write_text(DEFAULT_CONFIG, encoding="utf-8")
        out.print(f"wrote {config}")
    project = Project(root, load_settings(root))
    orch = Orchestrator.open(project)
    ctx._orch = orch
    _exclude_state_dir(root)
    _register_mcp_server(root)
    key = project_key(project)
    existing = credentials.stored_human_token(key)
    if existing:
        try:
            who = orch.authenticate(existing)
            out.print(f"phasegate is set up in {root}; you are {who.name} (token already stored)")
            return
        except Unauthenticated:
            pass
    principal, token = orch.add_principal("human", orch.unused_principal_name(name))
    path = credentials.store_human_token(key, principal.name, token)
    out.print(f"phasegate is set up in {root} (state in {project.state_dir})")
    out.print(f"your human token for {principal.name}: {token}")
    out.print(f"  (stored in {path}, outside the repository; log in to the dashboard with it)")
    out.print("next: phasegate task add <design.md>, then phasegate start <design.md>")


def _pyproject_has_table(root: Path) -> bool:
    try:
        return "[tool.phasegate]" in (root / "pyproject.toml").read_text(encoding="utf-8")
    except OSError:
        return False


def _register_mcp_server(root: Path) -> None:
    """Add phasegate to the project's `.mcp.json` (Claude Code and others read it)."""
    path = root / ".mcp.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except (OSError, ValueError) as exc:
        out.print(f"left {path} alone: it is not valid JSON ({exc}); add phasegate by hand")
        return
    servers = data.setdefault("mcpServers", {}) if isinstance(data, dict) else None
    if not isinstance(servers, dict):
        out.print(f"left {path} alone: its mcpServers is not an object; add phasegate by hand")
        return
    if "phasegate" in servers:
        return
    command = shutil.which("phasegate") or str(Path(sys.argv[0]).resolve())
    servers["phasegate"] = {"command": command, "args": ["mcp", "--project", "."]}
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    out.print(f"added the phasegate MCP server to {path} (agents: `phasegate mcp`)")


def _exclude_state_dir(root: Path) -> None:
    """Keep .phasegate/ out of the user's `git status` without touching .gitignore."""
    exclude = root / ".git" / "info" / "exclude"
    if not exclude.parent.is_dir():
        return
    text = exclude.read_text(encoding="utf-8") if exclude.exists() else ""
    if "/.phasegate/" not in text.splitlines():
        exclude.write_text(
            text + ("" if text.endswith("\n") or not text else "\n") + "/.phasegate/\n",
            encoding="utf-8",
        )


# --- tasks -------------------------------------------------------------------


@cli.group()
def task() -> None:
    """Tasks: design documents to work on."""


@task.command("add")
@click.argument("design", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--name", help="A short name (default: the file's name).")
@click.option("--json", "as_json", is_flag=True, help="Print the task as JSON.")
@pass_ctx
def task_add(ctx: Context, design: Path, name: str | None, as_json: bool) -> None:
    """Add a design document as a task."""
    row = ctx.orch.add_task(design, name)
    if as_json:
        emit_json(_task_json(row))
    else:
        out.print(f"task {row['name']} ({row['id'][:8]}) ← {row['design_path']}")


@task.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def task_ls(ctx: Context, as_json: bool) -> None:
    """List tasks."""
    rows = ctx.orch.list_tasks()
    if as_json:
        emit_json([_task_json(r) for r in rows])
        return
    table = Table("id", "name", "design", box=None)
    for r in rows:
        table.add_row(r["id"][:8], r["name"], r["design_path"])
    out.print(table if rows else "no tasks yet; add one with phasegate task add <design.md>")


def _task_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "design_path": row["design_path"],
        "created_at": row["created_at"].isoformat(),
    }


# --- sessions ------------------------------------------------------------------


@cli.command()
@click.argument("task_ref", metavar="TASK")
@click.option("--workflow", help="Workflow name (default from phasegate.toml: tdd).")
@click.option("--json", "as_json", is_flag=True, help="Print the new session as JSON.")
@pass_ctx
def start(ctx: Context, task_ref: str, workflow: str | None, as_json: bool) -> None:
    """Start a session on a task (id, name, or design file; added if new)."""
    session = ctx.orch.start_session(task_ref, ctx.human(), workflow=workflow)
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
    sessions = ctx.orch.list_sessions(include_finished=show_all, limit=1000)
    sessions.sort(key=lambda s: (ctx.orch.view(s)["waiting_on"] != "human",))
    views = [ctx.orch.view(s) for s in sessions]
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
            _duration(v["waiting_s"]),
            f"{v['fix_attempts']}/{v['max_fix_attempts']}",
        )
    out.print(table)


@cli.command()
@click.argument("session_ref", metavar="SESSION")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def show(ctx: Context, session_ref: str, as_json: bool) -> None:
    """Show a session: its phase, what it waits on and for how long, and its evidence."""
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
    out.print(f"waiting  {view['waiting']} (for {_duration(view['waiting_s'])})")
    out.print(f"attempts {session.fix_attempts} of {view['max_fix_attempts']}")
    out.print(f"branch   {session.branch}")
    for label, key in (("tests", "tests"), ("implementation", "implementation")):
        entry = session.context.get(key)
        if entry:
            out.print(f"{label:<15}{entry['commit'][:10]}  {', '.join(entry['paths'])}")
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
    @pass_ctx
    def command(ctx: Context, session_ref: str, message: str, as_json: bool) -> None:
        human = ctx.human()
        current = ctx.orch.get(session_ref)
        session = ctx.orch.decide(
            current.id, action, human, comment=message, expected_version=current.version
        )
        if as_json:
            emit_json(ctx.orch.view(session))
        else:
            out.print(
                f"{action}: session {session.id[:8]} is now in {session.phase}"
                + (" (paused)" if session.paused else "")
            )

    command.__doc__ = doc
    return command


for _action, _needs, _doc in (
    ("approve", False, "Approve the gate a session waits at."),
    ("reject", True, "Reject the gate with feedback (-m)."),
    ("retry", True, "After the fix loop gave up: retry with guidance (-m)."),
    ("reopen_tests", False, "After the fix loop gave up: send the session back to write tests."),
    ("pause", False, "Pause a session; resume returns it to the same phase."),
    ("resume", False, "Resume a paused session."),
    ("cancel", False, "Cancel a session for good."),
):
    cli.command(_action.replace("_", "-"))(_decision(_action, _needs, _doc))


# --- audit and workflows ----------------------------------------------------------


@cli.group()
def audit() -> None:
    """The audit trail's integrity."""


@audit.command("verify")
@click.argument("session_ref", metavar="[SESSION]", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def audit_verify(ctx: Context, session_ref: str | None, as_json: bool) -> None:
    """Recompute the hash chains and report the first broken link."""
    reports = ctx.orch.verify_audit(session_ref)
    broken = [r for r in reports if not r.ok]
    if as_json:
        emit_json([r.__dict__ for r in reports])
    else:
        for r in broken:
            out.print(f"session {r.session_id[:8]}: BROKEN at event {r.broken_at}: {r.reason}")
        events = sum(r.events for r in reports)
        out.print(f"{len(reports) - len(broken)} of {len(reports)} chains verify ({events} events)")
    if broken:
        sys.exit(1)


@cli.group()
def workflow() -> None:
    """Workflows: phases, transitions and gates."""


@workflow.command("show")
@click.argument("name", required=False)
@click.option("--format", "fmt", type=click.Choice(["text", "mermaid", "json"]), default="text")
@pass_ctx
def workflow_show(ctx: Context, name: str | None, fmt: str) -> None:
    """Show a workflow (default: the project's) as text, Mermaid or JSON."""
    from phasegate.domain.workflow import BUILTIN_WORKFLOWS

    try:
        wf = ctx.orch.project.workflow(name)
    except PhasegateError:
        if name not in BUILTIN_WORKFLOWS and name is not None:
            raise
        wf = BUILTIN_WORKFLOWS[name or "tdd"]
    if fmt == "json":
        emit_json(wf.to_json())
    elif fmt == "mermaid":
        click.echo(wf.to_mermaid())
    else:
        out.print(f"workflow {wf.name}: {wf.description} (max_fix_attempts {wf.max_fix_attempts})")
        for p in wf.phases:
            who = p.role or p.kind.value
            out.print(f"  {p.name:<28} {p.kind.value:<6} {who:<8} {p.description}")
        for t in wf.transitions:
            out.print(f"  {t.source} --{t.action}--> {t.target}  [{t.actor.value}]")


@cli.command()
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@click.option(
    "--branches",
    is_flag=True,
    help="Also delete the sessions' branches (the audit trail names their commits).",
)
@pass_ctx
def gc(ctx: Context, dry_run: bool, branches: bool) -> None:
    """Remove the worktrees of completed, cancelled and failed sessions."""
    from phasegate.cleanup import collect_finished_worktrees

    removed = collect_finished_worktrees(ctx.orch, dry_run=dry_run, delete_branches=branches)
    verb = "would remove" if dry_run else "removed"
    for item in removed:
        status = f"failed: {item.error}" if item.error else verb
        out.print(f"{item.session_id[:8]} ({item.phase}) {item.worktree}: {status}")
    kept = "" if branches else "; branches kept (--branches deletes them)"
    out.print(f"{len(removed)} finished session worktree(s) {verb}{kept}")
    if any(item.error for item in removed):
        sys.exit(1)


# --- tokens ---------------------------------------------------------------------------


@cli.group()
def token() -> None:
    """Principals and their tokens."""


@token.command("add")
@click.option("--human", "human_name", help="Create a human principal with this name.")
@click.option("--agent", "agent_name", help="Create an agent principal with this name.")
@click.option("--role", "roles", multiple=True, help="The agent's role (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print {name, kind, token} as JSON.")
@pass_ctx
def token_add(
    ctx: Context,
    human_name: str | None,
    agent_name: str | None,
    roles: tuple[str, ...],
    as_json: bool,
) -> None:
    """Create a principal and print its token (shown once)."""
    if bool(human_name) == bool(agent_name):
        raise click.UsageError("give exactly one of --human NAME or --agent NAME --role ROLE")
    ctx.human()  # only a human manages principals
    kind, name = ("human", human_name) if human_name else ("agent", agent_name)
    assert name is not None
    principal, secret = ctx.orch.add_principal(kind, name, roles)
    if as_json:
        emit_json({"name": principal.name, "kind": kind, "token": secret, "roles": list(roles)})
    else:
        out.print(f"{kind} {principal.name} token (shown once): {secret}")


@token.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def token_ls(ctx: Context, as_json: bool) -> None:
    """List principals (never their tokens)."""
    rows = ctx.orch.list_principals()
    if as_json:
        emit_json(rows)
        return
    table = Table("name", "kind", "roles", "created", "status", box=None)
    for r in rows:
        table.add_row(
            r["name"],
            r["kind"],
            ", ".join(r["roles"]),
            r["created_at"][:19],
            "revoked" if r["revoked"] else "active",
        )
    out.print(table)


@token.command("revoke")
@click.argument("name")
@pass_ctx
def token_revoke(ctx: Context, name: str) -> None:
    """Revoke a principal's token."""
    ctx.human()
    ctx.orch.revoke_principal(name)
    out.print(f"revoked {name}")


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def fail(message: str) -> NoReturn:
    click.echo(f"phasegate: {message}", err=True)
    sys.exit(1)


def main() -> None:
    """Run the CLI; PhasegateErrors become one line on stderr and exit code 1."""
    from phasegate.workspace import WorkspaceError

    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        fail("aborted")
    except (PhasegateError, WorkspaceError) as exc:
        fail(str(exc))


# --- servers and workers (each lives in its own module) ------------------------------------


@cli.command()
@click.option(
    "--role",
    "roles",
    required=True,
    help="The role(s) to work as, comma-separated: tester, coder, runner.",
)
@click.option(
    "--agent",
    "adapter",
    type=click.Choice(["command", "script"]),
    default="command",
    show_default=True,
    help="How to do the work (the runner role always runs the tests).",
)
@click.option(
    "--script-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="For --agent script: the folder of prepared files.",
)
@click.option(
    "--script-delay",
    type=float,
    default=0.0,
    help="For --agent script: seconds of simulated thinking per piece of work.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Sessions worked on at once.",
)
@click.option("--name", help="The worker's agent name, when it creates its own principal.")
@click.option(
    "--lease-ttl",
    type=click.FloatRange(1, 3600),
    default=30.0,
    show_default=True,
    help="Seconds a claim lasts without a heartbeat (heartbeats every third of it).",
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(0.05, 60),
    default=1.0,
    show_default=True,
    help="Seconds between claims when there is no work.",
)
@click.option("--metrics-file", type=click.Path(dir_okay=False, path_type=Path), hidden=True)
@pass_ctx
def worker(
    ctx: Context,
    roles: str,
    adapter: str,
    script_dir: Path | None,
    script_delay: float,
    concurrency: int,
    name: str | None,
    lease_ttl: float,
    poll_interval: float,
    metrics_file: Path | None,
) -> None:
    """Claim sessions for ROLE, run the agent on them and submit its work, until SIGTERM."""
    from phasegate import worker as workers

    role_list = [r.strip() for r in roles.split(",") if r.strip()]
    principal = workers.worker_principal(ctx.orch, role_list, name, ctx.human)
    agents = workers.agents_for(ctx.orch, role_list, adapter, script_dir, script_delay)
    options = workers.WorkerOptions(
        concurrency=concurrency, lease_ttl_s=lease_ttl, poll_interval_s=poll_interval
    )
    workers.configure_logging()
    on_timing = workers.timing_file(metrics_file) if metrics_file else None
    workers.Worker(ctx.orch, principal, agents, options, on_timing=on_timing).run()


@cli.command()
@click.option(
    "--project",
    "mcp_project",
    type=click.Path(file_okay=False, path_type=Path),
    help="The project directory (default: found from the current directory).",
)
@click.pass_obj
def mcp(ctx: Context, mcp_project: Path | None) -> None:
    """Serve MCP on stdin/stdout for a local agent (claude mcp add phasegate -- phasegate mcp)."""
    from phasegate.entrypoints.mcp.stdio import serve_stdio

    serve_stdio(mcp_project or ctx.project_dir)


@cli.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Interface to bind (keep 127.0.0.1 unless behind a TLS proxy).",
)
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="TCP port."
)
@pass_ctx
def serve(ctx: Context, host: str, port: int) -> None:
    """Serve the dashboard, the JSON API, live events, /metrics (and /mcp) over HTTP."""
    from phasegate.entrypoints.web.server import serve as serve_http

    serve_http(open_project(ctx.project_dir), host, port)


@cli.command()
@click.option("--yes", is_flag=True, help="Decide both gates for you instead of waiting.")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-project"),
    show_default=True,
    help="Where to create the example project (reused if it is a previous demo).",
)
def demo(yes: bool, directory: Path) -> None:
    """Run a whole session on a bundled example, driven over MCP by a scripted agent."""
    from phasegate.demo import run_demo

    sys.exit(run_demo(directory, yes=yes, say=lambda line: out.print(line)))
