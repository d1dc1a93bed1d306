"""Git worktrees, file submissions, path safety and the approved-test lock.

A pure library: no database, and sessions are only strings (branch names, trailers).
"""

from phasegate.workspace.errors import (
    FileNotFoundAtCommit,
    GitError,
    LockedTestViolation,
    RepositoryError,
    SubmissionRejected,
    WorkspaceError,
)
from phasegate.workspace.git import Git
from phasegate.workspace.gitcache import GitObject, RepoObjects, clear_git_cache
from phasegate.workspace.paths import (
    DEFAULT_LIMITS,
    FileChange,
    SubmissionLimits,
    normalise_path,
    read_without_links,
    validate_submission,
)
from phasegate.workspace.submission import (
    PathCheck,
    SubmissionCommit,
    apply_submission,
    commit_message,
)
from phasegate.workspace.testlock import (
    DEFAULT_TEST_PATTERNS,
    TestPatterns,
    check_lock,
    check_tests_only,
    is_protected_path,
    is_runner_config,
    is_test_path,
    protected_sources,
    snapshot_protected,
    verify_snapshot,
)
from phasegate.workspace.worktree import (
    STATE_DIR_NAME,
    changed_files,
    clear_stale_index_lock,
    create_worktree,
    diff_between,
    discard_changes,
    head_commit,
    ignore_state_dir,
    read_file_at,
    remove_worktree,
)

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_TEST_PATTERNS",
    "STATE_DIR_NAME",
    "FileChange",
    "FileNotFoundAtCommit",
    "Git",
    "GitError",
    "GitObject",
    "LockedTestViolation",
    "PathCheck",
    "RepoObjects",
    "RepositoryError",
    "SubmissionCommit",
    "SubmissionLimits",
    "SubmissionRejected",
    "TestPatterns",
    "WorkspaceError",
    "apply_submission",
    "changed_files",
    "check_lock",
    "check_tests_only",
    "clear_git_cache",
    "clear_stale_index_lock",
    "commit_message",
    "create_worktree",
    "diff_between",
    "discard_changes",
    "head_commit",
    "ignore_state_dir",
    "is_protected_path",
    "is_runner_config",
    "is_test_path",
    "normalise_path",
    "protected_sources",
    "read_file_at",
    "read_without_links",
    "remove_worktree",
    "snapshot_protected",
    "validate_submission",
    "verify_snapshot",
]
