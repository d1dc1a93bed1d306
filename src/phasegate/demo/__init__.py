"""`phasegate demo`: a whole session on a bundled example, driven over MCP by a scripted agent.

It creates the example project, serves the dashboard and `/mcp` in-process,
and lets the scripted agent work through every phase while a human decides
each gate: you, in the browser (a one-time login link is printed) or with
`phasegate approve`; or `--yes`, for CI. It ends with the timeline and the
audit check; interactively, the dashboard then stays up until Ctrl-C.
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
from phasegate.demo.review import DemoReviewer
from phasegate.entrypoints.timeline import event_lines
from phasegate.errors import PhasegateError

Say = Callable[[str], None]
PREFERRED_PORT = 8765


def run_demo(directory: Path, *, yes: bool, say: Say, workflow: str = "tdd") -> int:
    """Run the demo; return the process exit code (0 when the session completed)."""
    say = _without_repeats(say)
    say("phasegate demo: a SCRIPTED agent (not an AI) drives a real session over MCP/HTTP.")
    say("Its tests, its buggy first implementation and its fix are prepared files; the test")
    say("runs, the gates, the git commits and the audit trail are all real.\n")
    demo = prepare(directory)
    say(f"[1/5] example project ready: {demo.root} (TTLCache, 16 tests to write)")
    _cancel_unfinished(demo, say)
    with _Server(demo) as server:
        url = server.url
        if yes:
            say(f"[2/5] dashboard: {url}  (log in with the reviewer token {demo.human_token})")
        else:
            say(f"[2/5] dashboard: {url}  (a one-time login link follows at the first gate)")
        say("[3/5] the agent connects to " + url + "mcp with its own agent token")
        reviewer = DemoReviewer(demo, url, yes=yes, say=say)
        try:
            if workflow == "spec":
                _request_task(demo)
            sid = anyio.run(_drive, demo, url, reviewer, say, workflow)
        except (ToolFailed, PhasegateError) as exc:
            say(f"demo stopped: {exc}")
            return 1
        except KeyboardInterrupt:
            say(f"\nstopped (Ctrl-C); the session waits where it was: {reviewer.cli('ls')}")
            return 130
        ok = _summary(demo, sid, say)
        if not yes:
            phase = demo.orch.get(sid).phase
            say(f"\ndone: {phase}. The dashboard stays up at {url} until you press Ctrl-C.")
            server.wait_for_ctrl_c()
            say("stopped the dashboard; bye")
    return 0 if ok else 1


def _summary(demo: DemoProject, sid: str, say: Say) -> bool:
    """Print the timeline and the audit check; True if the session completed and verifies."""
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
    return session.phase == "completed" and report.ok


def _cancel_unfinished(demo: DemoProject, say: Say) -> None:
    """A demo stopped at a gate left its session waiting: this run starts afresh."""
    human = demo.orch.authenticate(demo.human_token)
    for session in demo.orch.list_sessions():
        demo.orch.decide(session.id, "cancel", human, comment="a new `phasegate demo` run")
        say(f"      (cancelled {session.id[:8]}, left at {session.phase} by an earlier demo)")


def _without_repeats(say: Say) -> Say:
    """Drop a line identical to the one just said: a long wait repeats its progress line."""
    last = [""]

    def say_once(line: str) -> None:
        if line != last[0]:
            last[0] = line
            say(line)

    return say_once


def _request_task(demo: DemoProject) -> None:
    """The spec demo starts from a short request (added once; a rerun reuses it)."""
    from phasegate.demo.agent import REQUEST, REQUEST_TASK

    if not any(t["name"] == REQUEST_TASK for t in demo.orch.list_tasks()):
        demo.orch.tasks.add_request(REQUEST, name=REQUEST_TASK)


async def _drive(
    demo: DemoProject, url: str, reviewer: DemoReviewer, say: Say, workflow: str = "tdd"
) -> str:
    http, client = agent_client(url + "mcp", demo.agent_token)
    failure: ToolFailed | PhasegateError
    async with http, client:
        try:
            return await ScriptedAgent(client, say).drive(reviewer, workflow=workflow)
        except (ToolFailed, PhasegateError) as exc:
            failure = exc  # raised below: inside, the client's task group would wrap it
    raise failure


class _Server:
    """The real `phasegate serve` app, run by uvicorn in a background thread."""

    def __init__(self, demo: DemoProject) -> None:
        from phasegate.entrypoints.web.app import create_app
        from phasegate.feed import EventFeed

        self.port = _free_port()
        app = create_app(demo.orch, EventFeed(demo.orch, poll_interval=0.25))
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            timeout_graceful_shutdown=2,  # an open dashboard's live feed must not hold the exit
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="demo-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def __enter__(self) -> _Server:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise PhasegateError(f"the demo server did not start on port {self.port}")
            time.sleep(0.05)
        return self

    def wait_for_ctrl_c(self) -> None:
        """Keep serving until the user presses Ctrl-C (SIGINT), or the server stops."""
        try:
            while self.thread.is_alive():
                self.thread.join(0.5)
        except KeyboardInterrupt:
            return

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
