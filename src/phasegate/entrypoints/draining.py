"""The moment a server starts shutting down, for the waits that must end early then.

`phasegate serve` sets it on SIGTERM, before it waits for requests in flight:
an SSE stream then ends, and `wait_for_decision` answers "still waiting, call
again" at once, instead of holding the shutdown for up to 45 s. A wait joins
by wrapping its blocking part in `cutting(scope)`: the scope is cancelled
when the server drains (or at once, if it already does).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import anyio


class Draining:
    """Set once, from the server's event loop; cancels the scopes of the waits that joined."""

    def __init__(self) -> None:
        self._set = False
        self._scopes: set[anyio.CancelScope] = set()

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        """Start draining: every joined wait ends now, and every later one at once."""
        self._set = True
        for scope in list(self._scopes):
            scope.cancel()

    @contextmanager
    def cutting(self, scope: anyio.CancelScope) -> Iterator[anyio.CancelScope]:
        """Cancel `scope` when the server drains, for as long as the block runs."""
        if self._set:
            scope.cancel()
        self._scopes.add(scope)
        try:
            yield scope
        finally:
            self._scopes.discard(scope)

    @property
    def waits(self) -> int:
        """How many waits would be cut now (for the shutdown's log line)."""
        return len(self._scopes)
