"""Submission validation: every path and size rule, checked before anything is written.

A submitted path must name a regular file strictly inside the worktree, on every
filesystem git runs on (Linux, macOS, Windows), so the rules also refuse the
spellings that *another* filesystem would treat as ``.git`` or as a device.
"""

from __future__ import annotations

import os
import re
import stat
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from phasegate.workspace.errors import GitError, RepositoryError, SubmissionRejected
from phasegate.workspace.git import refuse_linked_worktree

MIB = 1024 * 1024


@dataclass(frozen=True)
class FileChange:
    """One file of a submission: new content, or ``None`` to delete the file."""

    path: str
    content: str | None

    @property
    def is_delete(self) -> bool:
        """Whether this change deletes the file."""
        return self.content is None


@dataclass(frozen=True)
class SubmissionLimits:
    """Size and count limits for one submission (bytes are UTF-8 encoded sizes)."""

    max_file_bytes: int = MIB
    max_total_bytes: int = 10 * MIB
    max_files: int = 500
    max_path_length: int = 4096
    max_component_length: int = 255


DEFAULT_LIMITS = SubmissionLimits()

_WINDOWS_DEVICES = frozenset(
    ["con", "prn", "aux", "nul", "conin$", "conout$"]
    + [f"{port}{n}" for port in ("com", "lpt") for n in "0123456789¹²³"]
)
# Default_Ignorable_Code_Point (Unicode DerivedCoreProperties): HFS+ and some tools
# drop these, so ".g\u200cit" can become ".git" (CVE-2014-9390).
_DEFAULT_IGNORABLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff]"
)
_INVISIBLE_CATEGORIES = frozenset({"Cf", "Cs", "Zl", "Zp"})
_NO_SHORT_NAMES = "use the full file name; 8.3 short names alias other files on Windows"


def validate_submission(
    worktree: Path, changes: Sequence[FileChange], limits: SubmissionLimits = DEFAULT_LIMITS
) -> list[FileChange]:
    """Check every change against the path, size and filesystem rules; return them normalised.

    Raises ``SubmissionRejected`` naming the first offending path. Reads the
    filesystem (``lstat`` only, never following links) but writes nothing.
    """
    if len(changes) > limits.max_files:
        raise SubmissionRejected(
            "",
            f"the submission has {len(changes)} files, more than the limit of {limits.max_files}",
            "split the work into smaller submissions",
        )
    root = verified_root(worktree)
    normalised: list[FileChange] = []
    seen: dict[str, str] = {}
    total_bytes = 0
    for change in changes:
        path = normalise_path(change.path, limits)
        _refuse_duplicate(path, seen)
        total_bytes += _content_size(path, change.content, limits)
        if total_bytes > limits.max_total_bytes:
            raise SubmissionRejected(
                path,
                f"the submission exceeds the total limit of {limits.max_total_bytes} bytes",
                "split the work into smaller submissions",
            )
        check_on_disk(root, path)
        normalised.append(FileChange(path, change.content))
    return normalised


def verified_root(worktree: Path) -> Path:
    """The worktree as an absolute, symlink-free path; a session's must be reached via no link."""
    here = Path(os.path.abspath(worktree))
    if here.parent.name == "worktrees" and here.parent.parent.name == ".phasegate":
        try:
            refuse_linked_worktree(here)
        except GitError as exc:
            raise RepositoryError(str(exc)) from None
    root = Path(worktree).resolve()
    if not root.is_dir():
        raise RepositoryError(
            f"worktree {worktree} does not exist or is not a directory; "
            "create it with create_worktree before submitting"
        )
    return root


def normalise_path(raw: object, limits: SubmissionLimits = DEFAULT_LIMITS) -> str:
    """NFC-normalise a submitted path and refuse it unless it is a safe relative file path."""
    if not isinstance(raw, str):
        raise SubmissionRejected(repr(raw), "is not a string", "send the path as a JSON string")
    path = unicodedata.normalize("NFC", raw)
    _refuse_bad_characters(path)
    if path.startswith("/"):
        raise SubmissionRejected(path, "is an absolute path (or a UNC path)")
    if len(path.encode("utf-8")) > limits.max_path_length:
        raise SubmissionRejected(
            path,
            f"is longer than {limits.max_path_length} bytes",
            "use a shorter path",
        )
    if path.endswith("/"):
        raise SubmissionRejected(path, "names a directory", "submit the files inside it instead")
    # "./a" and "a//b" are harmless spellings of "a" and "a/b"; keep one canonical form.
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if not parts:
        raise SubmissionRejected(path, "names the worktree itself, not a file")
    for part in parts:
        _check_component(path, part, limits)
    return "/".join(parts)


def check_on_disk(root: Path, path: str) -> None:
    """Refuse a path whose existing prefix is a symlink or not a directory, or that escapes.

    Walks component by component with ``os.lstat`` so no link is ever followed.
    """
    parts = path.split("/")
    current = root
    for index, part in enumerate(parts):
        current = current / part
        shown = "/".join(parts[: index + 1])
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            break  # nothing below a missing component exists yet
        except OSError as exc:  # e.g. a parent swapped for a file while we walk
            raise SubmissionRejected(
                path, f"can't be checked on disk ({exc.strerror})", "submit it again"
            ) from exc
        if stat.S_ISLNK(mode):
            raise SubmissionRejected(
                path,
                f"'{shown}' is a symbolic link in the worktree",
                "phasegate never writes through links; submit a path without links",
            )
        is_target = index == len(parts) - 1
        if not is_target and not stat.S_ISDIR(mode):
            raise SubmissionRejected(path, f"'{shown}' is a file, not a directory")
        if is_target and stat.S_ISDIR(mode):
            raise SubmissionRejected(path, "is a directory", "submit the files inside it instead")
        if is_target and not stat.S_ISREG(mode):
            raise SubmissionRejected(path, "exists and is not a regular file")
    _check_contained(root, path)


def _check_contained(root: Path, path: str) -> None:
    # Belt and braces: the rules above already exclude "..", links and absolute paths.
    try:
        resolved = (root / path).resolve()
    except OSError as exc:  # a directory swapped for a link (or removed) while we looked
        raise SubmissionRejected(
            path, f"changed on disk while being checked ({exc.strerror})", "submit it again"
        ) from exc
    if resolved.parts[: len(root.parts)] != root.parts or resolved == root:
        raise SubmissionRejected(path, "resolves outside the worktree")


def _refuse_bad_characters(path: str) -> None:
    if path == "":
        raise SubmissionRejected(path, "is empty")
    for char in path:
        code = f"U+{ord(char):04X}"
        if char == "\x00":
            raise SubmissionRejected(path, "contains a NUL byte")
        if unicodedata.category(char) == "Cc":
            raise SubmissionRejected(path, f"contains the control character {code}")
        if unicodedata.category(char) in _INVISIBLE_CATEGORIES or _DEFAULT_IGNORABLE.match(char):
            raise SubmissionRejected(
                path,
                f"contains the invisible character {code}",
                "invisible characters can disguise names such as '.git'; remove them",
            )
        if char == "\\":
            raise SubmissionRejected(
                path,
                "contains a backslash (a Windows separator or UNC prefix)",
                "separate directories with '/'",
            )
        if char == ":":
            raise SubmissionRejected(
                path,
                "contains ':' (a drive letter such as 'C:' or an NTFS stream)",
                "use a relative path without ':'",
            )


def _check_component(path: str, part: str, limits: SubmissionLimits) -> None:
    if len(part.encode("utf-8")) > limits.max_component_length:
        raise SubmissionRejected(
            path,
            f"has a name longer than {limits.max_component_length} bytes",
            "use shorter file and directory names",
        )
    if part == "..":
        raise SubmissionRejected(path, "contains '..'", "use a path inside the worktree")
    if part.endswith((".", " ")):
        raise SubmissionRejected(
            path,
            f"component '{part}' ends with a dot or space (Windows strips them, so it aliases "
            "another name)",
            "remove the trailing dot or space",
        )
    _check_reserved_name(path, part)
    decoded = unquote(part)
    if decoded != part:
        _check_percent_decoded(path, decoded, limits)


def _check_reserved_name(path: str, part: str) -> None:
    folded = unicodedata.normalize("NFKC", part).casefold()
    if folded == ".git" or re.fullmatch(r"git~\d+", folded):
        raise SubmissionRejected(
            path,
            "names the git directory ('.git' in some spelling)",
            "git metadata cannot be submitted; submit project files only",
        )
    if folded == ".phasegate" or re.fullmatch(r"phaseg~\d+", folded):
        raise SubmissionRejected(
            path, "is inside phasegate's own state directory", "submit project files only"
        )
    if folded == "phasegate.toml":
        raise SubmissionRejected(
            path,
            "is phasegate's own configuration (test command, sandbox, budgets, server URL)",
            "ask a human to change phasegate.toml outside phasegate",
        )
    if folded in (".gitattributes", ".gitmodules") or re.fullmatch(r"git(att|mod)~\d+", folded):
        raise SubmissionRejected(
            path,
            "is git configuration that can run programs (filters, drivers, submodules)",
            "ask a human to change it outside phasegate",
        )
    if folded.split(".", 1)[0].rstrip(" ") in _WINDOWS_DEVICES:
        raise SubmissionRejected(
            path, f"'{part}' is a reserved device name on Windows", "rename the file"
        )
    if re.fullmatch(r"[^.]{1,6}~\d+(\..{0,3})?", folded):
        raise SubmissionRejected(
            path, f"'{part}' looks like a Windows 8.3 short name", _NO_SHORT_NAMES
        )


def _check_percent_decoded(path: str, decoded: str, limits: SubmissionLimits) -> None:
    # phasegate never URL-decodes paths, so "%2e%2e" is a literal name on disk, but a
    # web layer or tool that decodes it would see "..": refuse what decodes to danger.
    try:
        if "/" in decoded:
            raise SubmissionRejected(path, "percent-encodes a '/' separator")
        _refuse_bad_characters(decoded)
        for part in (p for p in decoded.split("/") if p):
            _check_component(path, part, limits)
    except SubmissionRejected as refused:
        raise SubmissionRejected(
            path,
            f"decodes (percent-encoding) to a refused name: {refused.reason}",
            "use the literal characters; '%' followed by two hex digits is treated as encoding",
        ) from None


def _refuse_duplicate(path: str, seen: dict[str, str]) -> None:
    key = path.casefold()
    if key in seen:
        raise SubmissionRejected(
            path,
            f"is submitted twice (also as '{seen[key]}'; names differing only in case collide "
            "on macOS and Windows)",
            "submit each file once",
        )
    seen[key] = path


def _content_size(path: str, content: object, limits: SubmissionLimits) -> int:
    if content is None:
        return 0
    if not isinstance(content, str):
        raise SubmissionRejected(
            path, "has content that is not text", "send the content as a string, or null to delete"
        )
    try:
        size = len(content.encode("utf-8"))
    except UnicodeEncodeError:
        raise SubmissionRejected(
            path, "has content that is not valid Unicode text", "send UTF-8 text"
        ) from None
    if size > limits.max_file_bytes:
        raise SubmissionRejected(
            path,
            f"is {size} bytes, more than the limit of {limits.max_file_bytes} bytes per file",
            "keep generated or large data files out of submissions",
        )
    return size


def read_without_links(root: Path, relative: str, *, limit: int = 10 * 1024 * 1024) -> bytes:
    """The bytes of the regular file `root/relative`, reached and opened without following links.

    Each directory is opened relative to the one before with O_NOFOLLOW, so a
    path that someone else can write in can't be swapped for a link to a file
    only phasegate's user may read, not even between a check and the read.
    """
    parts = [p for p in relative.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise RepositoryError(f"'{relative}' is not a plain relative path inside the project")
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(root, flags | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            next_fd = os.open(part, flags | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = next_fd
        file_fd = os.open(parts[-1], flags | os.O_NONBLOCK, dir_fd=fd)
    except OSError as exc:
        raise RepositoryError(
            f"can't read '{relative}' in {root} as a plain file ({exc.strerror}): "
            "links are never followed"
        ) from None
    finally:
        os.close(fd)
    with os.fdopen(file_fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(file_fd).st_mode):
            raise RepositoryError(f"'{relative}' is not a regular file")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise RepositoryError(f"'{relative}' is larger than {limit} bytes")
    return data
