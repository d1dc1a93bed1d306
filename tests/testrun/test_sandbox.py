"""The sandbox with real bubblewrap: what a run sees, writes, reaches and leaves; its limits."""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from phasegate.testrun import Limits, Sandbox, SandboxUnavailable, run_tests, summarize

Repo = tuple[Path, str]
Commit = Callable[..., str]


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under `root` (links not followed) mapped to a hash of its bytes."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


@pytest.fixture
def secret_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME holding a credential, a shell rc file and a config directory."""
    home = tmp_path / "home"
    (home / ".config" / "phasegate").mkdir(parents=True)
    (home / ".config" / "phasegate" / "credentials.json").write_text('{"token": "pgh_secret"}')
    (home / ".bashrc").write_text("# rc\n")
    monkeypatch.setenv("HOME", str(home))
    return home


def test_a_run_sees_no_home_repository_or_hidden_path_and_writes_only_its_export(
    calc_repo: Repo, commit: Commit, secret_home: Path, tmp_path: Path
) -> None:
    """Reads of HOME, the repository and hidden paths find nothing; writes outside fail."""
    repo, _ = calc_repo
    hidden = tmp_path / "state"
    hidden.mkdir()
    (hidden / "phasegate.db").write_text("the database")
    outside = tmp_path / "outside.txt"
    probe = f"""
import os
seen = []
for path in [{str(secret_home)!r} + "/.config/phasegate/credentials.json",
             {str(repo)!r} + "/.git/HEAD", {str(hidden)!r} + "/phasegate.db"]:
    seen.append(os.path.exists(path))
for path in [{str(secret_home)!r} + "/.bashrc", {str(repo)!r} + "/.git/hooks/pre-commit",
             {str(outside)!r}, "/usr/local/pwned"]:
    try:
        open(path, "a").write("pwned")
        seen.append(True)
    except OSError:
        seen.append(False)
open("written-inside.txt", "w").write("ok")
print("SEEN", seen, "HOME", os.environ["HOME"], os.listdir(os.environ["HOME"]))
"""
    sha = commit(repo, {"probe.py": probe})
    before = {p: tree_digest(p) for p in (secret_home, repo / ".git", hidden)}
    evidence = run_tests(repo, sha, "python3 probe.py", sandbox=Sandbox(hide=(hidden,)))
    assert evidence.status == "passed", evidence.output_tail
    assert "SEEN [False, False, False, False, False, False, False] HOME /tmp/home []" in (
        evidence.output_tail
    )
    assert {p: tree_digest(p) for p in before} == before
    assert not outside.exists()
    assert evidence.sandbox == "bwrap"


def test_a_run_has_no_network_unless_the_project_opts_in(calc_repo: Repo, commit: Commit) -> None:
    """A listener on 127.0.0.1 gets no connection from a sandboxed run; network=true allows it."""
    repo, _ = calc_repo
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    accepted: list[object] = []

    def accept() -> None:
        server.settimeout(20)
        try:
            while True:
                accepted.append(server.accept()[0])
        except OSError:
            return

    threading.Thread(target=accept, daemon=True).start()
    probe = (
        "import socket\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=2); print('CONNECTED')\n"
        "except OSError as exc:\n"
        "    print('REFUSED', exc)\n"
    )
    sha = commit(repo, {"probe.py": probe})
    try:
        closed = run_tests(repo, sha, "python3 probe.py")
        assert "REFUSED" in closed.output_tail and not accepted
        opened = run_tests(repo, sha, "python3 probe.py", sandbox=Sandbox(network=True))
        assert "CONNECTED" in opened.output_tail and len(accepted) == 1
        assert opened.sandbox == "bwrap +network"
    finally:
        server.close()


def test_a_daemon_that_scrubs_its_environment_does_not_outlive_the_run(
    calc_repo: Repo, commit: Commit
) -> None:
    """A double-forked, setsid'd process with an empty environment dies with the run."""
    repo, _ = calc_repo
    token = f"phasegate-daemon-{os.getpid()}-{time.time_ns()}"
    daemon = f"""
import os
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execve("/bin/sleep", ["/bin/sleep", "300", {token!r}], {{}})
    os._exit(0)
print("parent done")
"""
    sha = commit(repo, {"daemon.py": daemon})
    evidence = run_tests(repo, sha, "python3 daemon.py")
    assert "parent done" in evidence.output_tail
    time.sleep(0.5)
    assert not list(_processes_with(token))


def _processes_with(token: str) -> Iterator[int]:
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and token.encode() in (entry / "cmdline").read_bytes():
                yield int(entry.name)
        except OSError:
            continue


def test_missing_bubblewrap_refuses_the_run_with_one_line(
    calc_repo: Repo, cmd_pytest: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no bwrap binary, no test runs: SandboxUnavailable says how to install or opt out."""
    repo, sha = calc_repo
    monkeypatch.setenv("PHASEGATE_BWRAP", "/nonexistent/bwrap")
    with pytest.raises(SandboxUnavailable) as caught:
        run_tests(repo, sha, cmd_pytest)
    message = str(caught.value)
    assert "\n" not in message and 'sandbox = "none"' in message and "bubblewrap" in message


def test_bubblewrap_that_cannot_create_namespaces_refuses_the_run(
    calc_repo: Repo, cmd_pytest: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bwrap that fails its probe (no user namespaces) refuses the run and names the cause."""
    repo, sha = calc_repo
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: setting up uid map: Permission denied' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PHASEGATE_BWRAP", str(fake))
    with pytest.raises(SandboxUnavailable, match="setting up uid map: Permission denied"):
        run_tests(repo, sha, cmd_pytest)


def test_sandbox_none_runs_and_is_marked_unsandboxed(calc_repo: Repo, cmd_pytest: str) -> None:
    """With mode none the tests run directly, and the evidence says so prominently."""
    repo, sha = calc_repo
    evidence = run_tests(repo, sha, cmd_pytest, sandbox=Sandbox(mode="none"))
    assert evidence.status == "passed", evidence.output_tail
    assert evidence.sandbox == "none" and evidence.unsandboxed
    assert "UNSANDBOXED" in summarize(evidence)


def test_a_run_over_the_memory_limit_is_killed_and_reported(
    calc_repo: Repo, commit: Commit
) -> None:
    """A run whose processes together hold more than the memory limit is killed and says so."""
    repo, _ = calc_repo
    hog = (
        "import time\nchunks = []\n"
        "for _ in range(400):\n"
        "    chunks.append(bytearray(1 << 20)); time.sleep(0.005)\n"
        "time.sleep(30)\n"
    )
    sha = commit(repo, {"hog.py": hog})
    box = Sandbox(limits=Limits(memory_bytes=64 << 20))
    started = time.monotonic()
    evidence = run_tests(repo, sha, "python3 hog.py", sandbox=box)
    assert evidence.status == "failed" and evidence.reason == "killed: memory limit 64 MiB"
    assert evidence.killed_by == "memory limit 64 MiB" and evidence.counts_as_attempt
    assert time.monotonic() - started < 20


def test_a_run_over_the_process_limit_is_killed_and_leaves_nothing(
    calc_repo: Repo, commit: Commit
) -> None:
    """Starting more processes than the limit kills the whole run, and none of them survive."""
    repo, _ = calc_repo
    token = f"phasegate-spawn-{os.getpid()}-{time.time_ns()}"
    sleeper = f"python3 -c 'import time; time.sleep(60)' {token}"
    spawner = f"for i in $(seq 40); do {sleeper} & done; wait\n"
    sha = commit(repo, {"spawn.sh": spawner})
    evidence = run_tests(repo, sha, "sh spawn.sh", sandbox=Sandbox(limits=Limits(processes=16)))
    assert evidence.reason == "killed: process limit 16"
    time.sleep(0.3)
    assert not list(_processes_with(token))


def test_a_command_writing_past_the_file_size_limit_is_killed_and_reported(
    calc_repo: Repo,
) -> None:
    """A command killed by SIGXFSZ at the file-size limit gives a failed run naming the limit."""
    repo, sha = calc_repo
    box = Sandbox(limits=Limits(file_bytes=1 << 20))
    evidence = run_tests(repo, sha, "head -c 8388608 /dev/zero > big.bin", sandbox=box)
    assert evidence.status == "failed" and evidence.reason == "killed: file size limit"


def test_a_command_over_the_cpu_time_limit_is_killed_and_reported(calc_repo: Repo) -> None:
    """A busy loop past the CPU-time limit is killed by SIGXCPU and the run names the limit."""
    repo, sha = calc_repo
    box = Sandbox(limits=Limits(cpu_s=1))
    evidence = run_tests(repo, sha, "python3 -c 'while True: pass'", sandbox=box, timeout_s=30)
    assert evidence.status == "failed" and evidence.reason == "killed: CPU time limit"
    assert evidence.duration_s < 20
