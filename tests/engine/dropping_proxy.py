"""A TCP proxy that loses one answer: the server acted, the client never heard.

It relays HTTP/1.1 requests (with a Content-Length, as the CLI sends them) to
an upstream server one at a time, each on a fresh upstream connection. The
first `times` requests whose start line holds `drop` are relayed and fully
answered upstream, then the client's connection is closed without that answer:
what a client sees when the server restarts, or the network fails, right after
a commit.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field


def _read_message(sock: socket.socket) -> bytes:
    """One HTTP message (head, then a Content-Length body); b"" at end of stream."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


@dataclass
class DroppingProxy:
    upstream_port: int
    drop: bytes
    times: int = 1
    requests: list[bytes] = field(default_factory=list)
    dropped: int = 0

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client:
            while request := _read_message(client):
                self.requests.append(request)
                with socket.create_connection(("127.0.0.1", self.upstream_port)) as upstream:
                    upstream.sendall(request)
                    answer = _read_message(upstream)
                if self.dropped < self.times and self.drop in request.split(b"\r\n", 1)[0]:
                    self.dropped += 1
                    return  # answered upstream; the client's connection just ends
                client.sendall(answer)
