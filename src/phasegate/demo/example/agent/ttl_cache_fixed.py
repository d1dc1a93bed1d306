"""An LRU cache whose entries expire. See design.md."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any


class TTLCache:
    def __init__(
        self, capacity: int, ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        if ttl <= 0:
            raise ValueError("ttl must be greater than 0")
        self._capacity, self._ttl, self._clock = capacity, ttl, clock
        self._entries: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()

    def _expired(self, written_at: float) -> bool:
        # Alive strictly before the deadline: expired at written_at + ttl (see design.md).
        return self._clock() - written_at >= self._ttl

    def put(self, key: Hashable, value: Any) -> None:
        self._entries[key] = (self._clock(), value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)

    def get(self, key: Hashable, default: Any = None) -> Any:
        entry = self._entries.get(key)
        if entry is None:
            return default
        if self._expired(entry[0]):
            del self._entries[key]
            return default
        self._entries.move_to_end(key)
        return entry[1]

    def __contains__(self, key: object) -> bool:
        entry = self._entries.get(key)  # type: ignore[call-overload]
        return entry is not None and not self._expired(entry[0])

    def __len__(self) -> int:
        return sum(1 for written_at, _ in self._entries.values() if not self._expired(written_at))

    def purge(self) -> int:
        dead = [k for k, (written_at, _) in self._entries.items() if self._expired(written_at)]
        for key in dead:
            del self._entries[key]
        return len(dead)
