"""Audit, workflows, cleanup and tokens."""

from __future__ import annotations

import sys

import click
from rich.table import Table

from phasegate.domain.audit import ChainReport
from phasegate.entrypoints.cli.base import Context, cli, emit_json, out, pass_ctx
from phasegate.errors import PhasegateError

# --- audit and workflows ----------------------------------------------------------


@cli.group()
def audit() -> None:
    """The audit trail's integrity."""


@audit.command("verify")
@click.argument("session_ref", metavar="[SESSION]", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def audit_verify(ctx: Context, session_ref: str | None, as_json: bool) -> None:
    """Check the keyed hash chains and replay them against the sessions; report what is broken."""
    reports = ctx.orch.verify_audit(session_ref)
    sessions = [r for r in reports if r.session_id]  # the rest concern the whole database
    broken = [r for r in reports if not r.ok]
    if as_json:
        emit_json([r.__dict__ for r in reports])
    else:
        for r in broken:
            out.print(_broken_line(r))
        events = sum(r.events for r in sessions)
        verified = sum(r.ok for r in sessions)
        out.print(f"{verified} of {len(sessions)} chains verify ({events} events)")
    if broken:
        sys.exit(1)


def _broken_line(report: ChainReport) -> str:
    if report.problem == "key_record":
        return f"audit key record: BROKEN: {report.reason}"
    if report.problem == "row":
        return f"session {report.session_id[:8]}: TAMPERED: {report.reason}"
    return f"session {report.session_id[:8]}: BROKEN at event {report.broken_at}: {report.reason}"


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

    removed = collect_finished_worktrees(ctx.orch.kernel, dry_run=dry_run, delete_branches=branches)
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
