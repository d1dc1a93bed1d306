"""What phasegate stores has no NUL character: PostgreSQL can't keep one in text or JSONB.

Agents control much of what phasegate stores (a note, a message for the
reviewer, the output of a failing test). A NUL in it must be stored, marked as
U+FFFD, not make the transaction fail, so a failing run is always recorded.
The same rule holds on SQLite, so both databases store the same thing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def without_nul(value: Any) -> Any:
    """`value` with every NUL in its strings (keys too) replaced by U+FFFD."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, Mapping):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [without_nul(v) for v in value]
    return value


def dumps(value: Any) -> str:
    """JSON as `json.dumps` makes it, with NUL replaced (the walk runs only when one is there)."""
    text = json.dumps(value)
    return json.dumps(without_nul(value)) if "\\u0000" in text else text
