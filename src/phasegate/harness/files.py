"""Merging phasegate's entries into a harness's JSON or TOML config without clobbering it.

An edit is planned in memory first (`Change`): the file's new text and what
changed. A file that isn't valid JSON or TOML, or holds something else where
phasegate needs a table or a list, is refused with a ConfigError that names the
file and the key, so `phasegate init` can refuse before it writes anything.
TOML is edited as text (its comments and layout stay) and the result is parsed
again to prove it says what was meant.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import subprocess
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phasegate.errors import ConfigError

SHARED = "shared, commit it"
LOCAL = "yours, kept out of git"


@dataclass(frozen=True)
class Change:
    """One file's planned edit: its new text (None: it stays as it is) and what changes."""

    rel: str
    scope: str  # SHARED (meant to be committed) or LOCAL (one user's)
    text: str | None
    did: tuple[str, ...]

    def line(self) -> str:
        if self.text is None:
            return f"{self.rel} ({self.scope}): already set up" + (
                f" ({'; '.join(self.did)})" if self.did else ""
            )
        return f"{self.rel} ({self.scope}): " + ("; ".join(self.did) or "updated")


class Unexpected(Exception):
    """A part of a config file whose shape phasegate won't guess at (the message names the key)."""


def refusal(what: str) -> ConfigError:
    """The one-line error for a config file init won't touch."""
    return ConfigError(f"{what}; phasegate init wrote nothing: fix that, then run it again")


def edit_json(
    root: Path, rel: str, scope: str, edit: Callable[[dict[str, Any]], list[str]]
) -> Change:
    """Plan `edit` on the JSON object in `root/rel` (an empty one if the file is missing)."""
    text = _read(root, rel)
    try:
        data = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        why = str(exc).splitlines()[0]
        if re.search(r"^\s*(//|/\*)", text, re.MULTILINE):
            why += "; phasegate can't merge JSON with comments"
        raise refusal(f"{rel} is not valid JSON ({why})") from None
    if not isinstance(data, dict):
        raise refusal(f"{rel} holds {kind_of(data)}, not a JSON object")
    before = copy.deepcopy(data)
    try:
        did = edit(data)
    except Unexpected as exc:
        raise refusal(f"{rel}: {exc}") from None
    if data == before:
        return Change(rel, scope, None, tuple(did))
    return Change(rel, scope, json.dumps(data, indent=2, ensure_ascii=False) + "\n", tuple(did))


def edit_toml_table(
    root: Path,
    rel: str,
    keys: tuple[str, str],
    head: Callable[[dict[str, Any]], tuple[str, list[str]]],
    merge: Callable[[dict[str, Any]], list[str]],
    comments: Mapping[str, str],
) -> Change:
    """Plan a change to the `[parent.name]` table (`keys`) of a TOML file: `merge` edits the parent
    table in memory, `head` gives text for the top of the file. Keys are added under the table's
    header or replaced on their line; anything else is refused."""
    text = _read(root, rel)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise refusal(f"{rel} is not valid TOML ({exc})") from None
    prefix, did = head(data)
    parent_key, name = keys
    parent = data.get(parent_key, {})
    if not isinstance(parent, dict):
        raise refusal(f"{rel}: {parent_key} is {kind_of(parent)}, not a table")
    merged = copy.deepcopy(parent)
    try:
        did += merge(merged)
    except Unexpected as exc:
        raise refusal(f"{rel}: {exc}") from None
    before, after = parent.get(name), merged.get(name)
    if not isinstance(after, dict) or (not prefix and before == after):
        return Change(rel, SHARED, None, tuple(did))
    body = text if not text or text.endswith("\n") else text + "\n"
    if before is None:
        body += ("\n" if body else "") + f"[{parent_key}.{name}]\n"
        body += "".join(_toml_line(key, value, comments) for key, value in after.items())
    elif before != after:
        body = _toml_update(body, rel, keys, before, after, comments)
    new = prefix + ("\n" if prefix and body else "") + body
    expected = {**data, **tomllib.loads(prefix), parent_key: merged}
    if not merged and parent_key not in data:
        del expected[parent_key]
    try:
        matches = tomllib.loads(new) == expected
    except tomllib.TOMLDecodeError:
        matches = False
    if not matches:
        changed = [key for key in after if before is None or before.get(key) != after[key]]
        raise refusal(
            f"{rel}: phasegate can't complete [{parent_key}.{name}] in place; "
            f"set {', '.join(changed)} in it by hand"
        )
    return Change(rel, SHARED, new, tuple(did))


def _toml_update(
    body: str,
    rel: str,
    keys: tuple[str, str],
    before: dict[str, Any],
    after: dict[str, Any],
    comments: Mapping[str, str],
) -> str:
    """Replace the changed keys' lines in the table, and add the new keys under its header."""
    parent_key, name = (re.escape(key) for key in keys)
    header = re.compile(rf'^\s*\[\s*{parent_key}\s*\.\s*("?){name}\1\s*\]\s*(#.*)?$')
    lines = body.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if header.match(line)), None)
    changed = [key for key in after if before.get(key) != after[key]]
    if start is None:
        raise refusal(
            f"{rel}: {'.'.join(keys)} is not written as a [{'.'.join(keys)}] table; "
            f"set {', '.join(changed)} in it by hand"
        )
    end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip()[:1] == "["), None)
    for i in range(start + 1, end or len(lines)):
        key = lines[i].split("=", 1)[0].strip()
        if key in changed and key in before:
            lines[i] = _toml_line(key, after[key], {})
    lines[start + 1 : start + 1] = [
        _toml_line(key, after[key], comments) for key in changed if key not in before
    ]
    return "".join(lines)


def _toml_line(key: str, value: Any, comments: Mapping[str, str]) -> str:
    comment = f"# {comments[key]}\n" if key in comments else ""
    return f"{comment}{key} = {_toml_value(value)}\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a valid TOML basic string too
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        pairs = (f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + ", ".join(pairs) + " }"
    raise TypeError(f"no TOML for {value!r}")


def add_line(root: Path, rel: str, line: str) -> Change:
    """Plan adding `line` to a plain text file (an ignore file) unless it is there."""
    text = _read(root, rel)
    if line in text.splitlines():
        return Change(rel, SHARED, None, ())
    new = text + ("\n" if text and not text.endswith("\n") else "") + line + "\n"
    return Change(rel, SHARED, new, (f"added {line}",))


def table_at(data: dict[str, Any], *keys: str) -> dict[str, Any]:
    """The object under `keys` (made if missing); Unexpected naming the key if it is not one."""
    for depth, key in enumerate(keys):
        value = data.setdefault(key, {})
        if not isinstance(value, dict):
            raise Unexpected(f"{'.'.join(keys[: depth + 1])} is {kind_of(value)}, not an object")
        data = value
    return data


def list_at(data: dict[str, Any], *keys: str) -> list[Any]:
    """The list under `keys` (made if missing); Unexpected naming the key if it is not one."""
    parent = table_at(data, *keys[:-1])
    value = parent.setdefault(keys[-1], [])
    if not isinstance(value, list):
        raise Unexpected(f"{'.'.join(keys)} is {kind_of(value)}, not a list")
    return value


def add_all(items: list[Any], new: Sequence[str]) -> int:
    """Append the entries of `new` not in `items` yet; how many were added."""
    missing = [entry for entry in new if entry not in items]
    items.extend(missing)
    return len(missing)


def read_json(path: Path) -> object:
    """The JSON in `path`, or None if it can't be read."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def kind_of(value: object) -> str:
    """What a JSON or TOML value is, in words (for an error message)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def _read(root: Path, rel: str) -> str:
    path = inside(root, rel)
    try:
        return path.read_text(encoding="utf-8") if path.exists() else ""
    except UnicodeDecodeError:
        raise refusal(f"{rel} is not UTF-8 text") from None
    except OSError as exc:
        raise refusal(f"{rel} can't be read ({exc.strerror})") from None


def inside(root: Path, rel: str) -> Path:
    """`root / rel`, refused if a link stands anywhere on the way.

    The repository is the agent's to write: a committed `.claude -> docs` link
    would otherwise carry the token into a tracked file, or out of the repository.
    """
    path = root
    for part in Path(rel).parts:
        path = path / part
        if path.is_symlink():
            raise refusal(
                f"{rel} goes through a link ({path.relative_to(root)}); phasegate writes its "
                "settings only to plain files inside the repository: remove the link"
            )
    return path


def write(root: Path, rel: str, text: str, private: bool = False) -> None:
    """Replace `rel` whole (a temporary file renamed over it), keeping its permissions; a
    private file (one holding a token) is readable by its owner only, whatever it was before."""
    path = inside(root, rel)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".phasegate-tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o666)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    if path.exists() and not private:
        os.chmod(tmp, path.stat().st_mode & 0o7777)
    os.replace(tmp, path)


# --- git --------------------------------------------------------------------------------------


def keep_out_of_git(root: Path, rel: str) -> list[str]:
    """Make sure git ignores the per-user file `rel`: add it to the repository's info/exclude
    unless an ignore rule covers it already. A line if something was done or can't be."""
    ignored = _git(root, "check-ignore", "-q", "--", rel)
    if ignored is not None and ignored.returncode == 0:
        return []
    found = _git(root, "rev-parse", "--git-path", "info/exclude")
    if found is None or found.returncode != 0:
        return [f"{rel}: not in a git repository; keep it out of version control yourself"]
    exclude = root / found.stdout.strip()
    text = exclude.read_text(encoding="utf-8") if exclude.exists() else ""
    pattern = "/" + rel
    if pattern in text.splitlines():
        return []
    exclude.parent.mkdir(parents=True, exist_ok=True)
    sep = "\n" if text and not text.endswith("\n") else ""
    exclude.write_text(f"{text}{sep}{pattern}\n", encoding="utf-8")
    shown = found.stdout.strip() if not os.path.isabs(found.stdout.strip()) else str(exclude)
    return [f"{shown}: added {pattern}"]


def tracked_by_git(root: Path, rel: str) -> bool:
    """Is `rel` in the repository's index (so it is, or is about to be, committed)?"""
    listed = _git(root, "ls-files", "--", rel)
    return bool(listed and listed.returncode == 0 and listed.stdout.strip())


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(
            ["git", *args],
            cwd=root,
            capture_output=True,
            text=True,
            env={**os.environ, "LC_ALL": "C"},
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return None
