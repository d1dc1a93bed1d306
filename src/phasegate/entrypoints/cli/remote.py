"""The CLI as a client of a guarded server: humans decide over HTTP, never through its state.

When the project names a server (`[server] url`, or PHASEGATE_SERVER_URL), the
decision commands, `ls` and `show` call its JSON API with the human's token,
and a decision carries the passphrase. The CLI then never opens the database,
which in guarded mode it could not read anyway.

Every request is safe to send twice: reads, and decisions that carry their
idempotency key (a repeat returns the first result). So when the server drops
a request it was sent (it restarts, say), the CLI sends it again until the
server answers, for about `RETRY_FOR_S`, saying so on stderr. A server that
refuses the very first connection is not running, and a URL that can't work
fails at once; a server that drops the request twice before it ever answered
is not one we can talk to (http:// to a TLS port, say). Each ends in one line.
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
#: No request was sent: nobody listens (yet), or nobody took the connection.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout)
#: The request was sent, and the connection ended without an answer.
DROPPED = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)


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
        self.answered = False  # it answered once: a refused connect or a drop is a restart
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
            # UTF-8 bytes: a header is latin-1 text, and a passphrase may be any text.
            headers={PASSPHRASE_HEADER: passphrase.encode()} if passphrase else {},
            again=(
                f"run it again with --idempotency-key {idempotency_key}: if the decision "
                "landed, that prints it instead of deciding twice"
            ),
        )

    def _request(
        self, method: str, path: str, *, again: str = "run the command again", **kwargs: Any
    ) -> dict[str, Any]:
        response = self._send(method, path, again, **kwargs)
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.is_success and isinstance(body, dict):
            return body
        error = body.get("error") if isinstance(body, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        raise RemoteError(message or f"the server answered {response.status_code} to {path}")

    def _send(self, method: str, path: str, again: str, **kwargs: Any) -> httpx.Response:
        """The server's response; a dropped request is sent again (see the module's doc).

        `again` says how to run the command again when the outcome is unknown.
        """
        deadline, delay, dropped, said = time.monotonic() + RETRY_FOR_S, 0.25, 0, False
        while True:
            try:
                response = self.client.request(method, path, **kwargs)
            except httpx.HTTPError as exc:
                problem = exc
            else:
                self.answered = True
                return response
            dropped += isinstance(problem, DROPPED)
            if not self._worth_again(problem, dropped) or time.monotonic() + delay > deadline:
                raise self._failed(problem, dropped, again)
            if not said:
                click.echo(
                    f"phasegate: the server at {self.url} dropped the request "
                    f"({_why(problem)}); it may be restarting: sending it again for about "
                    f"{RETRY_FOR_S:g} s",
                    err=True,
                )
                said = True
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _worth_again(self, problem: httpx.HTTPError, dropped: int) -> bool:
        if isinstance(problem, NOT_SENT):  # nobody listens: not running, or restarting
            return dropped > 0 or self.answered
        if isinstance(problem, DROPPED):  # a restart drops one; a server that never answers…
            return self.answered or dropped == 1
        return False  # a timeout (it is still working on it), a wrong URL, a bad answer

    def _failed(self, problem: httpx.HTTPError, dropped: int, again: str) -> RemoteError:
        waited = isinstance(problem, httpx.TimeoutException) and not isinstance(problem, NOT_SENT)
        if dropped or waited:  # sent, and never answered: whether it happened is unknown
            return RemoteError(
                f"the phasegate server at {self.url} got the request but gave no answer "
                f"({_why(problem)}); check that it runs and that [server] url is right, "
                f"then {again}"
            )
        return RemoteError(
            f"can't reach the phasegate server at {self.url} ({_why(problem)}); check that "
            "`phasegate serve --guarded` runs there and that [server] url is right"
        )


def _why(exc: httpx.HTTPError) -> str:
    return str(exc) or type(exc).__name__


def _segment(ref: str) -> str:
    """A session reference as one path segment: `5de6?x`, `.` or `a/b` can't reach another route."""
    return quote(ref, safe="").replace(".", "%2E")
