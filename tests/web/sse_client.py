"""A small blocking SSE reader for tests and the benchmark: parses `event:`/`data:` messages."""

from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class SseMessage:
    event: str
    data: dict[str, Any]
    id: str = ""
    received_at: float = field(default_factory=time.perf_counter)


class SseReader:
    """Reads an event stream on a background thread into a queue."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.messages: queue.Queue[SseMessage] = queue.Queue()
        self.ready = threading.Event()
        self._client = httpx.Client(timeout=httpx.Timeout(5, read=None))
        self._url, self._headers = url, headers
        self._response: httpx.Response | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self.ready.wait(10):
            raise TimeoutError(f"no `ready` event from {url}")

    def _run(self) -> None:
        event, data, ident = "message", "", ""
        try:
            with self._client.stream("GET", self._url, headers=self._headers) as response:
                self._response = response
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        data += line[5:].strip()
                    elif line.startswith("id:"):
                        ident = line[3:].strip()
                    elif line == "":
                        if event == "ready":
                            self.ready.set()
                        elif data:
                            self.messages.put(SseMessage(event, json.loads(data), ident))
                        event, data, ident = "message", "", ""
        except (httpx.HTTPError, RuntimeError):
            return  # closed by the test

    def next_change(self, timeout: float, **match: Any) -> SseMessage:
        """The next `change` message whose data has all of `match`; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = self.messages.get(timeout=left)
            except queue.Empty:
                break
            if message.event == "change" and all(
                message.data.get(k) == v for k, v in match.items()
            ):
                return message
        raise TimeoutError(f"no change matching {match} within {timeout}s")

    def close(self) -> None:
        """Hang up: closing the response ends the reader thread and the server's stream."""
        if self._response is not None:
            self._response.close()
        self._client.close()
        self._thread.join(2)
