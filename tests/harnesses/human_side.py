"""The human's side of a session driven by a real harness: `phasegate serve` for the HTTP
transport, and a reviewer who approves each gate with the CLI as soon as the session waits there.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.harnesses.agent_clis import PHASEGATE
from tests.mcp.conftest import CliProject, free_port

GATES = ("awaiting_test_review", "awaiting_final_review")


@contextmanager
def phasegate_serve(project: CliProject, log: Path) -> Iterator[str]:
    """`phasegate serve` on a free 127.0.0.1 port; yields its MCP URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    argv = [PHASEGATE, "--project", str(project.root), "serve", "--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=project.root, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.post(url, timeout=2)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"phasegate serve did not start: {log.read_text()[-2000:]}"
                    ) from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Reviewer(threading.Thread):
    """Approves each gate with `phasegate approve` once the (only) session waits at it."""

    def __init__(self, project: CliProject) -> None:
        super().__init__(daemon=True)
        self.project = project
        self.approved: list[tuple[str, str]] = []  # (session id, gate)
        self.problem = ""
        self._done = threading.Event()

    def run(self) -> None:
        try:
            for gate in GATES:
                sid = self._wait_for(gate)
                if sid is None:
                    return
                self.project.run("approve", sid, "-m", f"ok at {gate}")
                self.approved.append((sid, gate))
        except Exception as exc:  # reported by the test, with the harness's output
            self.problem = f"the reviewer failed: {exc}"

    def _wait_for(self, gate: str) -> str | None:
        while not self._done.wait(0.5):
            listed = json.loads(self.project.run("ls", "--all", "--json").stdout)
            waiting = [s["id"] for s in listed if s["phase"] == gate]
            if waiting:
                return str(waiting[0])
        return None

    def finish(self) -> None:
        self._done.set()
        self.join(60)


def on_branch(root: Path, sid: str, path: str) -> str:
    """A file as the session's branch holds it."""
    return subprocess.run(
        ["git", "show", f"phasegate/{sid}:{path}"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
