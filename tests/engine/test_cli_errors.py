"""Mistakes at the command line, as the user sees them: one line that says what to do, no change.

Each case runs the installed `phasegate` console script in a real git repository.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from engine_helpers import act, drive, make_project_repo
from tests.conftest import git
from tests.engine.dropping_proxy import DroppingProxy
from tests.web.conftest import free_port, start_server, stop_server

from phasegate.config import open_project
from phasegate.orchestrator import Orchestrator

PHASEGATE = str(Path(sys.executable).with_name("phasegate"))


def run(
    cwd: Path, *args: str, env: dict[str, str] | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """The real `phasegate` in `cwd`, with the test's environment plus `env`."""
    return subprocess.run(
        [PHASEGATE, *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_line_error(done: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit 1, nothing on stdout, one `phasegate: …` line on stderr holding each needle."""
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 1, (done.stdout, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("phasegate: "), done.stderr
    assert done.stdout == ""
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def project(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Orchestrator]:
    """An initialised project (fix budget 2) on the test's database, opened as the CLI opens it."""
    root = make_project_repo(tmp_path / "repo")
    with (root / "phasegate.toml").open("a") as config:
        config.write("max_fix_attempts = 2\n")
    monkeypatch.setenv("PHASEGATE_DATABASE_URL", db_url)
    assert run(root, "init").returncode == 0
    orch = Orchestrator.open(open_project(root))
    yield orch
    orch.close()


def started(orch: Orchestrator) -> str:
    """A new session's id, started with the CLI as a user would."""
    done = run(orch.project.root, "start", "design.md", "--json")
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["id"])


def no_database_at(db_url: str) -> bool:
    """True if nothing created phasegate's database: no SQLite file, no PostgreSQL tables."""
    if db_url.startswith("sqlite:///"):
        return not Path(db_url.removeprefix("sqlite:///")).exists()
    engine = sa.create_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        return sa.inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


# --- init ----------------------------------------------------------------------------------


def test_init_in_a_subdirectory_sets_up_the_repository_root(tmp_path: Path, db_url: str) -> None:
    """From repo/src/deep, init writes phasegate.toml at repo/, says so, and later commands work."""
    repo = tmp_path / "repo"
    deep = repo / "src" / "deep"
    deep.mkdir(parents=True)
    git(repo, "init", "-q")
    done = run(deep, "init", env={"PHASEGATE_DATABASE_URL": db_url})
    assert done.returncode == 0, done.stderr
    root = repo.resolve()
    assert f"{deep.resolve()} is inside the repository {root}; setting phasegate up there" in (
        done.stdout
    )
    assert f"phasegate is set up in {root}" in done.stdout
    assert (repo / "phasegate.toml").is_file()
    assert list(deep.iterdir()) == [] and list((repo / "src").iterdir()) == [deep]
    assert run(deep, "task", "ls", env={"PHASEGATE_DATABASE_URL": db_url}).returncode == 0


def test_init_outside_a_git_repository_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    """Outside any repository init says to run `git init` and creates no file."""
    folder = tmp_path / "notes"
    folder.mkdir()
    done = run(folder, "init", env={"GIT_CEILING_DIRECTORIES": str(tmp_path)})
    one_line_error(
        done, f"{folder.resolve()} is not inside a git repository", "run `git init` first"
    )
    assert list(folder.iterdir()) == []


# --- serve ---------------------------------------------------------------------------------


def test_serve_on_a_busy_port_is_one_line_that_names_a_free_port(
    tmp_path: Path, db_url: str
) -> None:
    """A port another process listens on: one line before any URL, and no database is created."""
    root = make_project_repo(tmp_path / "repo")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run(root, "serve", "--port", str(port), env={"PHASEGATE_DATABASE_URL": db_url})
    line = one_line_error(
        done, f"port {port} on 127.0.0.1 is in use (another phasegate serve?)", "--port "
    )
    suggested = re.search(r"--port (\d+)$", line)
    assert suggested and int(suggested.group(1)) != port, line
    assert not (root / ".phasegate").exists() and no_database_at(db_url)


def test_serve_on_port_zero_still_serves(tmp_path: Path) -> None:
    """`--port 0` is any free port: nothing to refuse, the server starts and keeps running."""
    root = make_project_repo(tmp_path / "repo")
    server = subprocess.Popen(
        [PHASEGATE, "serve", "--port", "0"],
        cwd=root,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline().startswith("phasegate dashboard: ")
        with pytest.raises(subprocess.TimeoutExpired):
            server.wait(timeout=1)  # a failed bind would have ended it by now
    finally:
        server.terminate()
        _, err = server.communicate(timeout=10)
    assert "Traceback" not in err and "in use" not in err


# --- decisions without -m ------------------------------------------------------------------


def test_reject_without_a_message_is_one_line_and_changes_nothing(project: Orchestrator) -> None:
    """At the test review, `reject` without -m asks for one; the session's version stays."""
    sid = started(project)
    act(project, sid, "submit_tests")
    before = project.get(sid).version
    one_line_error(
        run(project.project.root, "reject", sid[:8]),
        f"can't reject session {sid[:8]} without a comment",
        "(-m/--message)",
    )
    assert project.get(sid).version == before
    done = run(project.project.root, "reject", sid[:8], "-m", "test the negative case too")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        f"rejected session {sid[:8]}; it is now in generating tests, "
        "waiting for an agent (tester) to submit tests"
    )


def test_retry_without_a_message_is_one_line_and_changes_nothing(project: Orchestrator) -> None:
    """Once the fix loop gave up, retry without -m asks for guidance; reopen-tests reads well."""
    sid = started(project)
    before = drive(project, sid, "awaiting_human_intervention").version
    one_line_error(
        run(project.project.root, "retry", sid[:8]),
        f"can't retry session {sid[:8]} without a comment",
        "(-m/--message)",
    )
    assert project.get(sid).version == before
    done = run(project.project.root, "reopen-tests", sid[:8])
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"reopened the tests of session {sid[:8]}; it is now in ")
    assert "_" not in done.stdout  # no reopen_tests, no generating_tests


def test_pause_says_how_to_go_on_in_words(project: Orchestrator) -> None:
    """A decision's line names the command to type next, not the workflow's identifiers."""
    sid = started(project)
    done = run(project.project.root, "pause", sid[:8])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        f"paused session {sid[:8]}; it is paused in generating tests; "
        f"phasegate resume {sid[:8]} lets it go on"
    )


def test_decisions_through_a_server_refuse_in_one_line(project: Orchestrator) -> None:
    """As the server's client: a missing -m, a reference like `.`, a broken URL — one line each."""
    sid = started(project)
    act(project, sid, "submit_tests")
    before = project.get(sid).version
    token = project.add_principal("human", "remote-alice")[1]
    server = start_server(project.project.root, {})
    try:
        client = {"PHASEGATE_SERVER_URL": server.url, "PHASEGATE_TOKEN": token}
        root = project.project.root
        refused = run(root, "reject", sid[:8], "--passphrase-stdin", env=client, stdin="\n")
        one_line_error(refused, f"can't reject session {sid[:8]} without a comment")
        for ref in (".", "..", "5de6?x=1"):
            found = run(root, "reject", ref, "-m", "x", "--passphrase-stdin", env=client)
            one_line_error(found, f"no session {ref!r}")
        broken = {**client, "PHASEGATE_SERVER_URL": "http://[::1"}
        one_line_error(
            run(root, "reject", sid[:8], "-m", "x", env=broken),
            "is not a valid URL",
            "PHASEGATE_SERVER_URL",
        )
    finally:
        stop_server(server)
    assert project.get(sid).version == before


def test_a_decision_whose_answer_was_lost_is_sent_again_and_lands_once(
    project: Orchestrator,
) -> None:
    """As the server's client: the server applies an approval but the answer never arrives
    (the connection drops). The CLI says so, sends the same request again with the same
    idempotency key, and prints the first result; the session holds one approval."""
    sid = started(project)
    act(project, sid, "submit_tests")
    before = project.get(sid).version
    token = project.add_principal("human", "remote-alice")[1]
    server = start_server(project.project.root, {})
    proxy = DroppingProxy(int(server.url.rsplit(":", 1)[1]), drop=b"/approve")
    try:
        client = {"PHASEGATE_SERVER_URL": proxy.url, "PHASEGATE_TOKEN": token}
        done = run(project.project.root, "approve", sid[:8], "--passphrase-stdin", env=client)
    finally:
        proxy.close()
        stop_server(server)
    assert done.returncode == 0, done.stderr
    said = done.stderr.splitlines()  # one progress line, no error
    assert len(said) == 1 and "dropped the request" in said[0] and "sending it again" in said[0]
    assert done.stdout.startswith(f"approved session {sid[:8]}"), done.stdout
    approvals = [r for r in proxy.requests if r.startswith(b"POST ") and b"/approve" in r]
    assert proxy.dropped == 1 and len(approvals) == 2
    assert len({r.rpartition(b"\r\n\r\n")[2] for r in approvals}) == 1  # the same key
    events = [e for e in project.timeline(sid) if e["version"] > before]
    assert [e["action"] for e in events if e["action"] == "approve"] == ["approve"]
    assert project.get(sid).version == before + 1


def test_a_read_whose_answer_was_lost_is_sent_again(project: Orchestrator) -> None:
    """`phasegate ls` against a server that drops its first request still lists the sessions."""
    sid = started(project)
    token = project.add_principal("human", "remote-alice")[1]
    server = start_server(project.project.root, {})
    proxy = DroppingProxy(int(server.url.rsplit(":", 1)[1]), drop=b"GET /api/sessions")
    try:
        client = {"PHASEGATE_SERVER_URL": proxy.url, "PHASEGATE_TOKEN": token}
        done = run(project.project.root, "ls", env=client)
    finally:
        proxy.close()
        stop_server(server)
    assert done.returncode == 0, done.stderr
    assert proxy.dropped == 1 and "dropped the request" in done.stderr
    assert sid[:8] in done.stdout


def test_a_decision_never_answered_names_the_key_that_finds_out_whether_it_landed(
    project: Orchestrator,
) -> None:
    """A server that applies the approval but drops every answer: after about 15 s of sending
    it again the CLI stops, saying the outcome is unknown and naming its idempotency key. Run
    again with that key, it prints the approval that landed, and the session holds one."""
    sid = started(project)
    act(project, sid, "submit_tests")
    before = project.get(sid).version
    token = project.add_principal("human", "remote-alice")[1]
    server = start_server(project.project.root, {})
    proxy = DroppingProxy(int(server.url.rsplit(":", 1)[1]), drop=b"/approve", times=1000)
    try:
        client = {"PHASEGATE_SERVER_URL": proxy.url, "PHASEGATE_TOKEN": token}
        root = project.project.root
        lost = run(root, "approve", sid[:8], "--passphrase-stdin", env=client)
        sent, dropped = [r for r in proxy.requests if r.startswith(b"POST ")], proxy.dropped
        proxy.times = 0  # the server's answers get through again
        key = json.loads(sent[0].rpartition(b"\r\n\r\n")[2])["idempotency_key"]
        again = run(
            root, "approve", sid[:8], "--passphrase-stdin", "--idempotency-key", key, env=client
        )
    finally:
        proxy.close()
        stop_server(server)
    assert lost.returncode == 1 and lost.stdout == "" and "Traceback" not in lost.stderr
    progress, error = lost.stderr.splitlines()
    assert "dropped the request" in progress
    assert error.startswith("phasegate: the phasegate server at ") and "gave no answer" in error
    assert f"run it again with --idempotency-key {key}:" in error
    assert len(sent) >= 3 and dropped == len(sent)  # sent again and again, then given up
    assert len({json.loads(r.rpartition(b"\r\n\r\n")[2])["idempotency_key"] for r in sent}) == 1
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith(f"approved session {sid[:8]}")
    events = [e for e in project.timeline(sid) if e["version"] > before]
    assert [e["action"] for e in events] == ["approve"]


@pytest.mark.parametrize(
    ("url", "needle"),
    [("127.0.0.1:8765", "missing an 'http://' or 'https://'"), ("ftp://127.0.0.1:1", "ftp")],
)
def test_a_server_url_that_can_never_work_fails_at_once_in_one_line(
    project: Orchestrator, url: str, needle: str
) -> None:
    """A URL without a usable scheme is no restart: one line naming the URL, no retrying."""
    sid = started(project)
    token = project.add_principal("human", "remote-alice")[1]
    client = {"PHASEGATE_SERVER_URL": url, "PHASEGATE_TOKEN": token}
    done = run(project.project.root, "show", sid[:8], env=client)
    one_line_error(done, "can't reach the phasegate server", needle, "[server] url")


def test_a_non_ascii_passphrase_decides_through_the_server(project: Orchestrator) -> None:
    """A passphrase is any text: the CLI sends it as UTF-8 and the server reads it back; a
    wrong one is still refused in one line."""
    sid = started(project)
    act(project, sid, "submit_tests")
    token = project.add_principal("human", "remote-alice")[1]
    project.principals.set_passphrase("remote-alice", "Grüße aus Köln, 東京 ✓")
    server = start_server(project.project.root, {})
    try:
        client = {"PHASEGATE_SERVER_URL": server.url, "PHASEGATE_TOKEN": token}
        root = project.project.root
        wrong = run(root, "approve", sid[:8], "--passphrase-stdin", env=client, stdin="Grüße\n")
        time.sleep(1.2)  # a wrong passphrase makes the next try wait a second
        right = run(
            root,
            "approve",
            sid[:8],
            "--passphrase-stdin",
            env=client,
            stdin="Grüße aus Köln, 東京 ✓\n",
        )
    finally:
        stop_server(server)
    one_line_error(wrong, "passphrase")
    assert right.returncode == 0, right.stderr
    assert project.get(sid).phase == "generating_implementation"


def test_a_server_that_is_not_running_fails_at_once_in_one_line(project: Orchestrator) -> None:
    """Nobody listens at the server's URL: one line, no retrying (the server never answered)."""
    sid = started(project)
    token = project.add_principal("human", "remote-alice")[1]
    client = {"PHASEGATE_SERVER_URL": f"http://127.0.0.1:{free_port()}", "PHASEGATE_TOKEN": token}
    done = run(project.project.root, "approve", sid[:8], "--passphrase-stdin", env=client)
    one_line_error(done, "can't reach the phasegate server", "serve --guarded")
    assert "dropped" not in done.stderr


# --- start ---------------------------------------------------------------------------------


def test_start_with_a_session_in_progress_is_one_line_or_the_existing_session(
    project: Orchestrator,
) -> None:
    """A second start refuses in one line naming --again; with --json it prints the running one."""
    sid = started(project)
    root = project.project.root
    one_line_error(
        run(root, "start", "design.md"), f"already has a session in progress: {sid[:8]}", "--again"
    )
    shown = run(root, "start", "design.md", "--json")
    assert shown.returncode == 0 and shown.stderr == ""
    existing = json.loads(shown.stdout)
    assert (existing["id"], existing["existing"]) == (sid, True)
    assert [s.id for s in project.list_sessions()] == [sid]
