"""An event a worker process commits reaches an SSE client of a different `serve` process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from phasegate.orchestrator import Orchestrator
from tests.workers.fleet import PHASEGATE, Fleet


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def server(fast_orch: Orchestrator, tmp_path: Path) -> Iterator[str]:
    """`phasegate serve` in its own process, on the test's database."""
    port = _free_port()
    env = {**os.environ, "PHASEGATE_DATABASE_URL": fast_orch.project.database_url}
    with open(tmp_path / "serve.log", "wb") as log:
        proc = subprocess.Popen(
            [PHASEGATE, "--project", str(fast_orch.project.root), "serve", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=log,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def _listen(
    url: str,
    token: str,
    found: list[dict[str, Any]],
    ready: threading.Event,
    want: Callable[[dict[str, Any]], bool],
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.stream("GET", f"{url}/api/events", headers=headers, timeout=30) as response:
        for line in response.iter_lines():
            if line.startswith("event: ready"):
                ready.set()
            if line.startswith("data: ") and line != "data: {}":
                event = json.loads(line[6:])
                if want(event):
                    found.append(event)
                    return


@pytest.mark.timeout(60)
def test_worker_event_reaches_sse_client_of_another_process(
    fast_orch: Orchestrator, server: str, fleet_factory: Callable[[Orchestrator], Fleet]
) -> None:
    """A tester worker's submission shows up on /api/events of a separate serve process."""
    human, token = fast_orch.add_principal("human", "watcher")
    session = fast_orch.start_session("design.md", human, again=True)
    found: list[dict[str, Any]] = []
    ready = threading.Event()

    def want(event: dict[str, Any]) -> bool:
        return event["session_id"] == session.id and event["action"] == "submit_tests"

    listener = threading.Thread(
        target=_listen, args=(server, token, found, ready, want), daemon=True
    )
    listener.start()
    assert ready.wait(10)
    fleet_factory(fast_orch).start("tester-far-away", "tester")
    listener.join(30)
    assert found and found[0]["actor"] == "tester-far-away"
    assert found[0]["phase"] == "awaiting_test_review"
