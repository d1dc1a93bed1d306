"""The hostile-path corpus: every path is refused and not one byte changes on disk."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from phasegate.workspace import (
    FileChange,
    SubmissionLimits,
    SubmissionRejected,
    apply_submission,
    validate_submission,
)

HOSTILE_PATHS = [
    # traversal
    "../escape.txt",
    "../../escape.txt",
    "src/../../escape.txt",
    "src/../../../outside/secret.txt",
    "a/b/../../../x",
    "..",
    "./../x",
    # absolute, drive, UNC, sibling prefix
    "/etc/passwd",
    "/tmp/phasegate-escape",
    "{outside}/x.txt",
    "{worktree}-evil/x.txt",
    "//server/share/x",
    "C:\\Windows\\x",
    "C:/Windows/x",
    "C:x",
    "\\\\server\\share\\x",
    "\\\\?\\C:\\x",
    "src\\..\\..\\x",
    "..\\x",
    # percent-encoding that decodes to something refused (see test_literal_percent_names)
    "%2e%2e/x",
    "%2e%2e%2fx",
    "%252e%252e/x",
    "src/%2e%2e/%2e%2e/x",
    "%2egit/config",
    # NUL and control characters
    "x\x00.py",
    "x\n.py",
    "x\r.py",
    "x\x1b[31m.py",
    "x\t.py",
    "x\x7f.py",
    "x\x85.py",
    # .git in every spelling
    ".git",
    ".git/config",
    ".git/hooks/pre-commit",
    "sub/.git/config",
    ".GIT/hooks/x",
    ".Git/config",
    "git~1/config",
    "GIT~2/hooks/x",
    ".g\u200cit/config",
    ".g\u200dit/config",
    "\ufeff.git/config",
    ".git\u200b/config",
    "sub/\u00ad.git/x",
    ".git./config",
    ".git /config",
    ".git::$INDEX_ALLOCATION/config",
    "\uff0e\uff47\uff49\uff54/config",
    # phasegate's own state
    ".phasegate/x",
    ".phasegate/phasegate.db",
    "sub/.PhaseGate/x",
    "phaseg~1/x",
    # git configuration that runs programs
    ".gitattributes",
    "sub/.gitattributes",
    ".gitmodules",
    "gitmod~1",
    # phasegate's configuration: merged, it would set the next sessions' sandbox and budgets
    "phasegate.toml",
    "sub/PhaseGate.TOML",
    # Windows devices and short names
    "CON",
    "con.txt",
    "NUL",
    "aux.py",
    "COM1",
    "lpt9.log",
    "src/PRN/x.py",
    "progra~1/x",
    # links inside the worktree pointing outside
    "linkdir/new.txt",
    "linkdir/secret.txt",
    "linkfile.py",
    "dangling",
    "dangling/new.py",
    "sub/inner/new.py",
    "plain.txt/x.py",
    # lengths, empty names, directories, trailing dots and spaces
    "a" * 256,
    "d/" * 2100 + "x",
    "",
    ".",
    "src/",
    "src",
    "file.txt.",
    "file.txt ",
    # invisible and bidi characters, lone surrogates
    "x\u202e.py",
    "x\u2028.py",
    "x\u2066y.py",
    "x\ud800.py",
]


@pytest.fixture
def hostile_worktree(tmp_path: Path, worktree: Path) -> Path:
    """The worktree plus links to a directory outside it and a plain file to misuse as a dir."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret\n", encoding="utf-8")
    (worktree / "linkdir").symlink_to(outside, target_is_directory=True)
    (worktree / "linkfile.py").symlink_to(outside / "secret.txt")
    (worktree / "dangling").symlink_to(outside / "not-yet")
    (worktree / "sub").mkdir()
    (worktree / "sub" / "inner").symlink_to(outside, target_is_directory=True)
    (worktree / "plain.txt").write_text("plain\n", encoding="utf-8")
    return worktree


def _expand(path: str, tmp_path: Path, worktree: Path) -> str:
    return path.replace("{outside}", str(tmp_path / "outside")).replace("{worktree}", str(worktree))


def test_corpus_is_large_enough() -> None:
    """The corpus holds at least 60 distinct hostile paths."""
    assert len(set(HOSTILE_PATHS)) >= 60


@pytest.mark.parametrize(
    "hostile", [pytest.param(p, id=f"{i:02d}-{ascii(p)[:32]}") for i, p in enumerate(HOSTILE_PATHS)]
)
@pytest.mark.parametrize("content", ["pwned\n", None], ids=["write", "delete"])
def test_hostile_path_is_refused_without_touching_disk(
    tmp_path: Path,
    hostile_worktree: Path,
    snapshot: Callable[[Path], dict[str, str]],
    hostile: str,
    content: str | None,
) -> None:
    """A hostile path is refused, and every byte and link under tmp_path stays the same."""
    path = _expand(hostile, tmp_path, hostile_worktree)
    before = snapshot(tmp_path)
    with pytest.raises(SubmissionRejected) as refused:
        apply_submission(hostile_worktree, [FileChange(path, content)], "hostile", {})
    assert refused.value.path == path or refused.value.path.startswith(("'", '"'))
    assert "refused path" in str(refused.value)
    assert snapshot(tmp_path) == before


def test_hostile_path_among_good_ones_refuses_everything(
    tmp_path: Path, hostile_worktree: Path, snapshot: Callable[[Path], dict[str, str]]
) -> None:
    """One hostile path in a batch refuses the whole batch before the good files are written."""
    before = snapshot(tmp_path)
    batch = [FileChange("src/good.py", "x = 1\n"), FileChange("linkdir/evil.py", "x = 2\n")]
    with pytest.raises(SubmissionRejected, match="linkdir"):
        apply_submission(hostile_worktree, batch, "mixed", {})
    assert snapshot(tmp_path) == before


def test_error_message_escapes_control_characters(hostile_worktree: Path) -> None:
    """A refused path is shown with control characters escaped, so logs cannot be forged."""
    with pytest.raises(SubmissionRejected) as refused:
        validate_submission(
            hostile_worktree, [FileChange("x\n\x1b[31m.py", "")], SubmissionLimits()
        )
    assert "\n" not in str(refused.value) and "\x1b" not in str(refused.value)
    assert "\\u000a" in str(refused.value)


def test_symlink_swapped_in_after_validation_is_not_followed(
    tmp_path: Path, hostile_worktree: Path
) -> None:
    """The writer opens each directory with O_NOFOLLOW, so a directory swapped for a link fails."""
    from phasegate.workspace.submission import _Journal

    (hostile_worktree / "race").mkdir()
    validated = validate_submission(
        hostile_worktree, [FileChange("race/x.py", "x\n")], SubmissionLimits()
    )
    os.rmdir(hostile_worktree / "race")
    (hostile_worktree / "race").symlink_to(tmp_path / "outside", target_is_directory=True)
    with pytest.raises(SubmissionRejected, match="became a link"):
        _Journal(hostile_worktree.resolve()).apply(validated[0])
    assert not (tmp_path / "outside" / "x.py").exists()


def test_directory_swapped_for_a_link_during_submissions_never_leaks(
    tmp_path: Path, hostile_worktree: Path
) -> None:
    """While a thread keeps swapping a directory for a link outside, no byte lands outside."""
    import threading

    from phasegate.workspace import WorkspaceError

    race, parked = hostile_worktree / "race", hostile_worktree / "race-parked"
    race.mkdir()
    stop = threading.Event()

    def swap() -> None:
        # Submissions also create "race/" concurrently, so every step may fail; keep going.
        while not stop.is_set():
            with contextlib.suppress(OSError):
                os.rename(race, parked)
                race.symlink_to(tmp_path / "outside", target_is_directory=True)
                race.unlink()
            with contextlib.suppress(OSError):
                os.rename(parked, race)

    swapper = threading.Thread(target=swap)
    swapper.start()
    try:
        for attempt in range(150):
            # Refused or failed cleanly are both fine; escaping is not.
            with contextlib.suppress(WorkspaceError):
                change = FileChange("race/x.py", f"{attempt}\n")
                apply_submission(hostile_worktree, [change], "race", {})
    finally:
        stop.set()
        swapper.join()
    assert sorted(p.name for p in (tmp_path / "outside").iterdir()) == ["secret.txt"]
