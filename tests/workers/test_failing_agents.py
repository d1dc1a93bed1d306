"""Failing agents are bounded: parked for a human after a few failures, logs capped, leases kept."""

from __future__ import annotations

import copy
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from phasegate import leases
from phasegate.agents import build_agent
from phasegate.agents.process import LOG_HEAD_BYTES, LOG_TAIL_BYTES
from phasegate.domain.principal import Principal
from phasegate.errors import StorageError
from phasegate.orchestrator import Orchestrator
from phasegate.store.database import Database
from phasegate.worker import Worker, WorkerOptions
from tests.conftest import postgres_database
from tests.workers.fleet import (
    BUGGY,
    GOOD,
    PHASEGATE,
    TESTS,
    WorkerProcess,
    make_fast_project,
    running,
    wait_for,
)

# An agent CLI that can't work until a human fixes its setup (here: creates the key file).
BROKEN_UNTIL_FIXED = f"""
import os, pathlib, sys
print("starting the agent")
if not pathlib.Path(sys.argv[1]).exists():
    print("ERROR: no API key configured", flush=True)
    sys.exit(1)
if os.environ["PHASEGATE_PHASE"] == "generating_tests":
    pathlib.Path("tests").mkdir(exist_ok=True)
    pathlib.Path("tests/test_calc.py").write_text({TESTS!r})
else:
    pathlib.Path("calc.py").write_text({GOOD!r})
print("fixed it")
"""

# An agent that prints 60 MB (an error loop) between two recognisable lines, then works.
FLOOD = f"""
import pathlib, sys
out = sys.stdout.buffer
out.write(b"FIRST LINE OF THE AGENT\\n")
line = b"E" * 1023 + b"\\n"
for _ in range(60 * 1024):
    out.write(line)
out.write(b"LAST LINE OF THE AGENT\\n")
out.flush()
pathlib.Path("tests").mkdir(exist_ok=True)
pathlib.Path("tests/test_calc.py").write_text({TESTS!r})
"""


Opener = Callable[[str], Orchestrator]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def open_project(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens a fast project with the given extra phasegate.toml, on each database."""
    opened: list[Orchestrator] = []
    urls: Iterator[str] | None = None
    if request.param == "sqlite":
        # The database's folder is hidden from the agent's sandbox: keep it apart from scripts.
        (tmp_path / "db").mkdir()
        url = f"sqlite:///{tmp_path / 'db' / 'phasegate.db'}"
    else:
        urls = postgres_database()
        url = next(urls)

    def open_(extra_toml: str) -> Orchestrator:
        project = make_fast_project(tmp_path / "project", url, extra_toml)
        opened.append(Orchestrator.open(project))
        return opened[-1]

    yield open_
    for orch in opened:
        orch.close()
    if urls is not None:
        next(urls, None)  # drops the database


def _script(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / "agent" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def _worker(orch: Orchestrator, role: str, name: str, *, max_backoff_s: float = 0.2) -> Worker:
    principal = orch.add_principal("agent", name, [role])[0]
    options = WorkerOptions(lease_ttl_s=5, poll_interval_s=0.05, max_backoff_s=max_backoff_s)
    return Worker(orch, principal, {role: build_agent("command", role, orch.project)}, options)


def _at_fixing_failures(orch: Orchestrator, human: Principal) -> str:
    """A session whose first implementation failed its tests: one fix attempt used."""
    bot = orch.add_principal("agent", "setup-bot", ["tester", "coder", "runner"])[0]
    sid = orch.start_session("design.md", human, again=True).id
    orch.submit(sid, "tests", bot, [{"path": "tests/test_calc.py", "content": TESTS}])
    orch.decide(sid, "approve", human)
    orch.submit(sid, "implementation", bot, [{"path": "calc.py", "content": BUGGY}])
    session, _ = orch.run_tests(sid, bot)
    assert (session.phase, session.fix_attempts) == ("fixing_failures", 1)
    return sid


def _events(orch: Orchestrator, sid: str, action: str) -> list[dict[str, Any]]:
    return [e for e in orch.timeline(sid) if e["action"] == action]


def test_an_always_failing_agent_is_parked_for_a_human_and_resumed_after_the_fix(
    open_project: Opener, tmp_path: Path
) -> None:
    """A coder CLI that exits 1 every time is paused for a human after 3 failures, with its
    last output in the timeline and no fix attempt used; the worker leaves it alone, and once
    a human fixes the agent and resumes, the fix is submitted."""
    key = tmp_path / "agent" / "api-key"
    script = _script(tmp_path, "agent.py", BROKEN_UNTIL_FIXED)
    orch = open_project(
        f"agent_failures_to_human = 3\n"
        f'[agents.coder]\ncommand = "{sys.executable} {script} {key}"\n'
    )
    human = orch.add_principal("human", "reviewer")[0]
    sid = _at_fixing_failures(orch, human)

    with running(_worker(orch, "coder", "coder-bot")):
        wait_for(lambda: orch.get(sid).paused, timeout_s=60)
        time.sleep(1.0)  # the worker keeps polling, but a parked session is no agent's work
        parked = orch.get(sid)
        failures = _events(orch, sid, "agent_failed")
        assert [f["payload"]["count"] for f in failures] == [1, 2, 3]
        assert all("exited 1" in f["payload"]["reason"] for f in failures)
        assert "ERROR: no API key configured" in failures[-1]["payload"]["output"]
        assert {f["actor_kind"] for f in failures} == {"agent"}
        pause = orch.timeline(sid)[-1]
        assert (pause["action"], pause["actor_kind"]) == ("pause", "system")
        assert "failed 3 times in a row" in pause["payload"]["reason"]
        assert "ERROR: no API key configured" in pause["payload"]["output"]
        view = orch.view(parked)
        assert (view["phase"], view["waiting_on"], view["fix_attempts"]) == (
            "fixing_failures",
            "human",
            1,
        )
        assert view["allowed_actions"] == ["resume", "cancel"]
        assert parked.lease_owner is None

        key.write_text("sk-test")  # the human fixes the agent's setup
        orch.decide(sid, "resume", human)
        wait_for(lambda: orch.get(sid).phase == "running_tests", timeout_s=60)
    resumed = orch.get(sid)
    assert (resumed.fix_attempts, resumed.paused) == (1, False)
    assert resumed.context["fixes"][-1]["paths"] == ["calc.py"]
    assert all(report.ok for report in orch.verify_audit(sid))  # a system pause replays


# Exits 0, but its work is always refused: it weakens the locked test, or changes nothing.
LOCKED_EDITOR = """
import pathlib
path = pathlib.Path("tests/test_calc.py")
path.write_text(path.read_text() + "\\n# weaker\\n")
print("done, all good")
"""
IDLE = 'print("I looked around and changed nothing")\n'


@pytest.mark.parametrize("agent", [LOCKED_EDITOR, IDLE], ids=["edits-a-locked-test", "idle"])
def test_an_agent_whose_work_is_always_refused_is_parked_too(
    open_project: Opener, tmp_path: Path, agent: str
) -> None:
    """Refused submissions count as the agent's failures: a broken agent doesn't loop for ever."""
    script = _script(tmp_path, "agent.py", agent)
    orch = open_project(
        f'agent_failures_to_human = 2\n[agents.coder]\ncommand = "{sys.executable} {script}"\n'
    )
    human = orch.add_principal("human", "reviewer")[0]
    sid = _at_fixing_failures(orch, human)
    with running(_worker(orch, "coder", "coder-bot")):
        wait_for(lambda: orch.get(sid).paused, timeout_s=60)
    failures = _events(orch, sid, "agent_failed")
    assert [f["payload"]["count"] for f in failures] == [1, 2]
    assert all("submission was refused" in f["payload"]["reason"] for f in failures)
    assert orch.get(sid).fix_attempts == 1
    assert all(report.ok for report in orch.verify_audit(sid))


def test_a_hanging_agent_is_parked_and_a_human_resume_starts_the_count_again(
    open_project: Opener,
) -> None:
    """A tester that hangs past timeout_s twice is paused for a human; after a resume the count
    starts from one again, so it takes two more timeouts to park it again."""
    orch = open_project(
        'agent_failures_to_human = 2\n[agents.tester]\ncommand = "echo thinking hard; sleep 60"\n'
        "timeout_s = 0.5\n"
    )
    human = orch.add_principal("human", "reviewer")[0]
    sid = orch.start_session("design.md", human, again=True).id

    with running(_worker(orch, "tester", "tester-bot")):
        wait_for(lambda: orch.get(sid).paused, timeout_s=60)
        failures = _events(orch, sid, "agent_failed")
        assert [f["payload"]["count"] for f in failures] == [1, 2]
        assert "timed out after 0.5 s" in failures[-1]["payload"]["reason"]
        assert "thinking hard" in failures[-1]["payload"]["output"]
        assert "failed 2 times in a row" in orch.timeline(sid)[-1]["payload"]["reason"]

        orch.decide(sid, "resume", human)
        wait_for(lambda: len(_events(orch, sid, "agent_failed")) == 3, timeout_s=60)
        assert _events(orch, sid, "agent_failed")[-1]["payload"]["count"] == 1
        assert not orch.get(sid).paused
        wait_for(lambda: orch.get(sid).paused, timeout_s=60)
    assert [f["payload"]["count"] for f in _events(orch, sid, "agent_failed")] == [1, 2, 1, 2]
    assert [e["action"] for e in orch.timeline(sid)].count("pause") == 2
    session = orch.get(sid)
    assert (session.phase, session.fix_attempts) == ("generating_tests", 0)


@contextmanager
def _worker_process(orch: Orchestrator, role: str, name: str, log: Path) -> Iterator[WorkerProcess]:
    """A real `phasegate worker` process with the command adapter; SIGTERMed after the block."""
    _, token = orch.add_principal("agent", name, [role])
    env = {**os.environ, "PHASEGATE_AGENT_TOKEN": token}
    args = [PHASEGATE, "--project", str(orch.project.root), "worker", "--role", role]
    args += ["--agent", "command", "--lease-ttl", "5", "--poll-interval", "0.1"]
    with open(log, "wb") as handle:
        proc = subprocess.Popen(args, env=env, stdout=handle, stderr=subprocess.STDOUT)
    worker = WorkerProcess(name, role, proc, log)
    try:
        yield worker
    finally:
        if proc.poll() is None:
            worker.terminate()


def test_the_failure_count_is_the_sessions_and_survives_a_worker_restart(
    open_project: Opener, tmp_path: Path
) -> None:
    """Failures counted by one worker still count after it stops: a new worker process adds to
    the count in the database and parks the session at the bound."""
    orch = open_project('agent_failures_to_human = 3\n[agents.coder]\ncommand = "exit 1"\n')
    human = orch.add_principal("human", "reviewer")[0]
    sid = _at_fixing_failures(orch, human)

    def counted() -> int:
        return len(_events(orch, sid, "agent_failed"))

    with running(_worker(orch, "coder", "first-worker", max_backoff_s=5)):
        wait_for(lambda: counted() >= 1, timeout_s=60)
    before_restart = counted()
    assert before_restart in (1, 2) and not orch.get(sid).paused

    with _worker_process(orch, "coder", "second-worker", tmp_path / "worker.log") as worker:
        deadline = time.monotonic() + 60
        while not orch.get(sid).paused:
            assert time.monotonic() < deadline, worker.log.read_text()
            time.sleep(0.05)
    assert worker.proc.returncode == 0
    failures = _events(orch, sid, "agent_failed")
    assert [f["payload"]["count"] for f in failures] == [1, 2, 3]
    assert {f["actor_id"] for f in failures} == {"first-worker", "second-worker"}
    assert "paused" in worker.log.read_text()
    session = orch.get(sid)
    assert (session.phase, session.fix_attempts, session.paused) == ("fixing_failures", 1, True)


def test_a_60_mb_agent_log_keeps_its_head_and_tail_with_a_cut_marker(
    open_project: Opener, tmp_path: Path
) -> None:
    """An agent that prints 60 MB leaves a log of its first and last bytes, saying how many
    bytes were cut between them; its work is still submitted."""
    script = _script(tmp_path, "flood.py", FLOOD)
    orch = open_project(f'[agents.tester]\ncommand = "{sys.executable} {script}"\n')
    human = orch.add_principal("human", "reviewer")[0]
    sid = orch.start_session("design.md", human, again=True).id
    with running(_worker(orch, "tester", "tester-bot")):
        wait_for(lambda: orch.get(sid).phase == "awaiting_test_review", timeout_s=60)

    (log,) = (orch.project.state_dir / "logs" / "agents").glob("*.log")
    data = log.read_bytes()
    printed = (
        len(b"FIRST LINE OF THE AGENT\n") + 60 * 1024 * 1024 + len(b"LAST LINE OF THE AGENT\n")
    )
    cut = printed - LOG_HEAD_BYTES - LOG_TAIL_BYTES
    marker = f"[{cut} bytes cut: the log keeps the first {LOG_HEAD_BYTES} and the last".encode()
    assert len(data) < LOG_HEAD_BYTES + LOG_TAIL_BYTES + 200
    assert data.startswith(b"FIRST LINE OF THE AGENT\n")
    assert data.endswith(b"LAST LINE OF THE AGENT\n")
    assert data.count(marker) == 1
    assert data.index(marker) > LOG_HEAD_BYTES
    assert "LAST LINE OF THE AGENT" in orch.get(sid).context["tests"]["note"]


class _FlakyDatabase:
    """The kernel's database, except that the first write fails as a database restart would."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.failed = 0

    def write(self) -> Any:
        if not self.failed:
            self.failed += 1
            raise StorageError("the database is restarting (injected)")
        return self._db.write()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


def test_the_run_lease_heartbeat_survives_a_database_error(
    open_project: Opener, caplog: pytest.LogCaptureFixture
) -> None:
    """A heartbeat that fails once (the database unreachable) is logged and tried again: the
    run keeps its lease past its TTL; only losing the lease ends the beating."""
    orch = open_project("")
    human = orch.add_principal("human", "reviewer")[0]
    runner = orch.add_principal("agent", "runner-bot", ["runner"])[0]
    session = orch.start_session("design.md", human, again=True)
    ttl = timedelta(seconds=0.9)  # a beat every 0.3 s
    epoch = leases.acquire_for_run(orch.kernel, session, runner, ttl=ttl)
    flaky = _FlakyDatabase(orch.kernel.db)
    kernel = copy.copy(orch.kernel)
    kernel.db = cast(Database, flaky)

    caplog.set_level(logging.INFO, logger="phasegate.leases")
    with leases.keep_lease(kernel, session.id, runner, epoch, ttl=ttl):
        time.sleep(2.5)  # almost three TTLs: without the retries the lease would have expired
        held = orch.get(session.id)
        assert flaky.failed == 1
        assert (held.lease_owner, held.lease_epoch) == (leases.run_owner(runner), epoch)
        assert held.lease_expires_at is not None and held.lease_expires_at > orch.clock()
        assert "failed; trying again" in caplog.text

        leases.release(orch.kernel, session.id, epoch, "taken")  # now it is lost for good
        wait_for(lambda: "lost the lease" in caplog.text, timeout_s=5)
