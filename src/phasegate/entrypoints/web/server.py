"""`phasegate serve`: run the web app with uvicorn on 127.0.0.1:8765 by default."""

from __future__ import annotations

import math
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import click
import uvicorn

from phasegate import credentials
from phasegate.config import Project
from phasegate.entrypoints.web.app import create_app
from phasegate.entrypoints.web.shutdown import (
    DEFAULT_GRACE_S,
    KEEP_ALIVE_S,
    CloseWhenDraining,
    GracefulServer,
)
from phasegate.errors import GuardedStateError
from phasegate.feed import EventFeed
from phasegate.guard import assess, make_private_dir, state_problems
from phasegate.orchestrator import Orchestrator
from phasegate.services import Background
from phasegate.workspace.git import GUARDED_ENV

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8765
#: How often the feed reads the events table for changes made by other processes (SQLite has
#: no NOTIFY); one indexed query per tick, so changes from anywhere show within ~50 ms.
FEED_POLL_INTERVAL_S = 0.05
WILDCARD_BINDS = ("0.0.0.0", "::", "")


def allowed_hosts(bind_host: str) -> set[str]:
    """The Host names this server answers: the bind address, plus $PHASEGATE_ALLOWED_HOSTS."""
    hosts = {bind_host}
    if bind_host in WILDCARD_BINDS:
        hosts |= {socket.gethostname(), socket.getfqdn()}
    extra = os.environ.get("PHASEGATE_ALLOWED_HOSTS", "")
    hosts |= {h.strip() for h in extra.split(",") if h.strip()}
    return hosts - {""}


@dataclass(frozen=True)
class Guarded:
    """How a guarded server runs: whose agents to check, and how remote clients connect."""

    agent_user: str | None = None
    insecure_remote: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None


def serve(
    project: Project,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    guarded: Guarded | None = None,
    grace_s: float = DEFAULT_GRACE_S,
) -> None:
    """Serve the dashboard, API, SSE, metrics (and /mcp) until SIGTERM, then drain (shutdown.py)."""
    if guarded is not None:
        _prepare_guarded(project)
    orch = Orchestrator.open(project)
    feed = EventFeed(orch, poll_interval=FEED_POLL_INTERVAL_S)
    verdict = assess(
        project,
        orch.db.url,
        guarded=guarded is not None,
        agent_user=guarded.agent_user if guarded else None,
    )
    app = create_app(
        orch,
        feed,
        allowed_hosts=allowed_hosts(host),
        guarded=guarded is not None,
        protection=verdict.headline,
        insecure_remote=bool(guarded and guarded.insecure_remote),
    )
    tls = bool(guarded and guarded.tls_cert)
    shown = "127.0.0.1" if host in WILDCARD_BINDS else host
    url = f"http{'s' if tls else ''}://{'[' + shown + ']' if ':' in shown else shown}:{port}/"
    click.echo(f"phasegate dashboard: {url}")
    click.echo(f"  {verdict.headline}")
    if guarded is not None:
        click.echo(
            "  log in with your human token and your passphrase (set on this machine with "
            "`phasegate --state-dir DIR token passphrase NAME`)"
        )
    else:
        click.echo(
            "  log in with your human token: `phasegate init` printed it and keeps it in "
            f"{credentials.credentials_file()}; `phasegate token add --human NAME` makes another"
        )
    click.echo(
        f"  API: {url}api (OpenAPI at {url}api/openapi.json; send "
        f"`Authorization: Bearer <human token>`); live events: {url}api/events"
    )
    if app.state.web.mcp_mounted:
        click.echo(f"  MCP (agents, streamable HTTP): {url}mcp")
    if host in WILDCARD_BINDS:
        click.echo(
            "  warning: listening on every interface; anyone who can reach this port "
            "sees the login page. Prefer 127.0.0.1 behind an SSH tunnel or a TLS proxy."
        )
    draining = app.state.web.draining
    config = uvicorn.Config(
        CloseWhenDraining(app, draining),
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=math.ceil(grace_s),  # GracefulServer keeps to grace_s
        timeout_keep_alive=KEEP_ALIVE_S,
        proxy_headers=False,
        ssl_certfile=str(guarded.tls_cert) if guarded and guarded.tls_cert else None,
        ssl_keyfile=str(guarded.tls_key) if guarded and guarded.tls_key else None,
    )
    background = Background(orch).start()  # pending test runs, notifications
    try:
        GracefulServer(config, draining, grace_s).run()
    finally:
        background.stop()
        orch.close()


def _prepare_guarded(project: Project) -> None:
    """Refuse to start on state others can reach; then keep new state private.

    Files are made with group access (umask 007) so the worktrees the agents'
    group works in stay writable for them; the state directory itself (mode
    700) keeps everything in it out of their reach.
    """
    problems = state_problems(project, project.database_url)
    if problems:
        raise GuardedStateError(problems)
    make_private_dir(project.state_dir)
    os.umask(0o007)
    os.environ[GUARDED_ENV] = "1"  # git keeps the git dir group-read-only (worktrees writable)
