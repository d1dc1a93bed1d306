"""MCP suite fixtures: a real project set up with the CLI, and the server over stdio and HTTP."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp.client.streamable_http import streamable_http_client

from mcp import Client, StdioServerParameters
from phasegate.domain.principal import Principal
from phasegate.entrypoints.mcp import build_server
from phasegate.orchestrator import Orchestrator
from tests.conftest import make_project_repo

PHASEGATE = str(Path(sys.executable).with_name("phasegate"))
HTTP_APP = str(Path(__file__).with_name("http_app.py"))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["auto", "legacy"])
async def client(
    request: pytest.FixtureRequest, orch: Orchestrator, agent: Principal
) -> AsyncIterator[Client]:
    """The real SDK client on an in-memory connection to the server, in both protocol modes."""
    async with Client(build_server(orch, lambda: agent), mode=request.param) as c:
        yield c


@dataclass
class CliProject:
    """A project initialised with `phasegate init`; humans decide through the CLI here."""

    root: Path

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [PHASEGATE, "--project", str(self.root), *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"phasegate {' '.join(args)} failed: {done.stderr}")
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json").stdout)

    def start(self) -> str:
        return str(self.json("start", "design.md")["id"])

    def agent_token(self, name: str = "bot") -> str:
        return str(
            self.json(
                "token",
                "add",
                "--agent",
                name,
                "--role",
                "tester",
                "--role",
                "coder",
                "--role",
                "runner",
            )["token"]
        )

    def human_token(self, name: str = "carol") -> str:
        return str(self.json("token", "add", "--human", name)["token"])


@pytest.fixture
def cli_project(tmp_path: Path) -> CliProject:
    project = CliProject(make_project_repo(tmp_path / "project"))
    project.run("init", "--name", "alice")
    return project


def stdio_params(project: CliProject, **env: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=PHASEGATE,
        args=["mcp", "--project", str(project.root)],
        env={**os.environ, **env},
        cwd=str(project.root),
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def has_serve() -> bool:
    """Whether `phasegate serve` exists yet (the dashboard mounts our app at /mcp there)."""
    done = subprocess.run([PHASEGATE, "--help"], capture_output=True, text=True, timeout=60)
    return any(line.split()[:1] == ["serve"] for line in done.stdout.splitlines())


class HttpServer:
    """`phasegate serve` (or, until it exists, our app alone under uvicorn) in a subprocess."""

    def __init__(self, project: CliProject, port: int) -> None:
        self.project, self.port = project, port
        self.url = f"http://127.0.0.1:{port}/mcp"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> HttpServer:
        if has_serve():
            argv = [
                PHASEGATE,
                "--project",
                str(self.project.root),
                "serve",
                "--port",
                str(self.port),
            ]
        else:
            argv = [sys.executable, HTTP_APP, str(self.project.root), str(self.port)]
        self.proc = subprocess.Popen(
            argv, cwd=self.project.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.post(self.url, timeout=1)
                return self
            except httpx.TransportError:
                if self.proc.poll() is not None:
                    raise AssertionError("the HTTP server exited at startup") from None
                time.sleep(0.1)
        raise AssertionError("the HTTP server did not start in 30 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def http_server(cli_project: CliProject) -> Iterator[HttpServer]:
    server = HttpServer(cli_project, free_port()).start()
    yield server
    server.stop()


@asynccontextmanager
async def http_client(url: str, token: str, mode: str) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=120)) as http,
        Client(
            streamable_http_client(url, http_client=http),
            mode=mode,  # type: ignore[arg-type]
            read_timeout_seconds=120,
        ) as client,
    ):
        yield client


Connect = Callable[[str], Any]


def npx() -> str:
    path = shutil.which("npx")
    if path is None:
        pytest.skip("npx is not installed: the MCP Inspector and conformance tests need Node's npx")
    return path
