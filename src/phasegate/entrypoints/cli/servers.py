"""Long-running commands: the worker, the MCP server, the web server and the demo."""

from __future__ import annotations

import sys
from contextlib import ExitStack
from pathlib import Path

import click

from phasegate.entrypoints.cli.base import Context, cli, out, pass_ctx

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
    "adapters",
    multiple=True,
    metavar="[ROLE=]KIND",
    help="How to do the work: command (default), script, or an agent CLI driving phasegate "
    "over MCP: claude, codex, gemini. ROLE=KIND picks one per role (repeatable), e.g. "
    "--agent tester=claude --agent coder=codex. The runner role always runs the tests.",
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
@click.option(
    "--grace-s",
    type=click.FloatRange(0, 3600),
    default=20.0,
    show_default=True,
    help="On SIGTERM: seconds to let work in flight finish before cancelling it and giving "
    "its sessions back; a second signal cancels at once.",
)
@click.option("--metrics-file", type=click.Path(dir_okay=False, path_type=Path), hidden=True)
@pass_ctx
def worker(
    ctx: Context,
    roles: str,
    adapters: tuple[str, ...],
    script_dir: Path | None,
    script_delay: float,
    concurrency: int,
    name: str | None,
    lease_ttl: float,
    poll_interval: float,
    grace_s: float,
    metrics_file: Path | None,
) -> None:
    """Claim sessions for ROLE, run the agent on them and submit its work, until SIGTERM."""
    from phasegate import worker as workers
    from phasegate.agents import Endpoint
    from phasegate.services import Background

    workers.configure_logging()  # first: the MCP SDK configures the root logger otherwise
    role_list = [r.strip() for r in roles.split(",") if r.strip()]
    kinds = workers.adapters_by_role(role_list, adapters)
    workers.check_adapters(ctx.orch, kinds)
    principal = workers.worker_principal(ctx.orch, role_list, name, ctx.human)
    options = workers.WorkerOptions(
        concurrency=concurrency,
        lease_ttl_s=lease_ttl,
        poll_interval_s=poll_interval,
        grace_s=grace_s,
    )
    with ExitStack() as stack:
        endpoint = None
        if workers.needs_endpoint(kinds):  # the agent CLIs' own, for their job tokens only
            from phasegate.entrypoints.mcp.endpoint import local_endpoint

            endpoint = Endpoint(*stack.enter_context(local_endpoint(ctx.orch)))
        agents = workers.agents_for(ctx.orch, kinds, script_dir, script_delay, endpoint)
        if endpoint is not None:
            workers.log.info("agent CLIs connect to phasegate at %s", endpoint.url)
        on_timing = workers.timing_file(metrics_file) if metrics_file else None
        background = Background(ctx.orch).start()  # pending test runs, notifications
        try:
            workers.Worker(ctx.orch, principal, agents, options, on_timing=on_timing).run()
        finally:
            background.stop()


@cli.command()
@click.option(
    "--project",
    "mcp_project",
    type=click.Path(file_okay=False, path_type=Path),
    help="The project directory (default: found from the current directory).",
)
@click.pass_obj
def mcp(ctx: Context, mcp_project: Path | None) -> None:
    """Serve MCP on stdin/stdout for a local agent (claude mcp add phasegate -- phasegate mcp).

    With a server URL ([server] url or PHASEGATE_SERVER_URL) it relays to that
    server's /mcp as the agent of PHASEGATE_AGENT_TOKEN, never touching the
    project's state.
    """
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
@click.option(
    "--guarded",
    is_flag=True,
    help="Run as phasegate's own user with --state-dir outside the repository: refuse to "
    "start if others can reach the state; humans decide with token and passphrase.",
)
@click.option(
    "--agent-user", help="With --guarded: the OS user agents run as, to check what it can reach."
)
@click.option(
    "--tls-cert", type=click.Path(dir_okay=False, path_type=Path), help="Serve HTTPS: certificate."
)
@click.option(
    "--tls-key", type=click.Path(dir_okay=False, path_type=Path), help="Serve HTTPS: its key."
)
@click.option(
    "--grace-s",
    type=click.FloatRange(0, 3600),
    default=20.0,
    show_default=True,
    help="On SIGTERM: seconds to let requests in flight finish (event streams and "
    "wait_for_decision end at once); a second signal stops at once.",
)
@click.option(
    "--allow-insecure-remote",
    is_flag=True,
    help="With --guarded: answer other hosts over plain HTTP too (not recommended).",
)
@pass_ctx
def serve(
    ctx: Context,
    host: str,
    port: int,
    guarded: bool,
    agent_user: str | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    allow_insecure_remote: bool,
    grace_s: float,
) -> None:
    """Serve the dashboard, the JSON API, live events, /metrics (and /mcp) over HTTP."""
    from phasegate.entrypoints.cli.ports import refuse_unusable_port
    from phasegate.entrypoints.web.server import Guarded
    from phasegate.entrypoints.web.server import serve as serve_http

    if bool(tls_cert) != bool(tls_key):
        raise click.UsageError("give both --tls-cert and --tls-key, or neither")
    if not guarded and (agent_user or allow_insecure_remote):
        raise click.UsageError("--agent-user and --allow-insecure-remote go with --guarded")
    if guarded and ctx.state_dir is None:
        raise click.UsageError(
            "--guarded needs --state-dir DIR (or PHASEGATE_STATE_DIR): a directory outside the "
            "repository that only the server's user can enter"
        )
    refuse_unusable_port(host, port)  # before any URL is printed or the database opened
    options = Guarded(agent_user, allow_insecure_remote, tls_cert, tls_key) if guarded else None
    serve_http(ctx.project(), host, port, options, grace_s=grace_s)


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
@click.option(
    "--workflow",
    type=click.Choice(["tdd", "spec"]),
    default="tdd",
    show_default=True,
    help="spec: a scripted designer drafts the design from a request, and a reviewer helps.",
)
def demo(yes: bool, directory: Path, workflow: str) -> None:
    """Run a whole session on a bundled example, driven over MCP by a scripted agent."""
    from phasegate.demo import run_demo

    say = lambda line: out.print(line)  # noqa: E731
    sys.exit(run_demo(directory, yes=yes, say=say, workflow=workflow))


@cli.command("login-link")
@click.option("--name", help="The human to log in (default: you, by your stored token).")
@click.option(
    "--url",
    help="The running server's address (default: [server] url, else http://127.0.0.1:8765).",
)
@pass_ctx
def login_link(ctx: Context, name: str | None, url: str | None) -> None:
    """Print a one-time link that logs a human into the dashboard (works once, for 10 minutes)."""
    from phasegate.entrypoints.web.login_links import LINK_TTL, active_human, issue_login_link

    me = ctx.human()  # only a human hands out logins, as with `token add`
    human = me if name is None or name == me.name else active_human(ctx.orch, name)
    server = url or ctx.found().server_url or "http://127.0.0.1:8765"
    if not server.startswith(("http://", "https://")):
        raise click.BadParameter(f"{server!r} is not an http(s):// URL", param_hint="--url")
    link = issue_login_link(ctx.orch, human, server)
    minutes = int(LINK_TTL.total_seconds() // 60)
    out.print(f"one-time login link for {human.name} (works once, for {minutes} minutes):")
    out.print(link)
