"""The human side of the demo: at each gate, decide (`--yes`) or tell the user how to.

Interactively, the first gate prints a one-time login link to the session page
(never the token), and every gate prints the `phasegate approve` line that
decides it from another terminal.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import anyio.to_thread

from phasegate.demo.project import DemoProject
from phasegate.domain.principal import Principal
from phasegate.entrypoints.web.login_links import LINK_TTL, issue_login_link

Say = Callable[[str], None]
YES_COMMENT = "approved by --yes: the demo decides for you"
WHAT_TO_REVIEW = {
    "awaiting_design_review": "the design the designer drafted from the request",
    "awaiting_test_review": "the tests and phasegate's red run (they fail on the stub)",
    "awaiting_final_review": "the implementation diff and phasegate's passing run",
}


class DemoReviewer:
    """Called by the scripted agent when it reaches a gate; returns before the decision."""

    def __init__(self, demo: DemoProject, url: str, *, yes: bool, say: Say) -> None:
        self.demo = demo
        self.url = url
        self.yes = yes
        self.say = say
        self.links_issued = 0

    async def __call__(self, sid: str, gate: str) -> None:
        human = await anyio.to_thread.run_sync(self.demo.orch.authenticate, self.demo.human_token)
        if self.yes:
            self.say(f"human (--yes): approving {gate}")
            await anyio.to_thread.run_sync(
                lambda: self.demo.orch.decide(sid, "approve", human, comment=YES_COMMENT)
            )
            return
        page = f"sessions/{sid}"
        if self.links_issued == 0:
            link = await anyio.to_thread.run_sync(self._link, human, page)
            self.say(f"\n▶ waiting for your review at {gate}: open this one-time login link")
            self.say(f"    {link}")
            minutes = int(LINK_TTL.total_seconds() // 60)
            self.say(
                f"  (it works once, for {minutes} minutes; a new one: {self.cli('login-link')})"
            )
        else:
            self.say(f"\n▶ waiting for your review at {gate}: {self.url}{page}")
        self.say(f"  review {WHAT_TO_REVIEW.get(gate, 'the session')}, then press Approve;")
        self.say("  or approve it from another terminal:")
        self.say(f"    {self.cli('approve', sid[:8], '-m', 'looks good')}")

    def _link(self, human: Principal, page: str) -> str:
        self.links_issued += 1
        return issue_login_link(self.demo.orch, human, self.url, "/" + page)

    def cli(self, command: str, *args: str) -> str:
        """The shell line that runs a phasegate command on the demo project."""
        words = [phasegate_executable(), command, *args]
        if command == "login-link":
            words += ["--url", self.url]
        root = shlex.quote(str(self.demo.root))
        return f"cd {root} && " + " ".join(shlex.quote(w) for w in words)


def phasegate_executable() -> str:
    """`phasegate` if that is the one running (on PATH), else its full path (e.g. in .venv)."""
    running = Path(sys.argv[0])
    if running.name != "phasegate":
        return "phasegate"
    on_path = shutil.which("phasegate")
    if on_path and Path(on_path).resolve() == running.resolve():
        return "phasegate"
    return str(running.resolve())
