"""`phasegate serve` on SIGTERM: long waits end at once, calls in flight finish, nothing is cut.

The clients are the real ones: httpx reading `/api/events`, and the official
MCP SDK client over streamable HTTP. A call may fail only at connect time,
while no server listens; the client then reconnects and carries on.
"""

from __future__ import annotations

import http.client
import os
import random
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest

from phasegate.config import Project, Settings
from phasegate.orchestrator import Orchestrator
from tests.conftest import TEST_COMMAND, make_project_repo
from tests.mcp.conftest import http_client
from tests.web.conftest import PHASEGATE, free_port

WAIT_S = 45  # wait_for_decision's longest wait: a shutdown must not take that long


@dataclass
class Served:
    """A project, its tokens, a paused session (wait_for_decision blocks on it) and others."""

    root: Path
    database_url: str
    human_token: str
    agent_token: str
    paused_id: str
    session_ids: list[str]
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *extra: str) -> subprocess.Popen[str]:
        """`phasegate serve` on this project and port, once /healthz answers."""
        proc = subprocess.Popen(
            [PHASEGATE, "--project", str(self.root), "serve", "--port", str(self.port), *extra],
            env={**os.environ, "PHASEGATE_DATABASE_URL": self.database_url},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return proc
            except httpx.TransportError:
                time.sleep(0.05)
            assert proc.poll() is None, proc.communicate()[1]
        proc.kill()
        raise AssertionError("phasegate serve did not start in 30 s")


@pytest.fixture
def served(tmp_path: Path, db_url: str) -> Iterator[Served]:
    """A project on the parametrised database with 20 sessions, one of them paused."""
    root = make_project_repo(tmp_path / "project")
    orch = Orchestrator.open(
        Project(root, Settings(database_url=db_url, test_command=TEST_COMMAND))
    )
    try:
        human, human_token = orch.add_principal("human", "alice")
        _, agent_token = orch.add_principal("agent", "bot", ["tester", "coder", "runner"])
        ids = [orch.start_session("design.md", human, again=True).id for _ in range(20)]
        orch.decide(ids[0], "pause", human)
    finally:
        orch.close()
    yield Served(root, db_url, human_token, agent_token, ids[0], ids)


def exit_of(proc: subprocess.Popen[str], timeout_s: float = 30) -> tuple[int, str]:
    """The exit code and stderr of a process already told to stop."""
    try:
        _, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"serve did not stop within {timeout_s} s:\n{err}") from None
    return proc.returncode, err


def stop(proc: subprocess.Popen[str], timeout_s: float = 30) -> tuple[int, str, float]:
    """SIGTERM; the exit code, stderr and seconds until the process ended."""
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code, err = exit_of(proc, timeout_s)
    return code, err, time.monotonic() - began


def read_events(url: str, token: str, lines: list[str]) -> None:
    """Read /api/events until the server ends it; the last line says how it ended."""
    try:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.stream("GET", f"{url}/api/events", headers=headers, timeout=90) as response:
            lines.extend(response.iter_lines())
        lines.append("<ended>")
    except httpx.HTTPError as exc:
        lines.append(f"<cut: {exc!r}>")


@pytest.mark.timeout(120)
def test_sigterm_ends_event_streams_and_decision_waits_at_once_and_exits_0(
    served: Served,
) -> None:
    """On SIGTERM an event stream ends cleanly, a blocked wait_for_decision returns its normal
    "call again" result, and serve exits 0 within seconds, not after the 45 s wait."""
    proc = served.start()
    lines: list[str] = []
    reader = threading.Thread(target=read_events, args=(served.url, served.human_token, lines))
    reader.start()
    results: dict[str, Any] = {}

    async def wait_then_terminate() -> None:
        async with http_client(f"{served.url}/mcp", served.agent_token, "auto") as client:
            await client.list_tools()  # the SDK asks once, before its first call's result
            async with anyio.create_task_group() as tg:

                async def call() -> None:
                    args = {"session_id": served.paused_id, "timeout_s": WAIT_S}
                    results["wait"] = await client.call_tool("wait_for_decision", args)

                tg.start_soon(call)
                await anyio.sleep(1.5)  # the call is in flight, blocked on the paused session
                results["stopped"] = await anyio.to_thread.run_sync(stop, proc)

    anyio.run(wait_then_terminate)
    reader.join(10)
    code, err, seconds = results["stopped"]
    assert code == 0, err
    assert seconds < 10, f"shutdown took {seconds:.1f} s"
    assert "shutting down; waiting up to 20 s" in err
    assert re.search(r"ended [0-9]+ long wait\(s\)", err), err
    wait = results["wait"]
    assert not wait.is_error, wait.content
    assert wait.structured_content["decided"] is False
    assert "restarting" in wait.structured_content["message"]
    assert "wait_for_decision" in wait.structured_content["next_action"]
    assert "event: ready" in lines and lines[-1] == "<ended>", lines


@dataclass
class Tally:
    """What the clients saw: results, error results, refused connects, anything else."""

    results: dict[str, int] = field(default_factory=dict)
    error_results: list[str] = field(default_factory=list)
    refused: int = 0
    other_failures: list[str] = field(default_factory=list)
    restart_answers: int = 0
    after_restart: set[int] = field(default_factory=set)


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


def refused_at_connect(exc: BaseException) -> bool:
    """Whether every failure inside `exc` is a TCP connect that found no server."""
    return all(isinstance(leaf, httpx2.ConnectError) for leaf in leaves(exc))


async def agent_loop(
    served: Served, index: int, tally: Tally, phase: dict[str, Any], stop_at: anyio.Event
) -> None:
    """Call the three read tools in turn until told to stop; reconnect when refused."""
    rng = random.Random(index)
    while not stop_at.is_set():
        try:
            async with http_client(f"{served.url}/mcp", served.agent_token, "auto") as client:
                await client.list_tools()
                while not stop_at.is_set():
                    for name, args in (
                        ("get_session_status", {"session_id": rng.choice(served.session_ids)}),
                        ("list_sessions", {}),
                        ("wait_for_decision", {"session_id": served.paused_id, "timeout_s": 3}),
                    ):
                        result = await client.call_tool(name, args)
                        if result.is_error:
                            tally.error_results.append(f"{name}: {result.content}")
                            continue
                        tally.results[name] = tally.results.get(name, 0) + 1
                        message = (result.structured_content or {}).get("message", "")
                        tally.restart_answers += "restarting" in message
                        if phase["restarted"]:
                            tally.after_restart.add(index)
        except Exception as exc:  # sorted below: only "refused at connect" is allowed
            if not refused_at_connect(exc):
                tally.other_failures.append(repr(leaves(exc)))
                return
            tally.refused += 1
            await anyio.sleep(0.1)


@pytest.mark.timeout(240)
def test_a_restart_under_fifty_mcp_clients_cuts_no_call(served: Served) -> None:
    """50 SDK clients calling get_session_status, list_sessions and wait_for_decision across a
    SIGTERM and a restart on the same port: every call returns a result or is refused at
    connect time, and every client carries on with the new server."""
    clients = 50
    tally, phase = Tally(), {"restarted": False}
    procs: dict[str, subprocess.Popen[str]] = {"first": served.start()}
    stopped: dict[str, tuple[int, str, float]] = {}

    async def scenario() -> None:
        stop_at = anyio.Event()
        async with anyio.create_task_group() as tg:
            for i in range(clients):
                tg.start_soon(agent_loop, served, i, tally, phase, stop_at)
            await anyio.sleep(4)  # every client connected and busy, some blocked waiting
            stopped["first"] = await anyio.to_thread.run_sync(stop, procs["first"])
            procs["second"] = await anyio.to_thread.run_sync(served.start)
            phase["restarted"] = True
            deadline = time.monotonic() + 60
            while len(tally.after_restart) < clients and time.monotonic() < deadline:
                await anyio.sleep(0.2)
            stop_at.set()
            stopped["second"] = await anyio.to_thread.run_sync(stop, procs["second"])

    try:
        anyio.run(scenario)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    assert tally.other_failures == [], tally.other_failures[:5]
    assert tally.error_results == [], tally.error_results[:5]
    for name in ("first", "second"):
        code, err, seconds = stopped[name]
        assert code == 0 and seconds < 20, (name, code, seconds, err)  # within the grace
    assert len(tally.after_restart) == clients, "some clients never got through after the restart"
    assert tally.refused > 0  # the restart window was really crossed
    assert tally.restart_answers > 0  # waits were in flight at the SIGTERM, and were answered
    assert set(tally.results) == {"get_session_status", "list_sessions", "wait_for_decision"}


@pytest.mark.timeout(90)
def test_a_call_on_a_connection_idle_at_the_sigterm_is_answered_not_cut(served: Served) -> None:
    """A client whose connection sat idle when the drain began, and who calls again 1.5 s later
    (well within its own keep-alive), gets its result on that connection: the server neither
    closed it under the client nor refused the call. serve then exits once the client goes."""
    proc = served.start()
    seen: dict[str, Any] = {}

    async def idle_then_call() -> None:
        args = {"session_id": served.session_ids[1]}
        async with http_client(f"{served.url}/mcp", served.agent_token, "auto") as client:
            seen["before"] = await client.call_tool("get_session_status", args)
            proc.send_signal(signal.SIGTERM)
            seen["signalled"] = time.monotonic()
            await anyio.sleep(1.5)
            seen["after"] = await client.call_tool("get_session_status", args)
            seen["running"] = proc.poll() is None

    anyio.run(idle_then_call)
    code, err = exit_of(proc)
    seconds = time.monotonic() - seen["signalled"]
    assert code == 0, err
    assert seen["running"], "serve stopped before the idle client's call"
    for name in ("before", "after"):
        assert not seen[name].is_error, seen[name].content
        assert seen[name].structured_content["session_id"] == served.session_ids[1]
    assert seconds < 8, f"serve took {seconds:.1f} s to stop once its client had gone"


@pytest.mark.timeout(60)
def test_an_idle_connection_holds_the_shutdown_no_longer_than_its_keep_alive(
    served: Served,
) -> None:
    """A client that keeps its connection open and silent cannot hold serve for the whole grace:
    the connection closes when its keep-alive runs out (8 s), and serve exits then."""
    proc = served.start("--grace-s", "40")
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=30)
    try:
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        assert response.status == 200 and response.read()  # the connection stays open, idle
        answered = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code, err = exit_of(proc)
        seconds = time.monotonic() - answered
        assert conn.sock is not None and conn.sock.recv(1) == b""  # closed by the server, cleanly
    finally:
        conn.close()
    assert code == 0, err
    assert "(idle ones close 8 s after their last answer)" in err
    assert 7 < seconds < 14, f"serve stopped {seconds:.1f} s after the idle connection's answer"


@contextmanager
def slow_request(served: Served) -> Iterator[socket.socket]:
    """An MCP request whose body never finishes arriving: in flight until the server gives up."""
    with socket.create_connection(("127.0.0.1", served.port), timeout=30) as sock:
        sock.sendall(
            (
                f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\n"
                f"Authorization: Bearer {served.agent_token}\r\n"
                "Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
                'Content-Length: 1000\r\n\r\n{"jsonrpc": "2.0",'
            ).encode()
        )
        time.sleep(0.5)  # the server has read the headers and waits for the rest
        yield sock


@pytest.mark.timeout(60)
def test_a_request_still_in_flight_when_the_grace_ends_is_cancelled_and_serve_exits_0(
    served: Served,
) -> None:
    """serve waits for a request in flight no longer than --grace-s, then cancels it and
    exits 0."""
    proc = served.start("--grace-s", "3")
    with slow_request(served):
        code, err, seconds = stop(proc)
    assert code == 0, err
    assert 2.5 < seconds < 12, seconds
    assert "waiting up to 3 s for 1 request(s) in flight" in err


@pytest.mark.timeout(60)
def test_a_second_signal_stops_serve_at_once(served: Served) -> None:
    """A second SIGTERM ends serve's drain at once, however long its grace."""
    proc = served.start("--grace-s", "120")
    with slow_request(served):
        proc.send_signal(signal.SIGTERM)
        time.sleep(1)
        assert proc.poll() is None  # still draining: the request is in flight
        code, err, seconds = stop(proc)
    assert code == 0, err
    assert seconds < 10, seconds
    assert "second signal; stopping now" in err
