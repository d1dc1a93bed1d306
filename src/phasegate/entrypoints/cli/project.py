"""`phasegate init` and the task commands."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from phasegate import credentials, harness
from phasegate.entrypoints.cli.base import Context, cli, emit_json, out, pass_ctx, project_key
from phasegate.errors import ConfigError, Unauthenticated

if TYPE_CHECKING:
    from phasegate.config import Project

# --- project -----------------------------------------------------------------


DEFAULT_CONFIG = """\
# phasegate settings; every key is described in phasegate's docs/configuration.md
test_command = "python -m pytest -q"
test_timeout_s = 600
max_fix_attempts = 5
"""


@cli.command()
@click.option(
    "--name",
    default=lambda: os.environ.get("USER") or "me",
    show_default="$USER",
    help="Your name as a human reviewer.",
)
@click.option(
    "--agent",
    "agents",
    multiple=True,
    metavar="NAME",
    help="Also set up this agent harness: claude, codex, gemini or cursor (repeatable).",
)
@click.pass_obj
def init(ctx: Context, name: str, agents: tuple[str, ...]) -> None:
    """Set up phasegate in this git repository and create your human token."""
    from phasegate.config import CONFIG_FILE, Project, load_settings
    from phasegate.orchestrator import Orchestrator

    harnesses = _checked_harnesses(agents)  # before anything is written
    start = (ctx.project_dir or Path.cwd()).resolve()
    root = _repository_root(start)
    if root != start:
        out.print(f"{start} is inside the repository {root}; setting phasegate up there")
    harness.check(harnesses, root)  # a harness config init can't merge: refused, nothing written
    config = root / CONFIG_FILE
    if not config.exists() and not _pyproject_has_table(root):
        config.write_text(DEFAULT_CONFIG, encoding="utf-8")
        out.print(f"wrote {config}")
    project = Project(root, load_settings(root), state_dir=ctx.state_dir)
    orch = Orchestrator.open(project)
    ctx.use(orch)
    _exclude_state_dir(root)
    _set_up_agents(ctx, root, project, harnesses)
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


def _repository_root(start: Path) -> Path:
    """The top of the git work tree `start` is in: init from a subdirectory sets up all of it."""
    if not start.is_dir():
        raise ConfigError(f"{start} is not a directory; run `phasegate init` in your repository")
    try:
        found = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"],
            cwd=start,
            capture_output=True,
            text=True,
            env={**os.environ, "LC_ALL": "C"},  # git's own words, in English, to recognise
        )
    except OSError as exc:
        raise ConfigError(
            f"can't run git ({exc.strerror}); install git, then run `phasegate init` again"
        ) from None
    if found.returncode == 0:
        return Path(found.stdout.removesuffix("\n")).resolve()
    said = (found.stderr.strip().splitlines() or [f"git exited with {found.returncode}"])[0]
    if "not a git repository" in said:
        raise ConfigError(f"{start} is not inside a git repository; run `git init` first")
    # A bare repository, or one git won't trust (safe.directory): git's words say which.
    raise ConfigError(
        f"git can't use the repository at {start} ({said.removeprefix('fatal: ')}); "
        "fix that, then run `phasegate init` again"
    )


def _pyproject_has_table(root: Path) -> bool:
    try:
        return "[tool.phasegate]" in (root / "pyproject.toml").read_text(encoding="utf-8")
    except OSError:
        return False


def _checked_harnesses(given: tuple[str, ...]) -> list[str]:
    """The harnesses `--agent` names, in order, once each; ConfigError for one we can't set up."""
    names = [n.strip().lower() for value in given for n in value.split(",") if n.strip()]
    for chosen in names:
        if chosen not in harness.HARNESSES:
            raise ConfigError(
                f"init can't set up agent {chosen!r}; use --agent claude, codex, gemini or cursor"
            )
    return list(dict.fromkeys(names))


def _set_up_agents(ctx: Context, root: Path, project: Project, harnesses: list[str]) -> None:
    """Register phasegate's MCP server (always in `.mcp.json`) and each harness's settings."""
    launcher, note = harness.find_launcher()
    # A tool call may wait for a whole test run (submit_tests' red run, run_tests).
    server = harness.McpServer(launcher, tool_timeout_s=int(project.settings.test_timeout_s) + 60)
    registered = False
    if "claude" not in harnesses:
        line = harness.register_mcp_json(root, server)
        registered = "already set up" not in line
        if registered:
            out.print(line)
    if note and (harnesses or registered):
        out.print(note)
    for chosen in harnesses:
        setup = harness.set_up(chosen, root, server, _agent_token(ctx, root, chosen))
        out.print(f"{setup.title}:")
        for line in setup.wrote:
            out.print(f"  {line}")
        out.print(f"  {setup.token}")
        out.print("  still to do:")
        for step in setup.todo:
            out.print(f"    - {step}")
        out.print("  can't enforce:")
        for gap in setup.gaps:
            out.print(f"    - {gap}")
    if harnesses:
        out.print(harness.GUARDED)


def _agent_token(ctx: Context, root: Path, chosen: str) -> harness.AgentToken | None:
    """The agent token for a harness with a per-user file: the one it holds if it still works,
    else a new agent's (roles of the stdio agent)."""
    if chosen not in harness.TOKEN_FILES:
        return None
    from phasegate.entrypoints.mcp.stdio import STDIO_ROLES

    stored = harness.stored_agent_token(root, chosen)
    if stored:
        try:
            principal = ctx.orch.authenticate(stored)
            if not principal.is_human:
                return harness.AgentToken(principal.name, stored, new=False)
        except Unauthenticated:
            pass
    name = ctx.orch.unused_principal_name(chosen)
    principal, token = ctx.orch.add_principal("agent", name, STDIO_ROLES)
    return harness.AgentToken(principal.name, token, new=True)


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
@click.argument("design", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option("--request", help="A short request instead of a design (the spec workflow).")
@click.option("--name", help="A short name (default: the file's name, or the request's words).")
@click.option("--json", "as_json", is_flag=True, help="Print the task as JSON.")
@pass_ctx
def task_add(
    ctx: Context, design: Path | None, request: str | None, name: str | None, as_json: bool
) -> None:
    """Add a design document, or a short request (--request) for a designer, as a task."""
    if request is not None and design is None:
        row = ctx.orch.tasks.add_request(request, name)
    elif design is not None and request is None:
        row = ctx.orch.add_task(design, name)
    else:
        raise click.UsageError("pass a design file or --request TEXT (one of them)")
    if as_json:
        emit_json(_task_json(row))
        return
    out.print(f"task {row['name']} ({row['id'][:8]}) ← {row['design_path']}")
    if request is not None:
        out.print(f"start it with: phasegate start {row['name']} --workflow spec")


@task.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def task_ls(ctx: Context, as_json: bool) -> None:
    """List tasks."""
    from rich.table import Table

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
