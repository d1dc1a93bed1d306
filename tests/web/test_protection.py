"""The protection verdict on every page, and a guarded server's rule for remote plain HTTP."""

from __future__ import annotations

import getpass
from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from phasegate.entrypoints.web.app import create_app
from phasegate.feed import EventFeed
from tests.web.conftest import WebEnv, start_server, stop_server


def test_an_unguarded_server_says_so_on_every_page(env: WebEnv) -> None:
    """Today's default, a local unguarded server, works and tells the human what that means."""
    server = start_server(env.root, {"PHASEGATE_DATABASE_URL": env.orch.db.url})
    try:
        page = httpx.get(f"{server.url}/", headers={"Authorization": f"Bearer {env.human_token}"})
    finally:
        stop_server(server)
    assert page.status_code == 200
    assert f"unguarded: agents running as {getpass.getuser()} can reach phasegate" in page.text


def guarded_app(env: WebEnv, *, insecure_remote: bool = False) -> Starlette:
    return create_app(
        env.orch,
        EventFeed(env.orch, poll_interval=0.1),
        allowed_hosts=["testserver"],
        secret=b"test-secret",
        guarded=True,
        insecure_remote=insecure_remote,
    )


@pytest.fixture
def guarded_client(env: WebEnv) -> Iterator[TestClient]:
    """A guarded app; the test client connects from a host that isn't loopback."""
    with TestClient(guarded_app(env)) as client:
        yield client


def test_a_guarded_server_refuses_plain_http_from_another_host(
    guarded_client: TestClient, env: WebEnv
) -> None:
    """Tokens and passphrases must not cross a network in clear: 403 with what to do instead."""
    response = guarded_client.get("/api/sessions", headers=env.bearer)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "tls_required"
    assert "https" in response.json()["error"]["message"]


def test_a_guarded_server_decides_only_with_the_passphrase_even_for_local_bearers(
    env: WebEnv,
) -> None:
    """Over loopback (allowed), a human's bearer decision without the passphrase is refused."""
    session = env.gate_session()
    # insecure_remote: the test client's host isn't loopback.
    with TestClient(guarded_app(env, insecure_remote=True)) as client:
        refused = client.post(f"/api/sessions/{session.id}/approve", json={}, headers=env.bearer)
    assert refused.status_code == 403
    assert "passphrase" in refused.json()["error"]["message"]
    assert env.orch.get(session.id).version == session.version
