"""The design document's path rules: what a design submission may touch, and its lock.

A design submission writes the design document and nothing else (no code, no
tests: those come after a human approves the design). Once approved, the
design is locked: later submissions may read it but not change, delete or
replace it, just as approved tests are locked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from phasegate.workspace.errors import SubmissionRejected
from phasegate.workspace.worktree import diff_between, read_file_at


class LockedDesignViolation(SubmissionRejected):
    """A submission touches the approved (locked) design document."""

    default_hint = (
        "the approved design is locked: read it, but change the tests or the code instead; "
        "ask a human if the design itself is wrong"
    )


def check_design_only(paths: Iterable[str], design_path: str) -> None:
    """For a design submission: refuse any path but the design document."""
    for path in paths:
        if path.casefold() != design_path.casefold():
            raise SubmissionRejected(
                path,
                f"is not the design document {design_path}",
                f"a design submission contains only {design_path}; tests and code are "
                "written after a human approves the design",
            )


def check_design_lock(paths: Iterable[str], locked: Mapping[str, str]) -> None:
    """Refuse a change to, or deletion of, an approved design document."""
    folded = {path.casefold() for path in locked}
    for path in paths:
        if path.casefold() in folded:
            raise LockedDesignViolation(path, "is the approved design, so it is locked")


def snapshot_design(worktree: Path, commit: str, design_path: str) -> dict[str, str]:
    """The design document's sha256 at ``commit``, keyed by its path."""
    text = read_file_at(worktree, commit, design_path)
    return {design_path: hashlib.sha256(text.encode("utf-8")).hexdigest()}


def design_round_diffs(
    worktree: Path, base: str, rounds: Sequence[str], design_path: str
) -> list[str]:
    """The design document's diff for each round: from the previous round's commit (or ``base``)."""
    diffs: list[str] = []
    previous = base
    for commit in rounds:
        diffs.append(diff_between(worktree, previous, commit, [design_path]))
        previous = commit
    return diffs
