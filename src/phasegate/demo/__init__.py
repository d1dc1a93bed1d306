"""`phasegate demo`: a whole session on a bundled example, driven over MCP by a scripted agent.

It creates the example project, serves the dashboard and `/mcp` in-process,
and lets the scripted agent work through every phase while a human (you, or
`--yes`) decides the two gates. It ends with the timeline and the audit check.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import uvicorn

from phasegate.demo.agent import ScriptedAgent, ToolFailed, agent_client
from phasegate.demo.project import DemoProject, prepare
from phasegate.entrypoints.timeline import event_lines
from phasegate.errors import PhasegateError

Say = Callable[[str], None]
PREFERRED_PORT = 8765


def run_demo(directory: Path, *, yes: bool, say: Say) -> int:
    """Run the demo; return the process exit code (0 when the session completed)."""
    say("phasegate demo: a SCRIPTED agent (not an AI) drives a real session over MCP/HTTP.")
    say("Its tests, its buggy first implementation and its fix are prepared files; the test")
    say("runs, the gates, the git commits and the audit trail are all real.\n")
    demo = prepare(directory)
    say(f"[1/5] example project ready: {demo.root} (TTLCache, 16 tests to write)")
    with _Server(demo) as url:
        say(f"[2/5] dashboard: {url}  (log in with the reviewer token {demo.human_token})")
        say("[3/5] the agent connects to " + url + "mcp with its own agent token")
        try:
            sid = anyio.run(_drive, demo, url, yes, say)
        except (ToolFailed, PhasegateError) as exc:
            say(f"demo stopped: {exc}")
            return 1
        if not yes:
            say("the session is complete; the dashboard stays up until you press Enter")
            input()
    session = demo.orch.get(sid)
    say(f"[4/5] session {sid[:8]} is {session.phase}; its timeline:")
    for event in demo.orch.timeline(sid):
        for line in event_lines(event):
            say("  " + line)
    report = demo.orch.verify_audit(sid)[0]
    verdict = "verifies" if report.ok else f"is BROKEN at event {report.broken_at}"
    say(f"[5/5] audit chain of {report.events} events {verdict}")
    say(f"\nExplore: cd {demo.root} && phasegate ls --all && phasegate log {sid[:8]}")
    say("         phasegate serve   # the dashboard, with your token from phasegate init")
    return 0 if session.phase == "completed" and report.ok else 1


async def _drive(demo: DemoProject, url: str, yes: bool, say: Say) -> str:
    human = await anyio.to_thread.run_sync(demo.orch.authenticate, demo.human_token)

    async def decide(sid: str, gate: str) -> None:
        if yes:
            comment = "approved by --yes: the demo decides for you"
            say(f"human (--yes): approving {gate}")
            await anyio.to_thread.run_sync(
                lambda: demo.orch.decide(sid, "approve", human, comment=comment)
            )
        else:
            say(f"  ▶ review it at {url}sessions/{sid}  or run, in {demo.root}:")
            say(f"      phasegate approve {sid[:8]} -m 'looks good'")

    http, client = agent_client(url + "mcp", demo.agent_token)
    async with http, client:
        return await ScriptedAgent(client, say).drive(decide)


class _Server:
    """The real `phasegate serve` app, run by uvicorn in a background thread."""

    def __init__(self, demo: DemoProject) -> None:
        from phasegate.entrypoints.web.app import create_app
        from phasegate.feed import EventFeed

        self.port = _free_port()
        app = create_app(demo.orch, EventFeed(demo.orch, poll_interval=0.25))
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="demo-server", daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise PhasegateError(f"the demo server did not start on port {self.port}")
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}/"

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def _free_port() -> int:
    """8765 if it is free, else any free port."""
    for port in (PREFERRED_PORT, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise PhasegateError("no free port on 127.0.0.1")
