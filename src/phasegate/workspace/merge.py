"""Merging a session's commits into a branch, and reading them as a patch.

The merged tree is computed in the object store (``git merge-tree --write-tree``),
so a conflict is found before any file or ref changes. The branch then moves by
compare-and-swap (``update-ref <ref> <new> <old>``), or, where it is checked
out, by fast-forwarding that checkout to the prepared commit. Git refuses both
if the branch moved meanwhile, so a merge is never left half done.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from phasegate.workspace.errors import GitError, RepositoryError, printable_path
from phasegate.workspace.git import Git

#: A merge commit (``--no-ff``), one squashed commit, or a fast-forward only.
MERGE_MODES = ("merge", "squash", "ff-only")
_SHOWN_PATHS = 5


class MergeRefused(RepositoryError):
    """The merge can't be done as asked; no ref, index or file was changed."""


@dataclass(frozen=True)
class MergeOutcome:
    """Where the branch moved, and which working tree (if any) moved with it."""

    target: str
    mode: str
    commit: str  # the branch's new tip
    previous: str  # its tip before the merge
    checkout: Path | None


def branch_tip(repo: Path, branch: str) -> str | None:
    """The commit the local ``branch`` points at, or None if there is no such branch."""
    git = Git(repo, identity=False)
    ref = f"refs/heads/{branch}^{{commit}}"
    if branch.startswith("-") or not git.succeeds("rev-parse", "--verify", "--quiet", ref):
        return None
    return git.text("rev-parse", "--verify", "--quiet", ref)


def is_ancestor(repo: Path, ancestor: str, descendant: str) -> bool:
    """Whether commit ``descendant`` contains commit ``ancestor`` (or is it)."""
    return Git(repo, identity=False).succeeds("merge-base", "--is-ancestor", ancestor, descendant)


def commit_count(repo: Path, base: str, head: str) -> int:
    """How many commits ``head`` has that ``base`` has not."""
    return int(Git(repo, identity=False).text("rev-list", "--count", f"{base}..{head}"))


def format_patch(repo: Path, base: str, head: str) -> bytes:
    """The commits ``base..head`` as one mbox patch that ``git am`` applies."""
    return Git(repo, identity=False).run("format-patch", "--stdout", f"{base}..{head}").stdout


def checkout_of(repo: Path, branch: str) -> Path | None:
    """The working tree where ``branch`` is checked out (the main one or a linked one), if any."""
    listing = Git(repo, identity=False).run("worktree", "list", "--porcelain", "-z").stdout
    path: Path | None = None
    for field in listing.decode("utf-8", "surrogateescape").split("\0"):
        if field.startswith("worktree "):
            path = Path(field.removeprefix("worktree "))
        elif field == f"branch refs/heads/{branch}":
            return path
    return None


def merge_branch(
    repo: Path, target: str, head: str, *, mode: str, message: str, expected_tip: str
) -> MergeOutcome:
    """Merge commit ``head`` into ``target``, which must still be at ``expected_tip``.

    ``message`` is the new commit's (unused by a fast-forward). A checked-out
    target must be clean; its working tree is updated along with the branch.
    The caller has checked that ``target`` does not contain ``head`` yet.
    """
    git = Git(repo)
    checkout = checkout_of(repo, target)
    if checkout is not None:
        _require_clean(checkout, target)
    new = _prepare(git, target, expected_tip, head, mode, message)
    if checkout is None:
        _swap_ref(git, target, new, expected_tip)
    else:
        _fast_forward(checkout, target, new)
    return MergeOutcome(target, mode, new, expected_tip, checkout)


def _prepare(git: Git, target: str, tip: str, head: str, mode: str, message: str) -> str:
    """The commit ``target`` will point at; made in the object store only."""
    if mode == "ff-only":
        if not is_ancestor(git.cwd, tip, head):
            raise MergeRefused(
                f"{target} can't be fast-forwarded: it has commits the session's branch lacks "
                f"(its tip is {tip[:10]}); merge without --ff-only"
            )
        return head
    tree = _merged_tree(git, target, tip, head)
    parents = ["-p", tip, *(["-p", head] if mode == "merge" else [])]
    return git.text("commit-tree", tree, *parents, "-F", "-", input=message.encode("utf-8"))


def _merged_tree(git: Git, target: str, tip: str, head: str) -> str:
    """The tree of ``tip`` merged with ``head``; MergeRefused naming the paths if they conflict."""
    done = git.run(
        "merge-tree", "--write-tree", "-z", "--name-only", "--no-messages", tip, head,
        ok_codes=(0, 1),
    )  # fmt: skip
    tree, *paths = done.stdout.decode("utf-8", "surrogateescape").split("\0")
    if done.returncode == 0:
        return tree
    conflicted = sorted({p for p in paths if p})
    raise MergeRefused(
        f"the session's changes conflict with {target} in {_some(conflicted)}; nothing was "
        f"changed: merge it by hand (git merge {head[:10]}) and resolve the conflicts"
    )


def _require_clean(checkout: Path, target: str) -> None:
    """Refuse to merge into a checkout with staged or unstaged changes to tracked files."""
    status = Git(checkout, identity=False).run(
        "status", "--porcelain=v1", "-z", "--untracked-files=no", "--no-renames"
    )
    changed = [entry[3:] for entry in status.stdout.decode("utf-8", "replace").split("\0") if entry]
    if changed:
        raise MergeRefused(
            f"{target} is checked out in {checkout} with uncommitted changes to "
            f"{_some(changed)}; commit or stash them and merge again"
        )


def _swap_ref(git: Git, target: str, new: str, old: str) -> None:
    """Point ``target`` at ``new`` only if it still points at ``old``."""
    try:
        git.run("update-ref", "-m", "phasegate merge", f"refs/heads/{target}", new, old)
    except GitError:
        raise MergeRefused(
            f"{target} moved while it was being merged (it is no longer at {old[:10]}); "
            "nothing was changed: look at what changed there and merge again"
        ) from None


def _fast_forward(checkout: Path, target: str, new: str) -> None:
    """Move the checked-out ``target`` and its files to ``new``, or change nothing."""
    try:
        Git(checkout).run("merge", "--ff-only", "--quiet", new)
    except GitError as exc:
        in_the_way = [line.strip() for line in exc.stderr.splitlines() if line.startswith("\t")]
        if in_the_way:
            reason = f"it would overwrite untracked files ({_some(in_the_way)}); move them away"
        else:
            first = exc.stderr.splitlines()[0] if exc.stderr else "no error output"
            reason = f"git refused to update it ({first}); fix that"
        raise MergeRefused(
            f"{target} is checked out in {checkout}, and {reason} and merge again "
            "(nothing was changed)"
        ) from None


def _some(paths: list[str]) -> str:
    """A few paths for a one-line message, printable, and how many more there are."""
    shown = ", ".join(printable_path(p) for p in paths[:_SHOWN_PATHS])
    return shown + (f" and {len(paths) - _SHOWN_PATHS} more" if len(paths) > _SHOWN_PATHS else "")
