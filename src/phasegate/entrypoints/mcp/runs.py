"""Blocking orchestrator work in a thread, with progress reported to the MCP client.

A test run may outlast a client's request timeout, so it runs in a thread
that does not belong to the request: the tool waits a bounded time, then
hands back a run handle; a later call picks up the result.
"""

from __future__ import annotations

import contextvars
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import anyio
import anyio.to_thread

T = TypeVar("T")
Report = Callable[[float, str], Awaitable[None]]

PROGRESS_EVERY_S = 5.0


@dataclass
class BackgroundWork(Generic[T]):
    """One blocking call running in its own daemon thread; its progress lines and outcome."""

    fn: Callable[[Callable[[str], None]], T]
    handle: str = field(default_factory=lambda: uuid.uuid4().hex)
    started_at: float = field(default_factory=time.monotonic)
    messages: list[str] = field(default_factory=list)
    result: T | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)
    # Wakes a waiter at once on news (a progress line, or the end): no polling delay.
    _news: threading.Condition = field(default_factory=threading.Condition)

    def start(self) -> BackgroundWork[T]:
        # In the caller's context, as `anyio.to_thread` would: the events the work writes
        # record the harness that asked for it (kernel.calling_through).
        threading.Thread(
            target=contextvars.copy_context().run,
            args=(self._run,),
            name=f"phasegate-mcp-{self.handle[:8]}",
            daemon=True,
        ).start()
        return self

    def _run(self) -> None:
        try:
            self.result = self.fn(self._progress)
        except BaseException as exc:  # delivered to whoever waits on the handle
            self.error = exc
        finally:
            with self._news:
                self.done.set()
                self._news.notify_all()

    def _progress(self, message: str) -> None:
        with self._news:
            self.messages.append(message)
            self._news.notify_all()

    def _await_news(self, seen: int, timeout: float) -> None:
        with self._news:
            self._news.wait_for(lambda: self.done.is_set() or len(self.messages) != seen, timeout)

    @property
    def last_message(self) -> str:
        return self.messages[-1] if self.messages else "started"

    async def wait(self, report: Report | None, budget_s: float | None) -> bool:
        """Wait until done or `budget_s` passes, reporting progress; True when done."""
        deadline = None if budget_s is None else time.monotonic() + budget_s
        seen, last_report, step = 0, 0.0, 0
        while not self.done.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            now = time.monotonic()
            if report is not None and (
                len(self.messages) != seen or now - last_report >= PROGRESS_EVERY_S
            ):
                seen, last_report, step = len(self.messages), now, step + 1
                elapsed = now - self.started_at
                await report(step, f"{self.last_message} ({elapsed:.0f} s)")
            elif report is None:
                seen = len(self.messages)  # nobody to tell: wake only for the end
            timeout = (
                PROGRESS_EVERY_S if deadline is None else min(PROGRESS_EVERY_S, deadline - now)
            )
            await anyio.to_thread.run_sync(
                self._await_news, seen, max(0.0, timeout), abandon_on_cancel=True
            )
        return True

    def outcome(self) -> T:
        """The result, or the exception the work raised."""
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


async def run_with_progress(fn: Callable[[Callable[[str], None]], T], report: Report | None) -> T:
    """Run `fn(progress)` in a thread until it finishes, forwarding its progress lines."""
    work: BackgroundWork[T] = BackgroundWork(fn).start()
    await work.wait(report, None)
    return work.outcome()


class TestRuns:
    """The test runs this process started, one per session, until their result is read."""

    __test__ = False

    def __init__(self) -> None:
        self._runs: dict[str, BackgroundWork[Any]] = {}
        self._lock = threading.Lock()

    def get(self, session_id: str) -> BackgroundWork[Any] | None:
        with self._lock:
            return self._runs.get(session_id)

    def start(
        self, session_id: str, fn: Callable[[Callable[[str], None]], Any]
    ) -> BackgroundWork[Any]:
        with self._lock:
            work: BackgroundWork[Any] = BackgroundWork(fn).start()
            self._runs[session_id] = work
            return work

    def forget(self, session_id: str, work: BackgroundWork[Any]) -> None:
        with self._lock:
            if self._runs.get(session_id) is work:
                del self._runs[session_id]
