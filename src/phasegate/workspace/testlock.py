"""What counts as a test, and the lock that keeps approved tests unchanged.

Runner configuration (``pyproject.toml``, ``package.json``, ``go.mod``, …) is
protected together with the tests: it decides which tests run and how, so after
the tests are approved an implementation may not change it either. Dependencies
an implementation needs must therefore be added while the tests are written.
Patterns match case-insensitively (macOS and Windows fold case), and a pattern
without ``/`` matches the file name in any directory, like ``.gitignore``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from phasegate.workspace.errors import LockedTestViolation, SubmissionRejected
from phasegate.workspace.git import Git
from phasegate.workspace.worktree import resolve_commit


@dataclass(frozen=True)
class TestPatterns:
    """Globs for test files and for test-runner configuration files."""

    __test__ = False  # not a pytest test class, despite the name

    test_globs: tuple[str, ...]
    runner_config: tuple[str, ...]


DEFAULT_TEST_PATTERNS = TestPatterns(
    test_globs=(
        # Python
        "**/tests/**", "test_*.py", "*_test.py", "conftest.py",
        # JavaScript / TypeScript
        "*.test.*", "*.spec.*", "**/__tests__/**",
        # Go (testdata/ holds fixtures the tests read)
        "*_test.go", "**/testdata/**",
        # Elixir (and Java/Maven's src/test/)
        "**/test/**", "*_test.exs",
    ),
    runner_config=(
        # Python: pytest reads all of these; sitecustomize runs at interpreter start.
        "conftest.py", "pytest.ini", ".pytest.ini", "pytest.toml", ".pytest.toml",
        "pyproject.toml", "setup.cfg", "tox.ini", "noxfile.py",
        "sitecustomize.py", "usercustomize.py",
        # JavaScript / TypeScript: scripts, runner configs and transforms applied to tests.
        "package.json", "jest.config.*", "vitest.config.*", "vitest.workspace.*",
        "vite.config.*", ".mocharc*", "karma.conf.*", "playwright.config.*",
        "babel.config.*", ".babelrc*",
        # Elixir, Go: a replaced test dependency could make every assertion pass.
        "mix.exs", "go.mod",
    ),
)  # fmt: skip


def is_test_path(path: str, patterns: TestPatterns = DEFAULT_TEST_PATTERNS) -> bool:
    """Whether ``path`` is a test file under ``patterns``."""
    return _matches_any(path, patterns.test_globs)


def is_runner_config(path: str, patterns: TestPatterns = DEFAULT_TEST_PATTERNS) -> bool:
    """Whether ``path`` is test-runner configuration under ``patterns``."""
    return _matches_any(path, patterns.runner_config)


def is_protected_path(path: str, patterns: TestPatterns = DEFAULT_TEST_PATTERNS) -> bool:
    """Whether ``path`` is locked once tests are approved: a test or runner configuration."""
    return is_test_path(path, patterns) or is_runner_config(path, patterns)


def check_tests_only(paths: Iterable[str], patterns: TestPatterns = DEFAULT_TEST_PATTERNS) -> None:
    """For ``submit_tests``: refuse any path that is neither a test nor runner configuration."""
    for path in paths:
        if not is_protected_path(path, patterns):
            raise SubmissionRejected(
                path,
                "is not a test file or test-runner configuration",
                "a tests submission may contain only tests (e.g. tests/test_x.py, x_test.go, "
                "x.test.ts) and runner configuration; submit the implementation after the "
                "tests are approved",
            )


def check_lock(
    changed_paths: Iterable[str],
    approved: Mapping[str, str],
    patterns: TestPatterns = DEFAULT_TEST_PATTERNS,
) -> None:
    """Refuse a change, deletion or addition of any approved test or protected path."""
    approved_folded = {path.casefold() for path in approved}
    for path in changed_paths:
        if path.casefold() in approved_folded:
            raise LockedTestViolation(
                path, "is an approved test or runner-configuration file, so it is locked"
            )
        if is_test_path(path, patterns):
            raise LockedTestViolation(path, "would add a test file after the tests were approved")
        if is_runner_config(path, patterns):
            raise LockedTestViolation(
                path, "is test-runner configuration, locked once the tests are approved"
            )


def snapshot_protected(
    worktree: Path, commit: str, patterns: TestPatterns = DEFAULT_TEST_PATTERNS
) -> dict[str, str]:
    """Map each protected path at ``commit`` to the sha256 of its content."""
    return _tree_hashes(worktree, commit, lambda path: is_protected_path(path, patterns))


def protected_sources(
    worktree: Path, commit: str, patterns: TestPatterns = DEFAULT_TEST_PATTERNS
) -> dict[str, bytes]:
    """Map each protected regular file at ``commit`` to its content (no links, no submodules)."""
    git = Git(worktree)
    entries = [
        (path, oid)
        for path, mode, oid in _tree_entries(git, commit, lambda p: is_protected_path(p, patterns))
        if mode in ("100644", "100755")
    ]
    contents = _read_blobs(git, {oid for _path, oid in entries})
    return {path: contents[oid] for path, oid in entries}


def verify_snapshot(
    worktree: Path,
    commit: str,
    approved: Mapping[str, str],
    patterns: TestPatterns | None = None,
) -> list[str]:
    """Paths whose content at ``commit`` differs from ``approved`` (changed or missing).

    With ``patterns``, protected paths present at ``commit`` but never approved
    (an added ``conftest.py``) are reported too. An empty list means intact.
    """

    def wanted(path: str) -> bool:
        return path in approved or (patterns is not None and is_protected_path(path, patterns))

    current = _tree_hashes(worktree, commit, wanted)
    differing = {path for path, digest in approved.items() if current.get(path) != digest}
    differing.update(path for path in current if path not in approved)
    return sorted(differing)


def _tree_hashes(worktree: Path, commit: str, wanted: Callable[[str], bool]) -> dict[str, str]:
    git = Git(worktree)
    entries = _tree_entries(git, commit, wanted)
    contents = _read_blobs(git, {oid for _path, mode, oid in entries if mode != "160000"})
    return {path: _digest(mode, oid, contents) for path, mode, oid in entries}


def _tree_entries(
    git: Git, commit: str, wanted: Callable[[str], bool]
) -> list[tuple[str, str, str]]:
    """(path, mode, object id) of every wanted path in ``commit``'s tree."""
    sha = resolve_commit(git, commit)
    listing = git.run("ls-tree", "-r", "-z", "--full-tree", sha).stdout
    entries: list[tuple[str, str, str]] = []
    for record in filter(None, listing.split(b"\0")):
        meta, raw_path = record.split(b"\t", 1)
        mode, _kind, object_id = meta.decode().split()
        path = raw_path.decode("utf-8", "surrogateescape")
        if wanted(path):
            entries.append((path, mode, object_id))
    return entries


def _digest(mode: str, object_id: str, contents: Mapping[str, bytes]) -> str:
    # A test replaced by a symlink or submodule must not hash like the approved file.
    if mode == "160000":
        return hashlib.sha256(b"gitlink\0" + object_id.encode()).hexdigest()
    prefix = b"symlink\0" if mode == "120000" else b""
    return hashlib.sha256(prefix + contents[object_id]).hexdigest()


def _read_blobs(git: Git, object_ids: set[str]) -> dict[str, bytes]:
    """Read many blobs with one ``git cat-file --batch``."""
    if not object_ids:
        return {}
    ordered = sorted(object_ids)
    output = git.run("cat-file", "--batch", input="".join(f"{o}\n" for o in ordered).encode())
    data = output.stdout
    contents: dict[str, bytes] = {}
    offset = 0
    for object_id in ordered:
        header_end = data.index(b"\n", offset)
        size = int(data[offset:header_end].split()[2])
        contents[object_id] = data[header_end + 1 : header_end + 1 + size]
        offset = header_end + 1 + size + 1
    return contents


def _matches_any(path: str, globs: tuple[str, ...]) -> bool:
    folded = path.casefold()
    return any(_glob_regex(glob).fullmatch(folded) for glob in globs)


@cache
def _glob_regex(glob: str) -> re.Pattern[str]:
    """Translate a glob (``*``, ``?``, ``[...]``, ``**``) into a regex over whole paths."""
    pattern = glob.casefold()
    regex = "" if "/" in pattern else "(?:.*/)?"
    index = 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            regex, index = regex + "(?:.*/)?", index + 3
        elif pattern.startswith("**", index):
            regex, index = regex + ".*", index + 2
        elif pattern[index] == "*":
            regex, index = regex + "[^/]*", index + 1
        elif pattern[index] == "?":
            regex, index = regex + "[^/]", index + 1
        elif pattern[index] == "[" and "]" in pattern[index + 1 :]:
            end = pattern.index("]", index + 1)
            body = pattern[index + 1 : end].replace("\\", "\\\\")
            regex += "[^" + body[1:] + "]" if body.startswith("!") else "[" + body + "]"
            index = end + 1
        else:
            regex, index = regex + re.escape(pattern[index]), index + 1
    return re.compile(regex)
