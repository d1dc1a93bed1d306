"""The CLI as a client of a guarded server: humans decide over HTTP, never through its state.

When the project names a server (`[server] url`, or PHASEGATE_SERVER_URL), the
decision commands, `ls` and `show` call its JSON API with the human's token,
and a decision carries the passphrase. The CLI then never opens the database,
which in guarded mode it could not read anyway.

Every request is safe to send twice: reads, and decisions that carry their
idempotency key (a repeat returns the first result). So when the server drops
a request it was sent (it restarts, say), the CLI sends it again until the
server answers, for up to `RETRY_FOR_S`, saying so on stderr. A server that
refuses the very first connection is not running: that fails at once.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import click
import httpx

from phasegate import credentials
from phasegate.errors import ConfigError, NotFound, PhasegateError, Unauthenticated

PASSPHRASE_HEADER = "X-Phasegate-Passphrase"
#: How long a command rides out a server that dropped its request: a restart takes seconds.
RETRY_FOR_S = 15.0
#: No request was sent: nobody listens (yet), or nobody answered the connection.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout)


class RemoteError(PhasegateError):
    """The server refused a request, or could not be reached."""


class Remote:
    """A guarded phasegate server's JSON API, as one human."""

    def __init__(self, url: str, token: str | None) -> None:
        if not token:
            raise Unauthenticated(
                f"no human token for {url}; run `phasegate login` here with the token the "
                "server's admin gave you (or set PHASEGATE_TOKEN)"
            )
        self.url = url
        self.answered = False  # the server answered once: later a refused connect is a restart
        try:
            self.client = httpx.Client(
                base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60.0
            )
        except httpx.InvalidURL as exc:
            raise ConfigError(
                f"the server URL {url!r} is not a valid URL ({exc}); fix [server] url in "
                "phasegate.toml or PHASEGATE_SERVER_URL"
            ) from None

    @classmethod
    def for_server(cls, url: str) -> Remote:
        return cls(url, credentials.stored_human_token(url))

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def me(self) -> dict[str, Any]:
        """Who the token belongs to."""
        return self._request("GET", "/api/me")

    def session(self, ref: str) -> dict[str, Any]:
        if not ref.strip():
            raise NotFound(
                "no session '': give a session id or prefix; list them with phasegate ls"
            )
        return self._request("GET", f"/api/sessions/{_segment(ref)}")

    def brief(self, session_id: str) -> dict[str, Any]:
        """What a human needs first on the session (`SessionBrief` in the API's document)."""
        return self._request("GET", f"/api/sessions/{_segment(session_id)}/brief")

    def sessions(self, *, include_finished: bool) -> list[dict[str, Any]]:
        """Every session (active ones, or all), page by page."""
        found: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": 500, "include_finished": include_finished}
        while True:
            page = self._request("GET", "/api/sessions", params=params)
            found.extend(page["sessions"])
            if not page.get("next"):
                return found
            params["after"] = page["next"]

    def decide(
        self,
        ref: str,
        action: str,
        comment: str,
        expected_version: int,
        passphrase: str,
        idempotency_key: str,
    ) -> dict[str, Any]:
        """Decide; with the key, a repeat (after a dropped request) returns the first result."""
        body = {
            "comment": comment,
            "expected_version": expected_version,
            "idempotency_key": idempotency_key,
        }
        return self._request(
            "POST",
            f"/api/sessions/{_segment(ref)}/{action}",
            json=body,
            headers={PASSPHRASE_HEADER: passphrase} if passphrase else {},
        )

    def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self._send(method, path, **kwargs)
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.is_success and isinstance(body, dict):
            return body
        error = body.get("error") if isinstance(body, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        raise RemoteError(message or f"the server answered {response.status_code} to {path}")

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The server's response; a dropped request is sent again (see the module's doc)."""
        deadline, delay, retrying = time.monotonic() + RETRY_FOR_S, 0.25, False
        while True:
            try:
                response = self.client.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if not self._may_retry(exc, retrying) or time.monotonic() + delay > deadline:
                    raise self._unreachable(exc, retrying) from None
                if not retrying:
                    click.echo(
                        f"phasegate: the server at {self.url} dropped the request "
                        f"({_why(exc)}); it may be restarting: sending it again for up to "
                        f"{RETRY_FOR_S:g} s",
                        err=True,
                    )
                    retrying = True
            else:
                self.answered = True
                return response
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _may_retry(self, exc: httpx.TransportError, retrying: bool) -> bool:
        if isinstance(exc, NOT_SENT):  # nobody listens: not running, or restarting
            return retrying or self.answered
        # Sent, then dropped: again. Sent and still being worked on (a timeout): don't pile on.
        return not isinstance(exc, httpx.TimeoutException)

    def _unreachable(self, exc: httpx.TransportError, retrying: bool) -> RemoteError:
        if retrying:
            return RemoteError(
                f"the phasegate server at {self.url} did not answer within {RETRY_FOR_S:g} s "
                f"of dropping the request ({_why(exc)}); check that it runs, then run the "
                "command again"
            )
        return RemoteError(
            f"can't reach the phasegate server at {self.url} ({_why(exc)}); check that "
            "`phasegate serve --guarded` runs there and that [server] url is right"
        )


def _why(exc: httpx.TransportError) -> str:
    return str(exc) or type(exc).__name__


def _segment(ref: str) -> str:
    """A session reference as one path segment: `5de6?x`, `.` or `a/b` can't reach another route."""
    return quote(ref, safe="").replace(".", "%2E")
