"""Audit, workflows, cleanup and tokens."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from phasegate.entrypoints.cli.base import (
    Context,
    cli,
    emit_json,
    out,
    pass_ctx,
    passphrase_options,
    read_passphrase,
)
from phasegate.errors import PhasegateError

if TYPE_CHECKING:
    from phasegate.domain.audit import ChainReport

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
    from phasegate.domain.builtin_workflows import BUILTIN_WORKFLOWS

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
            what = f"produces {p.submission}" if p.submission else ""
            what += f"locks {', '.join(p.locks)}" if p.locks else ""
            out.print(f"  {p.name:<28} {p.kind.value:<6} {who:<9} {what:<22} {p.description}")
        for t in wf.transitions:
            out.print(f"  {t.source} --{wf.edge_label(t)}--> {t.target}  [{t.actor.value}]")
        if wf.pre_review:
            out.print("  pre_review: a reviewer agent may attach findings at the gates")


@workflow.command("check")
@pass_ctx
def workflow_check(ctx: Context) -> None:
    """Check the project's workflows (phasegate.toml); print each one, or the one problem."""
    project = ctx.project()  # reading the settings builds and validates every workflow
    for wf in project.workflows.values():
        gates = ", ".join(
            f"{g} locks {'/'.join(wf.locks_at(g))}" for g in wf.gates() if wf.locks_at(g)
        )
        out.print(f"workflow {wf.name}: ok ({len(wf.phases)} phases; {gates or 'no locks'})")


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
@passphrase_options
@pass_ctx
def token_add(
    ctx: Context,
    human_name: str | None,
    agent_name: str | None,
    roles: tuple[str, ...],
    as_json: bool,
    passphrase: bool,
    passphrase_stdin: bool,
) -> None:
    """Create a principal and print its token (shown once)."""
    if bool(human_name) == bool(agent_name):
        raise click.UsageError("give exactly one of --human NAME or --agent NAME --role ROLE")
    if agent_name and (passphrase or passphrase_stdin):
        raise click.UsageError("only a human has a passphrase; drop --passphrase for an agent")
    ctx.human()  # only a human manages principals
    kind, name = ("human", human_name) if human_name else ("agent", agent_name)
    assert name is not None
    wanted = passphrase or passphrase_stdin
    secret_phrase = read_passphrase(new=True, stdin=passphrase_stdin) if wanted else None
    principal, secret = ctx.orch.add_principal(kind, name, roles)
    if secret_phrase is not None:
        ctx.orch.principals.set_passphrase(principal.name, secret_phrase)
    if as_json:
        emit_json({"name": principal.name, "kind": kind, "token": secret, "roles": list(roles)})
    else:
        out.print(f"{kind} {principal.name} token (shown once): {secret}")


@token.command("passphrase")
@click.argument("name")
@passphrase_options
@pass_ctx
def token_passphrase(ctx: Context, name: str, passphrase: bool, passphrase_stdin: bool) -> None:
    """Set a human's passphrase, the second factor a guarded server asks for (hash kept only)."""
    ctx.human()
    ctx.orch.principals.set_passphrase(name, read_passphrase(new=True, stdin=passphrase_stdin))
    out.print(f"passphrase set for {name}; only its hash is stored")


@token.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def token_ls(ctx: Context, as_json: bool) -> None:
    """List principals (never their tokens)."""
    from rich.table import Table

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


@cli.command()
@click.option("--token-stdin", is_flag=True, help="Read the token from standard input.")
@pass_ctx
def login(ctx: Context, token_stdin: bool) -> None:
    """Keep your human token for this project's guarded server (its [server] url)."""
    from phasegate import credentials
    from phasegate.entrypoints.cli.remote import Remote

    url = ctx.found().server_url
    if not url:
        raise click.UsageError(
            "this project names no guarded server; add [server] url to phasegate.toml "
            "(or set PHASEGATE_SERVER_URL) first"
        )
    token = (
        sys.stdin.readline().strip()
        if token_stdin
        else str(click.prompt("human token", hide_input=True)).strip()
    )
    with Remote(url, token) as remote:
        me = remote.me()
    if me.get("kind") != "human":
        raise click.UsageError("that is an agent token; log in with your human token")
    path = credentials.store_human_token(url, me["name"], token)
    out.print(f"logged in to {url} as {me['name']} (token kept in {path})")


@cli.command()
@click.option(
    "--agent-user",
    help="The OS user your agents run as (default: you, as agents usually run as their human).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
@pass_ctx
def doctor(ctx: Context, agent_user: str | None, as_json: bool) -> None:
    """Say how this project is protected: guarded or not, what agents can reach, the sandbox."""
    from phasegate.guard import assess
    from phasegate.harness import deny_rules_status
    from phasegate.testrun import SandboxUnavailable, bwrap_binary

    project = ctx.found()
    try:
        bwrap_binary()
        sandbox = None
    except SandboxUnavailable as exc:
        sandbox = str(exc)
    if project.settings.sandbox.mode == "none":
        sandbox = 'switched off in phasegate.toml (sandbox = "none")'
    remote = ctx.remote()
    if remote is not None:
        me = remote.me()  # reaching it with a human token proves the URL and the token
        verdict = assess(project, "", guarded=True, agent_user=agent_user, sandbox=sandbox)
        lines = [
            f"guarded: this project's state lives with the server at {remote.url}; "
            f"you are {me['name']} there, and decisions need your passphrase"
        ]
    else:
        current = ctx.project()
        verdict = assess(
            current,
            current.database_url,
            guarded=ctx.state_dir is not None,
            agent_user=agent_user,
            sandbox=sandbox,
        )
        lines = [verdict.headline]
    lines += [
        f"  {e.what} ({e.path}) is {'writable' if e.writable else 'readable'} by "
        f"{verdict.agent_user}"
        for e in verdict.exposed
    ]
    lines.append(
        "test runs: sandboxed with bubblewrap"
        if sandbox is None
        else f"test runs: NOT sandboxed: {sandbox}"
    )
    harnesses = deny_rules_status(project.root)
    for name, present in harnesses.items():
        if present is not None:
            lines.append(
                f"{name}: phasegate's deny rules are in place"
                if present
                else f"{name}: no deny rules for phasegate's state; run "
                f"`phasegate init --agent {name}`"
            )
    if not verdict.guarded:
        lines.append(
            "to close this: run `phasegate serve --guarded` as its own user (docs/security.md, "
            '"Guarded mode")'
        )
    if as_json:
        emit_json(
            {
                "guarded": verdict.guarded,
                "headline": lines[0],
                "agent_user": verdict.agent_user,
                "exposed": [
                    {"what": e.what, "path": str(e.path), "writable": e.writable}
                    for e in verdict.exposed
                ],
                "sandbox": sandbox,
                "harness_deny_rules": harnesses,
            }
        )
        return
    for line in lines:
        out.print(line)
