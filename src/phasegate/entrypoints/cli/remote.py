"""The CLI as a client of a guarded server: humans decide over HTTP, never through its state.

When the project names a server (`[server] url`, or PHASEGATE_SERVER_URL), the
decision commands, `ls` and `show` call its JSON API with the human's token,
and a decision carries the passphrase. The CLI then never opens the database,
which in guarded mode it could not read anyway.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from phasegate import credentials
from phasegate.errors import ConfigError, NotFound, PhasegateError, Unauthenticated

PASSPHRASE_HEADER = "X-Phasegate-Passphrase"


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

    def me(self) -> dict[str, Any]:
        """Who the token belongs to."""
        return self._request("GET", "/api/me")

    def session(self, ref: str) -> dict[str, Any]:
        if not ref.strip():
            raise NotFound(
                "no session '': give a session id or prefix; list them with phasegate ls"
            )
        return self._request("GET", f"/api/sessions/{_segment(ref)}")

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
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"comment": comment, "expected_version": expected_version}
        if idempotency_key is not None:
            body["idempotency_key"] = idempotency_key
        return self._request(
            "POST",
            f"/api/sessions/{_segment(ref)}/{action}",
            json=body,
            headers={PASSPHRASE_HEADER: passphrase} if passphrase else {},
        )

    def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise RemoteError(
                f"can't reach the phasegate server at {self.url} ({exc}); check that "
                "`phasegate serve --guarded` runs there and that [server] url is right"
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.is_success and isinstance(body, dict):
            return body
        error = body.get("error") if isinstance(body, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        raise RemoteError(message or f"the server answered {response.status_code} to {path}")


def _segment(ref: str) -> str:
    """A session reference as one path segment: `5de6?x`, `.` or `a/b` can't reach another route."""
    return quote(ref, safe="").replace(".", "%2E")
