"""Path normalisation and submission limits, checked before anything is written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from phasegate.workspace import (
    FileChange,
    SubmissionLimits,
    SubmissionRejected,
    apply_submission,
    normalise_path,
    validate_submission,
)

Snapshot = Callable[[Path], dict[str, str]]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("src/new.py", "src/new.py"),
        ("./src//new.py", "src/new.py"),
        ("cafe\u0301.py", "caf\u00e9.py"),
        ("100%.txt", "100%.txt"),
        ("50%25-off.md", "50%25-off.md"),
        ("%41bc.txt", "%41bc.txt"),
        ("docs/notes v2.md", "docs/notes v2.md"),
        (".github/workflows/ci.yml", ".github/workflows/ci.yml"),
        (".gitignore", ".gitignore"),
        ("console.py", "console.py"),
        ("gitlab.md", "gitlab.md"),
        ("\u65e5\u672c\u8a9e.txt", "\u65e5\u672c\u8a9e.txt"),
    ],
)
def test_safe_paths_are_accepted_in_canonical_form(raw: str, expected: str) -> None:
    """A safe path is accepted and returned in NFC without '.' or empty components."""
    assert normalise_path(raw) == expected


def test_literal_percent_names() -> None:
    """'%' sequences are kept literally unless they decode to a refused name such as '..'."""
    assert normalise_path("a%20b.txt") == "a%20b.txt"
    with pytest.raises(SubmissionRejected, match="percent"):
        normalise_path("%2E%2E")


def test_validation_returns_normalised_changes(worktree: Path) -> None:
    """validate_submission returns the changes with normalised paths and the same content."""
    result = validate_submission(
        worktree,
        [FileChange("./src/x.py", "x\n"), FileChange("README.md", None)],
        SubmissionLimits(),
    )
    assert result == [FileChange("src/x.py", "x\n"), FileChange("README.md", None)]


@pytest.mark.parametrize(
    ("changes", "limits", "reason"),
    [
        (
            [FileChange(f"f{i}.txt", "x") for i in range(4)],
            SubmissionLimits(max_files=3),
            "4 files",
        ),
        ([FileChange("big.txt", "x" * 11)], SubmissionLimits(max_file_bytes=10), "11 bytes"),
        ([FileChange("big.txt", "\u00e9" * 6)], SubmissionLimits(max_file_bytes=10), "12 bytes"),
        (
            [FileChange("a.txt", "x" * 8), FileChange("b.txt", "x" * 8)],
            SubmissionLimits(max_total_bytes=15),
            "total limit",
        ),
        ([FileChange("d/" * 10 + "x", "")], SubmissionLimits(max_path_length=20), "longer than 20"),
        ([FileChange("abcdef.txt", "")], SubmissionLimits(max_component_length=5), "longer than 5"),
    ],
    ids=["count", "file-size", "utf8-size", "total-size", "path-length", "name-length"],
)
def test_limits_are_refused_before_any_write(
    tmp_path: Path,
    worktree: Path,
    snapshot: Snapshot,
    changes: list[FileChange],
    limits: SubmissionLimits,
    reason: str,
) -> None:
    """A submission over any limit is refused and nothing under tmp_path changes."""
    before = snapshot(tmp_path)
    with pytest.raises(SubmissionRejected, match=reason):
        apply_submission(worktree, changes, "too big", {}, limits=limits)
    assert snapshot(tmp_path) == before


def test_names_differing_only_in_case_are_refused(worktree: Path) -> None:
    """Two paths that collide on a case-insensitive filesystem are refused."""
    with pytest.raises(SubmissionRejected, match="submitted twice"):
        validate_submission(
            worktree, [FileChange("src/A.py", "1"), FileChange("src/a.py", "2")], SubmissionLimits()
        )


@pytest.mark.parametrize("content", [b"bytes", 42, "\ud800"], ids=["bytes", "int", "surrogate"])
def test_content_that_is_not_text_is_refused(worktree: Path, content: object) -> None:
    """Content must be a valid Unicode string (or None to delete)."""
    with pytest.raises(SubmissionRejected, match="content"):
        validate_submission(worktree, [FileChange("x.txt", content)], SubmissionLimits())  # type: ignore[arg-type]


def test_non_string_path_is_refused(worktree: Path) -> None:
    """A path that is not a string is refused with a clear reason."""
    with pytest.raises(SubmissionRejected, match="not a string"):
        validate_submission(worktree, [FileChange(None, "x")], SubmissionLimits())  # type: ignore[arg-type]


def test_missing_worktree_is_a_clear_error(tmp_path: Path) -> None:
    """Submitting into a worktree that does not exist says to create it first."""
    from phasegate.workspace import RepositoryError

    with pytest.raises(RepositoryError, match="create_worktree"):
        validate_submission(tmp_path / "nope", [FileChange("x", "")], SubmissionLimits())
