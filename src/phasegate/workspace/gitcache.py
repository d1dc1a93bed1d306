"""Cached, batched reads of git objects, for the dashboard and ``get_session_status``.

A commit never changes, so what ``<commit sha>:<path>`` names and the diff
between two commit shas never change either: both are cached in memory by
full sha and repository (its common git dir, shared by all its worktrees),
bounded by bytes and by entries. A revision that is a name (``HEAD``, a branch)
is resolved afresh on every call, so a new commit is never served stale.

Objects are read through one long-lived ``git cat-file --batch`` per worktree
(not per repository: each worktree has its own ``HEAD``), started lazily with
``Git``'s hardened environment, restarted once if it died, and closed when its
reader is dropped or at interpreter exit.

The approved-test lock (``testlock.py``) does not use this cache on purpose: a
security check re-reads git every time, so a tampered object store can't hide
behind a copy read earlier.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import select
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from phasegate.workspace.errors import RepositoryError, printable_path
from phasegate.workspace.git import DEFAULT_TIMEOUT_SECONDS, SAFETY_CONFIG, base_env, worktree_pin

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

OBJECT_CACHE_BYTES = 48 * 1024 * 1024
DIFF_CACHE_BYTES = 16 * 1024 * 1024
MAX_CACHE_ENTRIES = 20_000
MAX_READERS = 16  # live cat-file processes; dropping the least recently used one closes it
_ENTRY_OVERHEAD = 200  # rough bytes an entry costs besides its data (key, tuple, dict slot)
_FULL_SHA = re.compile(r"[0-9a-fA-F]{40}|[0-9a-fA-F]{64}")
_LINE_BREAKS = ("\n", "\r", "\0")  # the batch protocol is one name per line


@dataclass(frozen=True, slots=True)
class GitObject:
    """What ``git cat-file --batch`` answered for one name: kind, object id and content."""

    kind: str  # "blob", "tree", "commit" or "tag"; or "missing" / "ambiguous" (no id, no data)
    oid: str
    data: bytes


class RepoObjects:
    """The immutable objects of the repository holding ``worktree``, read through the cache."""

    def __init__(self, worktree: Path) -> None:
        self.worktree = worktree
        self._where = _locate(worktree)

    def commit(self, revision: str) -> str:
        """The full sha of the commit ``revision`` names; a name like ``HEAD`` is looked up now."""
        if not revision or revision.startswith("-") or _has_line_break(revision):
            raise RepositoryError(
                f"'{printable_path(revision)}' is not a valid commit; pass a commit sha"
            )
        name = f"{revision}^{{commit}}"
        immutable = _FULL_SHA.fullmatch(revision) is not None
        found = _objects.get(self._key(name)) if immutable else None
        if found is None:
            found = self._ask(name)
            # A full-length hex is always an object id to git, never a ref that can move.
            if immutable and found.kind == "commit" and len(found.oid) == len(revision):
                _objects.put(self._key(name), GitObject("commit", found.oid, b""), _ENTRY_OVERHEAD)
        if found.kind != "commit":
            raise RepositoryError(
                f"commit '{revision}' does not exist in {self.worktree}; "
                "pass a commit from this repository"
            )
        return found.oid

    def entry(self, commit_sha: str, path: str) -> GitObject:
        """What ``path`` names at ``commit_sha`` (from ``commit``); cached, a missing path too."""
        _require_sha(commit_sha)
        if _has_line_break(path):
            raise RepositoryError(
                f"path '{printable_path(path)}' contains a line break, which git can't be asked "
                "for; pass a path without control characters"
            )
        key = self._key(f"{commit_sha}:{path}")
        found = _objects.get(key)
        if found is None:
            found = self._ask(f"{commit_sha}:{path}")
            _objects.put(key, found, len(found.data) + len(path) + _ENTRY_OVERHEAD)
        return found

    def diff(
        self, base_sha: str, head_sha: str, paths: Sequence[str], compute: Callable[[], str]
    ) -> str:
        """The diff ``compute`` makes from ``base_sha`` to ``head_sha``, cached by both shas."""
        _require_sha(base_sha)
        _require_sha(head_sha)
        key = (self._where.common_dir, base_sha, head_sha, *paths)
        text = _diffs.get(key)
        if text is None:
            text = compute()
            _diffs.put(key, text, sys.getsizeof(text) + _ENTRY_OVERHEAD)
        return text

    def _key(self, name: str) -> tuple[str, str]:
        return (self._where.common_dir, name)

    def _ask(self, name: str) -> GitObject:
        return _reader(self._where).ask(name)


def clear_git_cache() -> None:
    """Forget every cached object and diff and close every batch process (tests, memory)."""
    _objects.clear()
    _diffs.clear()
    _places.clear()
    with _pool_lock:
        dropped = list(_readers.values())
        _readers.clear()
    for reader in dropped:
        reader.close()


class _LRU(Generic[K, V]):
    """A thread-safe least-recently-used map bounded by entry count and total size."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.lock = threading.Lock()
        self._items: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._bytes = 0

    def get(self, key: K) -> V | None:
        """The value stored under ``key`` (now the most recently used), or None."""
        with self.lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: K, value: V, size: int) -> None:
        """Store ``value``, dropping the least recently used; one over 1/8 of the budget is not."""
        if size > self.max_bytes // 8:
            return
        with self.lock:
            old = self._items.pop(key, None)
            self._bytes += size - (old[1] if old else 0)
            self._items[key] = (value, size)
            while len(self._items) > self.max_entries or self._bytes > self.max_bytes:
                _key, (_value, dropped) = self._items.popitem(last=False)
                self._bytes -= dropped

    def clear(self) -> None:
        """Drop everything."""
        with self.lock:
            self._items.clear()
            self._bytes = 0


class _Stopped(Exception):
    """The batch process exited, or its answer made no sense."""


class _TimedOut(Exception):
    """The batch process did not answer in time."""


class _BatchProcess:
    """One running ``git cat-file --batch``: a request is a line, an answer a header and data."""

    def __init__(self, top: Path, timeout: float) -> None:
        self.timeout = timeout
        self.owner = os.getpid()
        # stderr goes to a file, not a pipe, so a chatty git can never block on it.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as git)
        try:
            self._popen = subprocess.Popen(
                ["git", *SAFETY_CONFIG, "cat-file", "--batch"],
                cwd=top,
                env={**base_env(), **worktree_pin(top)},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
            )
        except OSError as exc:
            self._stderr.close()
            raise RepositoryError(
                f"cannot run git in {top}: {exc}; install git or check the path"
            ) from exc
        assert self._popen.stdin is not None and self._popen.stdout is not None
        self._stdin, self._stdout = self._popen.stdin, self._popen.stdout
        self._poll = select.poll()
        self._poll.register(self._stdout.fileno(), select.POLLIN)
        self._buffer = bytearray()

    def alive(self) -> bool:
        """Whether git still runs and belongs to this process (not to the parent of a fork)."""
        return self.owner == os.getpid() and self._popen.poll() is None

    def ask(self, name: str) -> GitObject:
        """Send one object name and read git's answer."""
        deadline = time.monotonic() + self.timeout
        try:
            self._stdin.write(name.encode("utf-8", "surrogateescape") + b"\n")
            self._stdin.flush()
        except OSError as exc:  # BrokenPipeError: git has exited
            raise _Stopped from exc
        header = self._read_line(deadline).decode("utf-8", "surrogateescape")
        if header.endswith((" missing", " ambiguous")):
            return GitObject(header.rsplit(" ", 1)[1], "", b"")
        try:
            oid, kind, size = header.split(" ")
            data = self._read_exact(int(size) + 1, deadline)
        except ValueError:
            raise _Stopped from None
        if not data.endswith(b"\n"):
            raise _Stopped
        return GitObject(kind, oid, data[:-1])

    def stderr_tail(self) -> str:
        """The last line git wrote to stderr, or an empty string."""
        with contextlib.suppress(OSError, ValueError):
            size = self._stderr.seek(0, os.SEEK_END)
            self._stderr.seek(max(0, size - 2000))
            lines = self._stderr.read().decode("utf-8", "replace").strip().splitlines()
            return lines[-1] if lines else ""
        return ""

    def close(self, kill: bool = False) -> None:
        """End git (EOF on its stdin, or a kill) and reap it, so it never lingers as a zombie."""
        for stream in (self._stdin, self._stdout, self._stderr):
            with contextlib.suppress(OSError):
                stream.close()
        if self.owner != os.getpid():  # a forked child: the process is the parent's to end
            return
        if kill:
            self._popen.kill()
        try:
            self._popen.wait(timeout=1)
        except subprocess.TimeoutExpired:
            self._popen.kill()
            self._popen.wait()

    def _read_line(self, deadline: float) -> bytes:
        while (end := self._buffer.find(b"\n")) < 0:
            self._fill(deadline)
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        return line

    def _read_exact(self, size: int, deadline: float) -> bytes:
        while len(self._buffer) < size:
            self._fill(deadline, size - len(self._buffer))
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def _fill(self, deadline: float, wanted: int = 0) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not self._poll.poll(math.ceil(remaining * 1000)):
            raise _TimedOut
        chunk = os.read(self._stdout.fileno(), max(wanted, 1 << 16))
        if not chunk:
            raise _Stopped
        self._buffer += chunk


class _Slot:
    """A reader's current process, apart from the reader so its finalizer can close it."""

    def __init__(self) -> None:
        self.process: _BatchProcess | None = None

    def close(self, kill: bool = False) -> None:
        process, self.process = self.process, None
        if process is not None:
            process.close(kill)


class _Reader:
    """The batch process of one worktree: started lazily, restarted once if it died."""

    def __init__(self, top: Path, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        self.top = top
        self.timeout = timeout
        self._lock = threading.Lock()
        self._slot = _Slot()
        weakref.finalize(self, self._slot.close)  # also runs at interpreter exit

    def ask(self, name: str) -> GitObject:
        """git's answer for one object name; RepositoryError if git can't answer."""
        with self._lock:
            stderr = ""
            for _attempt in range(2):
                process = self._process()
                try:
                    return process.ask(name)
                except _Stopped:
                    stderr = process.stderr_tail()
                    self._slot.close(kill=True)
                except _TimedOut:
                    self._slot.close(kill=True)
                    raise RepositoryError(
                        f"git cat-file did not answer within {self.timeout:.0f}s in {self.top}; "
                        "check for a stuck filesystem or a very large file and retry"
                    ) from None
            raise RepositoryError(
                f"git cat-file stopped unexpectedly in {self.top}: "
                f"{stderr or 'no error output'}; check the repository is readable and retry"
            )

    def close(self) -> None:
        """End the process now (a later ``ask`` would start a new one)."""
        with self._lock:
            self._slot.close()

    def _process(self) -> _BatchProcess:
        current = self._slot.process
        if current is None or not current.alive():
            self._slot.close()  # reaps a process that died, e.g. killed between two reads
            current = self._slot.process = _BatchProcess(self.top, self.timeout)
        return current


@dataclass(frozen=True)
class _Location:
    top: Path  # the worktree's top directory, where git runs
    git_dir: str  # the worktree's own git dir (its HEAD): one batch process each
    common_dir: str  # shared by every worktree of the repository: the cache key


def _locate(worktree: Path) -> _Location:
    """Where ``worktree``'s git dirs are; remembered while its ``.git`` stays the same."""
    here = os.path.abspath(worktree)
    known = _places.get(here)
    if known is not None and known[0] == _signature(known[1].top) and os.path.isdir(here):
        return known[1]
    where = _find_git_dirs(here, worktree)
    signature = _signature(where.top)
    if signature is not None:
        _places.put(here, (signature, where), _ENTRY_OVERHEAD)
    return where


def _signature(top: Path) -> tuple[int, int, int] | None:
    """Identifies ``top/.git`` (device, inode, mtime): a replaced or removed one differs."""
    try:
        info = os.stat(os.path.join(top, ".git"))
    except OSError:
        return None
    return (info.st_dev, info.st_ino, info.st_mtime_ns)


def _find_git_dirs(here: str, worktree: Path) -> _Location:
    """Find the git dirs from ``.git`` the way git does, without running git."""
    if not os.path.isdir(here):
        raise RepositoryError(
            f"{worktree} does not exist or is not a directory; pass an existing worktree"
        )
    top = here
    while not os.path.exists(os.path.join(top, ".git")):
        parent = os.path.dirname(top)
        if parent == top:
            raise RepositoryError(f"{worktree} is not a git repository; run 'git init' there first")
        top = parent
    dot_git = os.path.join(top, ".git")
    pinned = worktree_pin(Path(top)).get("GIT_DIR")  # never follow a worktree's .git file
    git_dir = os.path.realpath(
        pinned or (dot_git if os.path.isdir(dot_git) else _gitfile_target(dot_git))
    )
    common_file = os.path.join(git_dir, "commondir")
    common_dir = git_dir
    if os.path.isfile(common_file):
        common_dir = os.path.realpath(os.path.join(git_dir, _read_text(common_file)))
    return _Location(Path(top), git_dir, common_dir)


def _gitfile_target(dot_git: str) -> str:
    """The git dir a linked worktree's ``.git`` file (``gitdir: <path>``) points to."""
    text = _read_text(dot_git)
    if not text.startswith("gitdir:"):
        raise RepositoryError(
            f"{dot_git} is not a valid .git file; repair it with 'git worktree repair'"
        )
    return os.path.join(os.path.dirname(dot_git), text.removeprefix("gitdir:").strip())


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text("utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise RepositoryError(f"cannot read {path}: {exc}; check the repository") from None


def _require_sha(commit_sha: str) -> None:
    # Only full shas may key the cache: a ref name moves, a cached answer for it goes stale.
    if not _FULL_SHA.fullmatch(commit_sha):
        raise ValueError(f"{commit_sha!r} is not a full commit sha; resolve it with commit()")


def _has_line_break(text: str) -> bool:
    return any(char in text for char in _LINE_BREAKS)


def _reader(where: _Location) -> _Reader:
    """The batch reader of a worktree, made most recently used; the oldest beyond the cap go."""
    with _pool_lock:
        reader = _readers.get(where.git_dir)
        if reader is None:
            reader = _readers[where.git_dir] = _Reader(where.top)
        _readers.move_to_end(where.git_dir)
        evicted = [_readers.popitem(last=False)[1] for _ in range(len(_readers) - MAX_READERS)]
    del evicted  # outside the lock: each closes (finalizer) once no thread still uses it
    return reader


def _after_fork_in_child() -> None:
    """Fresh locks and no readers: the parent's processes and held locks are not ours."""
    global _pool_lock
    _pool_lock = threading.Lock()
    _objects.lock = threading.Lock()
    _diffs.lock = threading.Lock()
    _places.lock = threading.Lock()
    _readers.clear()  # their close() only drops this process's copies of the pipes


_objects: _LRU[tuple[str, str], GitObject] = _LRU(MAX_CACHE_ENTRIES, OBJECT_CACHE_BYTES)
_diffs: _LRU[tuple[str, ...], str] = _LRU(MAX_CACHE_ENTRIES // 10, DIFF_CACHE_BYTES)
_places: _LRU[str, tuple[tuple[int, int, int], _Location]] = _LRU(4096, 1 << 30)
_readers: OrderedDict[str, _Reader] = OrderedDict()
_pool_lock = threading.Lock()
os.register_at_fork(after_in_child=_after_fork_in_child)
