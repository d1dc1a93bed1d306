"""Fixtures for the web tests: a project with sessions, the app in-process, a live server."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.testclient import TestClient

from phasegate.config import Project, Settings, load_settings
from phasegate.domain.principal import Principal
from phasegate.domain.session import Session
from phasegate.entrypoints.web import create_app
from phasegate.feed import EventFeed
from phasegate.orchestrator import Orchestrator
from tests.conftest import GOOD_TESTS, TEST_COMMAND, make_project_repo, postgres_database

PHASEGATE = str(Path(sys.executable).parent / "phasegate")


@dataclass
class WebEnv:
    """A project, its orchestrator, and a human's and an agent's principals and tokens."""

    root: Path
    orch: Orchestrator
    human: Principal
    human_token: str
    agent: Principal
    agent_token: str

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.human_token}"}

    @property
    def agent_bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.agent_token}"}

    def new_session(self, design: str = "design.md") -> Session:
        """A session waiting for tests (generating_tests): cheap, no test run."""
        return self.orch.start_session(design, self.human, again=True)

    def gate_session(self, tests: str = GOOD_TESTS, design: str = "design.md") -> Session:
        """A session at the test review gate, with its red run and a message for the reviewer."""
        session = self.new_session(design)
        self.orch.submit(
            session.id,
            "tests",
            self.agent,
            [{"path": "test_calc.py", "content": tests}],
            note="I covered positive and negative sums.",
        )
        self.orch.request_approval(session.id, self.agent, "Two tests for add; both fail now.")
        return self.orch.get(session.id)


def make_env(root: Path, database_url: str) -> WebEnv:
    make_project_repo(root)
    orch = Orchestrator.open(
        Project(root, Settings(database_url=database_url, test_command=TEST_COMMAND))
    )
    human, human_token = orch.add_principal("human", "alice")
    agent, agent_token = orch.add_principal("agent", "bot", ["tester", "coder", "runner"])
    return WebEnv(root, orch, human, human_token, agent, agent_token)


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def env(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebEnv]:
    """One project per test module, on SQLite and on PostgreSQL."""
    with module_audit_key():
        yield from _project_env(request, tmp_path_factory)


@contextmanager
def module_audit_key() -> Iterator[None]:
    """One audit key for a module's shared database, whatever config dir each test uses.

    Each test gets its own config directory, so a key file written there while
    the module's database was created would be missing for the CLI processes
    later tests start.
    """
    os.environ["PHASEGATE_AUDIT_KEY"] = secrets.token_hex(32)
    try:
        yield
    finally:
        os.environ.pop("PHASEGATE_AUDIT_KEY", None)


def _project_env(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebEnv]:
    root = tmp_path_factory.mktemp("web") / "project"
    if request.param == "sqlite":
        urls: Iterator[str] = iter([f"sqlite:///{root.parent / 'phasegate.db'}"])
    else:
        urls = postgres_database()
    url = next(urls)
    web_env = make_env(root, url)
    yield web_env
    web_env.orch.close()
    for _ in urls:  # drops the PostgreSQL database
        pass


@pytest.fixture(scope="module")
def client(env: WebEnv) -> Iterator[TestClient]:
    """The app in-process (lifespan running), answering as http://testserver."""
    app = create_app(
        env.orch,
        EventFeed(env.orch, poll_interval=0.1),
        allowed_hosts=["testserver"],
        secret=b"test-secret",
    )
    with TestClient(app) as test_client:
        yield test_client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class ServerProcess:
    url: str
    process: subprocess.Popen[bytes]


def start_server(
    root: Path, env_vars: dict[str, str], *, state_dir: Path | None = None, guarded: bool = False
) -> ServerProcess:
    """`phasegate serve --port <free port>` as a real subprocess, ready when /healthz answers."""
    port = free_port()
    state = ["--state-dir", str(state_dir)] if state_dir else []
    process = subprocess.Popen(
        [PHASEGATE, "--project", str(root), *state, "serve", "--port", str(port)]
        + (["--guarded"] if guarded else []),
        env={**os.environ, **env_vars},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return ServerProcess(url, process)
        except httpx.TransportError:
            time.sleep(0.1)
        if process.poll() is not None:
            break
    process.kill()
    output = process.stdout.read().decode() if process.stdout else ""
    raise RuntimeError(f"phasegate serve did not start:\n{output}")


def stop_server(server: ServerProcess) -> str:
    server.process.terminate()
    try:
        out, _ = server.process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        out, _ = server.process.communicate()
    return out.decode()


@pytest.fixture(scope="module")
def live_url(env: WebEnv) -> Iterator[str]:
    """The app under uvicorn in a thread, on a free port."""
    app = create_app(env.orch, EventFeed(env.orch, poll_interval=0.2), secret=b"test-secret")
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@contextmanager
def served_project(tmp_path_factory: pytest.TempPathFactory, label: str) -> Iterator[WebEnv]:
    """A project on its default SQLite database, to share with a server subprocess."""
    with module_audit_key():
        root = make_project_repo(tmp_path_factory.mktemp(label) / "project")
        orch = Orchestrator.open(Project(root, load_settings(root)))
        human, human_token = orch.add_principal("human", "alice")
        agent, agent_token = orch.add_principal("agent", "bot", ["tester", "coder", "runner"])
        yield WebEnv(root, orch, human, human_token, agent, agent_token)
        orch.close()


@contextmanager
def served(project: WebEnv) -> Iterator[ServerProcess]:
    """`phasegate serve` on the project, stopped after the block."""
    running = start_server(project.root, {})
    try:
        yield running
    finally:
        stop_server(running)
