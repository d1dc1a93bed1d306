"""A session's worktree swapped for a link (to the main checkout) is refused, and nothing moves."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tests.workspace.conftest import git

from phasegate.workspace import FileChange, Git, GitError, RepositoryError, apply_submission


@pytest.mark.parametrize("swapped", ["worktree", "worktrees", ".phasegate"])
def test_a_linked_worktree_layout_is_refused_and_main_is_untouched(
    repo: Path, worktree: Path, swapped: str
) -> None:
    """Whichever of `<id>`, `worktrees` or `.phasegate` is a link, phasegate writes nothing."""
    main_before = git(repo, "rev-parse", "main")
    target = {"worktree": worktree, "worktrees": worktree.parent, ".phasegate": worktree.parents[1]}
    moved = target[swapped].with_name(target[swapped].name + ".real")
    shutil.move(target[swapped], moved)
    target[swapped].symlink_to(repo if swapped == "worktree" else moved)
    with pytest.raises(RepositoryError, match="is a link or not a directory"):
        apply_submission(worktree, [FileChange("planted.py", "x = 1\n")], "m", {})
    with pytest.raises(GitError, match="is a link or not a directory"):
        Git(worktree).text("status")
    assert git(repo, "rev-parse", "main") == main_before
    assert not (repo / "planted.py").exists()
