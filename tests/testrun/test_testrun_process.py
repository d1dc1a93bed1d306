"""run_command against well-behaved and hostile shell commands, with real processes."""

from __future__ import annotations

import os
import threading
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from phasegate.testrun import env_for_tests, run_command


def is_running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie awaiting its reaper counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :][:1] not in (b"Z", b"X")


def read_pids(path: Path) -> list[int]:
    """Read the pids a hostile command wrote, one per line."""
    return [int(line) for line in path.read_text().split()]


TIMEOUT = 1.0
GRACE = 1.0
SLACK = 2.0  # the contract: every run ends within timeout + grace + 2 s


def run(command: str, cwd: Path, **kwargs: object):  # type: ignore[no-untyped-def]
    kwargs.setdefault("timeout_s", TIMEOUT)
    kwargs.setdefault("grace_s", GRACE)
    kwargs.setdefault("env", env_for_tests(os.environ))
    return run_command(command, cwd, **kwargs)  # type: ignore[arg-type]


@contextmanager
def ticker() -> Iterator[list[float]]:
    """Record the gaps between 50 ms ticks of a concurrent thread."""
    gaps: list[float] = []
    stop = threading.Event()

    def tick() -> None:
        last = time.monotonic()
        while not stop.wait(0.05):
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    thread = threading.Thread(target=tick)
    thread.start()
    try:
        yield gaps
    finally:
        stop.set()
        thread.join()


def assert_all_dead(pids: list[int]) -> None:
    assert pids, "the command should have recorded its pids"
    survivors = [p for p in pids if is_running(p)]
    assert survivors == []


def test_exit_code_and_merged_output_are_reported(tmp_path: Path) -> None:
    """stdout and stderr arrive merged in one output and the exit code is returned."""
    outcome = run("echo out; echo err >&2; exit 3", tmp_path)
    assert outcome.exit_code == 3
    assert not outcome.timed_out
    assert "out" in outcome.output and "err" in outcome.output
    assert outcome.truncated_bytes == 0


def test_stdin_is_devnull(tmp_path: Path) -> None:
    """A command reading stdin gets EOF at once instead of hanging or stealing our input."""
    outcome = run("cat; echo done", tmp_path)
    assert outcome.exit_code == 0
    assert outcome.output == "done\n"


def test_command_runs_in_cwd(tmp_path: Path) -> None:
    """The command runs in the directory it is given."""
    assert run("pwd", tmp_path).output.strip() == str(tmp_path)


def test_sleep_forever_is_killed_at_the_deadline(tmp_path: Path, pid_file: Path) -> None:
    """A command that never ends is killed at its timeout, children included."""
    started = time.monotonic()
    outcome = run(f"echo $$ > {pid_file}; sleep 1000 & echo $! >> {pid_file}; wait", tmp_path)
    elapsed = time.monotonic() - started
    assert outcome.timed_out and outcome.exit_code is None
    assert TIMEOUT <= elapsed < TIMEOUT + GRACE + SLACK
    assert_all_dead(read_pids(pid_file))


def test_background_grandchild_holding_the_pipe_does_not_hang(
    tmp_path: Path, pid_file: Path
) -> None:
    """A backgrounded `sleep 600` keeping the pipe open is killed once the command exits."""
    started = time.monotonic()
    outcome = run(f"sleep 600 & echo $! > {pid_file}; echo bye; exit 0", tmp_path, timeout_s=30)
    assert time.monotonic() - started < SLACK
    assert outcome.exit_code == 0 and not outcome.timed_out
    assert outcome.output == "bye\n"
    assert_all_dead(read_pids(pid_file))


def test_flood_of_output_is_capped_and_memory_stays_bounded(tmp_path: Path) -> None:
    """100 MB of output keeps a head and a tail, marks the cut, and uses a few MiB at most."""
    tracemalloc.start()
    try:
        outcome = run("head -c 100000000 /dev/zero | tr '\\0' x", tmp_path, timeout_s=30)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert outcome.exit_code == 0
    kept = 64 * 1024 + 1024 * 1024
    assert outcome.truncated_bytes == 100_000_000 - kept
    assert f"… [{100_000_000 - kept} bytes cut] …" in outcome.output
    assert len(outcome.output.encode()) < 1.1 * 1024 * 1024
    assert peak < 16 * 1024 * 1024


def test_sigterm_ignoring_command_is_killed_after_the_grace(tmp_path: Path, pid_file: Path) -> None:
    """A command that traps SIGTERM gets SIGKILL after the grace period, with its children."""
    command = f"trap '' TERM; echo $$ > {pid_file}; sleep 1000 & echo $! >> {pid_file}; wait"
    started = time.monotonic()
    with ticker() as gaps:
        outcome = run(command, tmp_path)
    elapsed = time.monotonic() - started
    assert outcome.timed_out
    assert TIMEOUT + GRACE - 0.1 <= elapsed < TIMEOUT + GRACE + SLACK
    assert_all_dead(read_pids(pid_file))
    assert max(gaps) < 0.25, "the caller's other threads must keep running"


def test_setsid_child_is_killed_when_the_command_times_out(tmp_path: Path, pid_file: Path) -> None:
    """A child that leaves the process group with setsid is still killed at the timeout."""
    command = f"setsid sh -c 'echo $$ > {pid_file}; exec sleep 1000' & sleep 1000"
    outcome = run(command, tmp_path)
    assert outcome.timed_out
    assert_all_dead(read_pids(pid_file))


def test_setsid_child_is_killed_when_the_command_exits(tmp_path: Path, pid_file: Path) -> None:
    """A setsid'd child left behind by a command that exits normally is killed too."""
    command = f"setsid sh -c 'echo $$ > {pid_file}; exec sleep 1000' & sleep 0.5; exit 0"
    started = time.monotonic()
    outcome = run(command, tmp_path, timeout_s=30)
    assert time.monotonic() - started < 0.5 + SLACK
    assert outcome.exit_code == 0
    assert_all_dead(read_pids(pid_file))


def test_double_forked_setsid_escapee_is_found_by_its_environment(
    tmp_path: Path, pid_file: Path
) -> None:
    """A setsid'd grandchild re-parented to init before any scan is still found and killed."""
    command = (
        f"(setsid sh -c 'echo $$ > {pid_file}; exec sleep 1000' &); "
        f"while [ ! -s {pid_file} ]; do sleep 0.01; done; exit 0"  # exit once it has escaped
    )
    outcome = run(command, tmp_path, timeout_s=30)
    assert outcome.exit_code == 0
    assert_all_dead(read_pids(pid_file))


def test_output_callback_gets_the_running_byte_total(tmp_path: Path) -> None:
    """on_output is called in the caller's thread with a growing byte count."""
    seen: list[tuple[int, str]] = []
    run(
        "echo one; sleep 0.3; echo two",
        tmp_path,
        on_output=lambda n: seen.append((n, threading.current_thread().name)),
    )
    totals = [n for n, _ in seen]
    assert totals == sorted(totals) and totals[-1] == len("one\ntwo\n")
    assert {name for _, name in seen} == {threading.current_thread().name}


def test_raising_callback_still_kills_everything(tmp_path: Path, pid_file: Path) -> None:
    """If on_output raises, the error propagates and no process is left running."""

    def explode(_: int) -> None:
        raise RuntimeError("callback failed")

    with pytest.raises(RuntimeError, match="callback failed"):
        run(f"sleep 1000 & echo $! > {pid_file}; echo x; wait", tmp_path, on_output=explode)
    assert_all_dead(read_pids(pid_file))


def test_canary_secret_never_reaches_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PHASEGATE_* tokens and unlisted secrets are not in the environment a command sees."""
    monkeypatch.setenv("PHASEGATE_TOKEN", "secret-canary-1")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-canary-2")
    monkeypatch.setenv("PYTHONSTARTUP", "/tmp/secret-canary-3.py")
    outcome = run("env", tmp_path, env=env_for_tests(os.environ, ["PHASEGATE_*"]))
    assert "secret-canary" not in outcome.output
    assert "PATH=" in outcome.output


def test_env_allowlist_keeps_basics_and_user_names() -> None:
    """The allowlist keeps PATH, LC_*, PYTHON* and names or prefixes the user allows."""
    base = {
        "PATH": "/bin",
        "LC_ALL": "C",
        "PYTHONHASHSEED": "0",
        "DJANGO_SETTINGS": "x",
        "CI_FLAG": "1",
        "SECRET": "s",
    }
    env = env_for_tests(base, ["DJANGO_SETTINGS", "CI_*"])
    assert env == {k: v for k, v in base.items() if k != "SECRET"}
