"""Tokens: minting, hashing, and the human credential kept outside the repository.

`phasegate init` stores the user's human token in the user's config directory
(never in the project), so the CLI can decide gates and an agent working in
the project cannot find it there.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from pathlib import Path

TOKEN_PREFIX = {"human": "pgh_", "agent": "pga_"}


def mint_token(kind: str) -> str:
    """A new random token (256 bits) whose prefix says the principal kind."""
    return TOKEN_PREFIX[kind] + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """Tokens are stored hashed; they are random, so a plain SHA-256 is enough."""
    return hashlib.sha256(token.encode()).hexdigest()


def config_dir() -> Path:
    override = os.environ.get("PHASEGATE_CONFIG_DIR")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "phasegate"


def credentials_file() -> Path:
    return config_dir() / "credentials.json"


def _load() -> dict[str, dict[str, str]]:
    path = credentials_file()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def store_human_token(project_key: str, name: str, token: str) -> Path:
    """Remember the human token for a project (keyed by its root or database URL)."""
    data = _load()
    data[project_key] = {"name": name, "token": token}
    path = credentials_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2)
    os.replace(tmp, path)
    return path


def stored_human_token(project_key: str) -> str | None:
    """The token `phasegate init` stored for this project, or PHASEGATE_TOKEN if set."""
    env = os.environ.get("PHASEGATE_TOKEN")
    if env:
        return env
    entry = _load().get(project_key)
    return entry.get("token") if entry else None
