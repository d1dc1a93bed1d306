"""Cached, batched git reads: keyed by commit sha, never stale, and no git process when warm."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from phasegate.entrypoints.mcp.status import build_status
from phasegate.workspace import (
    FileChange,
    FileNotFoundAtCommit,
    RepositoryError,
    apply_submission,
    clear_git_cache,
    diff_between,
    head_commit,
    read_file_at,
)

RunGit = Callable[..., str]


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    """Each test starts cold and leaves no batch process running."""
    clear_git_cache()
    yield
    clear_git_cache()


@pytest.fixture
def spawned(monkeypatch: pytest.MonkeyPatch) -> list[subprocess.Popen[bytes]]:
    """Every process started from now on (subprocess.run goes through Popen too)."""
    started: list[subprocess.Popen[bytes]] = []

    class CountingPopen(subprocess.Popen):  # type: ignore[type-arg]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            started.append(self)

    monkeypatch.setattr(subprocess, "Popen", CountingPopen)
    return started


def submit(worktree: Path, files: dict[str, str]) -> str:
    """Commit ``files`` in the worktree the way a submission does; return the commit sha."""
    changes = [FileChange(path, content) for path, content in files.items()]
    return apply_submission(worktree, changes, "submission", {}).sha


def batch_processes(started: list[subprocess.Popen[bytes]]) -> list[subprocess.Popen[bytes]]:
    return [p for p in started if "cat-file" in p.args and "--batch" in p.args]  # type: ignore[operator]


def is_reaped(process: subprocess.Popen[bytes]) -> bool:
    """Whether the process has exited and been waited for (so it is not a zombie)."""
    try:
        os.waitpid(process.pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def wait_until_zombie(pid: int) -> None:
    """Wait until a killed child has exited, without reaping it (Linux /proc)."""
    stat_file = Path(f"/proc/{pid}/stat")
    if not stat_file.exists():
        pytest.skip("needs /proc to see a process's state")
    deadline = time.monotonic() + 10
    while stat_file.read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline, f"process {pid} did not exit after SIGKILL"
        time.sleep(0.01)


def test_a_new_commit_is_never_served_stale(worktree: Path) -> None:
    """Content is keyed by commit: B shows the new text, A still the old, both when warm."""
    first = submit(worktree, {"src/app.py": "first\n"})
    assert read_file_at(worktree, first, "src/app.py") == "first\n"
    second = submit(worktree, {"src/app.py": "second\n"})
    for _ in range(2):
        assert read_file_at(worktree, second, "src/app.py") == "second\n"
        assert read_file_at(worktree, first, "src/app.py") == "first\n"


def test_a_moved_ref_is_resolved_afresh(repo: Path, worktree: Path) -> None:
    """HEAD and a branch name are looked up on every call, so they follow new commits."""
    submit(worktree, {"src/app.py": "one\n"})
    assert read_file_at(worktree, "HEAD", "src/app.py") == "one\n"
    assert read_file_at(repo, "phasegate/s1", "src/app.py") == "one\n"
    submit(worktree, {"src/app.py": "two\n"})
    assert read_file_at(worktree, "HEAD", "src/app.py") == "two\n"
    assert read_file_at(repo, "phasegate/s1", "src/app.py") == "two\n"


def test_each_worktree_resolves_its_own_head(
    repo: Path, new_worktree: Callable[[str], Path]
) -> None:
    """HEAD is per worktree: two sessions of one repository each read their own."""
    first, second = new_worktree("s1"), new_worktree("s2")
    submit(first, {"src/app.py": "s1\n"})
    submit(second, {"src/app.py": "s2\n"})
    assert read_file_at(first, "HEAD", "src/app.py") == "s1\n"
    assert read_file_at(second, "HEAD", "src/app.py") == "s2\n"
    assert read_file_at(repo, "HEAD", "src/app.py").startswith("def add")


def test_a_warm_read_starts_no_git_process(
    worktree: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    """Cold: one batch process for every file and the commit; warm: no process at all."""
    files = {f"tests/test_{n}.py": f"def test_{n}():\n    assert {n}\n" for n in range(3)}
    commit = submit(worktree, files)
    spawned.clear()
    for path, content in files.items():
        assert read_file_at(worktree, commit, path) == content
    assert len(spawned) == len(batch_processes(spawned)) == 1
    spawned.clear()
    for _ in range(5):
        for path, content in files.items():
            assert read_file_at(worktree, commit, path) == content
    assert spawned == []


def test_worktrees_of_one_repository_share_the_cache(
    repo: Path, new_worktree: Callable[[str], Path], spawned: list[subprocess.Popen[bytes]]
) -> None:
    """A commit read in one worktree is cached for the others: they share the objects."""
    first, second = new_worktree("s1"), new_worktree("s2")
    commit = submit(first, {"src/app.py": "shared\n"})
    assert read_file_at(first, commit, "src/app.py") == "shared\n"
    spawned.clear()
    assert read_file_at(second, commit, "src/app.py") == "shared\n"
    assert read_file_at(repo, commit, "src/app.py") == "shared\n"
    assert spawned == []


def test_the_cache_is_per_repository(
    repo: Path, worktree: Path, tmp_path: Path, run_git: RunGit
) -> None:
    """A commit cached for one repository is unknown in another that lacks it."""
    commit = submit(worktree, {"src/app.py": "only here\n"})
    assert read_file_at(worktree, commit, "src/app.py") == "only here\n"
    other = tmp_path / "other"
    other.mkdir()
    run_git(other, "init", "--quiet")
    run_git(other, "commit", "--quiet", "--allow-empty", "-m", "unrelated")
    with pytest.raises(RepositoryError, match="does not exist"):
        read_file_at(other, commit, "src/app.py")


def test_a_missing_path_is_file_not_found_cold_and_warm(
    repo: Path, worktree: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    """A path absent at a commit raises FileNotFoundAtCommit, from the cache when warm."""
    base = head_commit(repo)
    for _ in range(2):
        with pytest.raises(FileNotFoundAtCommit, match="does not exist at commit"):
            read_file_at(worktree, base, "src/missing.py")
    spawned.clear()
    with pytest.raises(FileNotFoundAtCommit):
        read_file_at(worktree, base, "src/missing.py")
    assert spawned == []


@pytest.mark.parametrize("commit", ["deadbeef" * 5, "no-such-branch", "--all", "-", ""])
def test_an_unknown_commit_is_a_repository_error(worktree: Path, commit: str) -> None:
    """An unknown or option-like commit is a clear RepositoryError, never read as a file."""
    with pytest.raises(RepositoryError, match="commit"):
        read_file_at(worktree, commit, "src/app.py")


def test_an_unknown_full_sha_is_not_remembered_as_missing(worktree: Path, run_git: RunGit) -> None:
    """A full sha unknown now may exist after the next commit: that answer is not cached."""
    with pytest.raises(RepositoryError, match="does not exist"):
        read_file_at(worktree, "0" * 40, "src/app.py")
    commit = submit(worktree, {"src/app.py": "later\n"})
    assert read_file_at(worktree, commit, "src/app.py") == "later\n"


def test_a_directory_is_a_clear_error(repo: Path, worktree: Path) -> None:
    """A path naming a directory (a tree) says so instead of failing obscurely."""
    with pytest.raises(RepositoryError, match="is a directory, not a file"):
        read_file_at(worktree, head_commit(repo), "src")


@pytest.mark.parametrize("path", ["src/app.py\nHEAD:README.md", "a\rb", "a\0b"])
def test_a_path_with_a_line_break_is_refused_before_git_sees_it(
    repo: Path, worktree: Path, path: str, spawned: list[subprocess.Popen[bytes]]
) -> None:
    """The batch protocol is line based: such a path is refused, never sent."""
    base = head_commit(repo)
    read_file_at(worktree, base, "src/app.py")  # start the batch process
    spawned.clear()
    with pytest.raises(RepositoryError, match="line break"):
        read_file_at(worktree, base, path)
    assert spawned == []
    assert read_file_at(worktree, base, "README.md") == "# demo\n"  # protocol still in step


def test_a_binary_file_is_a_repository_error(worktree: Path, run_git: RunGit) -> None:
    """Non-UTF-8 content raises RepositoryError, as before the cache."""
    (worktree / "blob.bin").write_bytes(b"\xff\xfe\x00binary")
    run_git(worktree, "add", "blob.bin")
    run_git(worktree, "commit", "--quiet", "-m", "binary")
    with pytest.raises(RepositoryError, match="not UTF-8"):
        read_file_at(worktree, "HEAD", "blob.bin")


def test_a_path_that_is_not_a_repository_is_a_repository_error(tmp_path: Path) -> None:
    """A missing directory or one outside any repository gets a clear RepositoryError."""
    with pytest.raises(RepositoryError, match="does not exist"):
        read_file_at(tmp_path / "gone", "HEAD", "a.py")
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(RepositoryError, match="not a git repository"):
        read_file_at(plain, "HEAD", "a.py")


def test_a_removed_worktree_is_not_read_through_the_repository(
    repo: Path, worktree: Path, run_git: RunGit
) -> None:
    """Once the worktree is gone, reading it fails instead of finding the main repository."""
    assert read_file_at(worktree, "HEAD", "README.md") == "# demo\n"
    run_git(repo, "worktree", "remove", "--force", str(worktree))
    with pytest.raises(RepositoryError, match="does not exist"):
        read_file_at(worktree, "HEAD", "README.md")


def test_a_killed_batch_process_is_restarted_and_reaped(
    repo: Path, worktree: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    """Killing git between two reads: the next read starts a new one and succeeds."""
    base = head_commit(repo)
    assert read_file_at(worktree, base, "src/app.py").startswith("def add")
    [first] = batch_processes(spawned)
    open_fds = len(os.listdir("/proc/self/fd"))
    os.kill(first.pid, signal.SIGKILL)
    wait_until_zombie(first.pid)  # dead but not reaped: reaping it is the reader's job
    assert read_file_at(worktree, base, "README.md") == "# demo\n"
    assert len(batch_processes(spawned)) == 2
    assert is_reaped(first)
    assert len(os.listdir("/proc/self/fd")) == open_fds  # the dead one's pipes were closed


def test_a_request_that_kills_git_is_retried_once_then_reported(
    worktree: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    """git dies on this name: one retry on a fresh process, then a clear error; reads go on."""
    with pytest.raises(RepositoryError, match=r"stopped unexpectedly.*only has \d+ entries"):
        read_file_at(worktree, "HEAD@{100}", "README.md")
    assert len(batch_processes(spawned)) == 2
    assert all(is_reaped(p) for p in batch_processes(spawned))
    assert read_file_at(worktree, "HEAD", "README.md") == "# demo\n"


def test_clearing_the_cache_ends_the_batch_process(
    repo: Path, worktree: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    """clear_git_cache closes git and waits for it, leaving no zombie."""
    read_file_at(worktree, head_commit(repo), "README.md")
    [process] = batch_processes(spawned)
    clear_git_cache()
    assert process.returncode is not None
    assert is_reaped(process)


def test_concurrent_reads_get_their_own_content(worktree: Path) -> None:
    """Eight threads reading different files at once, starting cold, each get the right text."""
    files = {f"src/f{n}.py": f"value = {n}\n" * (n * 500 + 1) for n in range(8)}
    commit = submit(worktree, files)
    clear_git_cache()
    start = threading.Barrier(len(files))
    results: dict[str, list[str]] = {}

    def read(path: str) -> None:
        start.wait()
        results[path] = [read_file_at(worktree, commit, path) for _ in range(20)]

    threads = [threading.Thread(target=read, args=(path,)) for path in files]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert {path: set(texts) for path, texts in results.items()} == {
        path: {content} for path, content in files.items()
    }


def test_the_diff_is_keyed_by_base_and_head(
    repo: Path, worktree: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    """A new head gives a new diff; the old pair still gives the old one, from the cache."""
    base = head_commit(repo)
    first = submit(worktree, {"src/app.py": "first\n"})
    old = diff_between(worktree, base, first)
    assert "+first" in old
    second = submit(worktree, {"src/app.py": "second\n"})
    new = diff_between(worktree, base, second)
    assert "+second" in new and "+first" not in new
    assert diff_between(worktree, base, "HEAD") == new  # HEAD moved to the new commit
    spawned.clear()
    assert diff_between(worktree, base, first) == old
    assert diff_between(worktree, base, second) == new
    assert diff_between(worktree, base, second, ["tests/test_app.py"]) == ""
    assert len(spawned) == 1  # only the new, path-limited diff ran git


def test_a_warm_session_status_starts_no_git_process(
    orch: Any, human: Any, agent: Any, spawned: list[subprocess.Popen[bytes]]
) -> None:
    """get_session_status read twice on the same approved tests: the second starts nothing."""
    session = orch.start_session(str(orch.project.root / "design.md"), human, again=True)
    tests = [
        {"path": f"test_calc_{n}.py", "content": f"def test_{n}():\n    pass\n"} for n in range(3)
    ]
    session = orch.submit(session.id, "tests", agent, tests)
    session = orch.decide(session.id, "approve", human, expected_version=session.version)
    assert build_status(orch, session, "").tests is not None
    spawned.clear()
    status = build_status(orch, orch.get(session.id), "")
    assert spawned == []
    assert status.tests is not None
    shown = {f.path: f.content for f in status.tests.files}  # with pytest.ini, also locked
    assert {t["path"]: shown.get(t["path"]) for t in tests} == {
        t["path"]: t["content"] for t in tests
    }
