"""`phasegate init` and the task commands."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from phasegate import credentials
from phasegate.config import CONFIG_FILE, Project, load_settings
from phasegate.entrypoints.cli.base import Context, cli, emit_json, out, pass_ctx, project_key
from phasegate.errors import Unauthenticated
from phasegate.orchestrator import Orchestrator

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
    project = Project(root, load_settings(root), state_dir=ctx.state_dir)
    orch = Orchestrator.open(project)
    ctx.use(orch)
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
