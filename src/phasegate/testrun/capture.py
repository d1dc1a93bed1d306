"""Reading a child's output without letting it cost more than a few MiB, however much it prints.

A reader thread drains the pipe into a `HeadTail`: the first bytes and the
last bytes are kept, the middle is only counted. A test run keeps its head in
memory (`render`); an agent's attempt streams its head into its log file as it
comes (`head_sink`), so a live log shows the start while the agent still runs.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
from collections.abc import Callable

_TICK_S = 0.05  # how often a blocked reader checks whether it was told to stop


class HeadTail:
    """Keep the first `head` and last `tail` bytes of a stream, and count the rest.

    With `head_sink` the head goes to the sink as it arrives instead of being
    kept; a sink that fails (a full disk) must not stop the draining, so its
    errors are dropped.
    """

    def __init__(
        self, head: int, tail: int, head_sink: Callable[[bytes], object] | None = None
    ) -> None:
        self.head_max, self.tail_max = head, tail
        self._head = bytearray()
        self._head_left = head
        self._sink = head_sink
        self._tail = bytearray()
        self._lock = threading.Lock()
        self.total = 0

    def feed(self, chunk: bytes) -> None:
        with self._lock:
            self.total += len(chunk)
            if self._head_left > 0:
                head, chunk = chunk[: self._head_left], chunk[self._head_left :]
                self._head_left -= len(head)
                if self._sink is None:
                    self._head += head
                else:
                    with contextlib.suppress(OSError):
                        self._sink(head)
            self._tail += chunk
            if len(self._tail) > 2 * self.tail_max:  # trim rarely: amortised O(1) per byte
                del self._tail[: len(self._tail) - self.tail_max]

    def tail(self) -> bytes:
        """The last `tail` bytes after the head (none of them repeated from the head)."""
        with self._lock:
            return bytes(self._tail[len(self._tail) - self.tail_max :] if self.tail_max else b"")

    @property
    def cut(self) -> int:
        """Bytes neither in the head nor in the tail."""
        with self._lock:
            kept = (self.head_max - self._head_left) + min(len(self._tail), self.tail_max)
            return self.total - kept

    def render(self) -> tuple[str, int]:
        """The kept head, a marker if anything was cut, the tail; and the bytes cut."""
        head, tail, cut = bytes(self._head), self.tail(), self.cut
        text = head.decode(errors="replace")
        if cut:
            text += f"\n… [{cut} bytes cut] …\n"
        return text + tail.decode(errors="replace"), cut


class PipeReader(threading.Thread):
    """Drain one pipe into a HeadTail until EOF, or until told to stop."""

    def __init__(self, pipe: int, buffer: HeadTail, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self._pipe = pipe
        self._buffer = buffer
        self._stop_reading = threading.Event()

    def run(self) -> None:
        poller = select.poll()
        poller.register(self._pipe, select.POLLIN | select.POLLHUP | select.POLLERR)
        while not self._stop_reading.is_set():
            if not poller.poll(int(_TICK_S * 1000)):
                continue  # a timeout, so a stop request is noticed
            try:
                chunk = os.read(self._pipe, 1 << 16)
            except OSError:
                return
            if not chunk:
                return
            self._buffer.feed(chunk)

    def finish(self, drain_s: float) -> None:
        """Wait up to `drain_s` for EOF, then stop reading regardless."""
        self.join(drain_s)
        self._stop_reading.set()
        self.join()
