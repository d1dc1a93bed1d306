"""Who may do what: tokens, login cookies, CSRF, Host and Origin checks."""

from __future__ import annotations

import re

import pytest
from starlette.testclient import TestClient

from tests.web.conftest import WebEnv
from tests.web.test_api import snapshot

HUMAN_GETS = ["/", "/api/sessions", "/api/me", "/fragments/sessions", "/api/events"]


def login(client: TestClient, token: str, next_path: str = "/") -> TestClient:
    """Log in through the form, as a browser would; return the client holding the cookie."""
    page = client.get(f"/login?next={next_path}")
    login_csrf = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
    assert login_csrf is not None
    client.post(
        "/login",
        data={"token": token, "login_csrf": login_csrf.group(1), "next": next_path},
        follow_redirects=False,
    )
    return client


def csrf_of(client: TestClient, path: str = "/") -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text)
    assert match is not None
    return match.group(1)


@pytest.fixture
def browser(client: TestClient) -> TestClient:
    """A fresh cookie jar on the module's app."""
    client.cookies.clear()
    return client


@pytest.mark.parametrize("path", HUMAN_GETS)
def test_no_token_is_401_for_the_api_and_a_login_redirect_for_pages(
    browser: TestClient, path: str
) -> None:
    """Without a token the API answers 401 and pages redirect to the login form."""
    response = browser.get(path, follow_redirects=False)
    if path.startswith("/api"):
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert "log in" in response.json()["error"]["message"]
    else:
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login?next=")


def test_unknown_token_is_401(browser: TestClient) -> None:
    """A made-up bearer token is refused with 401."""
    response = browser.get("/api/sessions", headers={"Authorization": "Bearer pgh_nope"})
    assert response.status_code == 401


@pytest.mark.parametrize("path", HUMAN_GETS)
def test_agent_token_is_403_on_human_endpoints(browser: TestClient, env: WebEnv, path: str) -> None:
    """An agent's token is refused with 403 on every human page and endpoint."""
    assert browser.get(path, headers=env.agent_bearer).status_code == 403


def test_agent_cannot_decide_a_gate(browser: TestClient, env: WebEnv) -> None:
    """An agent approving through the API gets 403 and the gate stays closed."""
    session = env.gate_session()
    before = snapshot(env)
    response = browser.post(
        f"/api/sessions/{session.id}/approve", headers=env.agent_bearer, json={}
    )
    assert response.status_code == 403
    assert "agent" in response.json()["error"]["message"]
    assert snapshot(env) == before


def test_login_sets_a_strict_httponly_cookie(browser: TestClient, env: WebEnv) -> None:
    """Logging in with the human token sets an HttpOnly SameSite=Strict cookie and opens pages."""
    page = browser.get("/login")
    login_csrf = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
    assert login_csrf is not None
    response = browser.post(
        "/login",
        data={"token": env.human_token, "next": "/", "login_csrf": login_csrf.group(1)},
        follow_redirects=False,
    )
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith("phasegate_session=")
    )
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert env.human_token not in cookie
    assert browser.get("/").status_code == 200
    assert browser.get("/api/me").json()["name"] == "alice"


def test_login_with_an_agent_token_is_refused(browser: TestClient, env: WebEnv) -> None:
    """The login form refuses an agent token with 403 and sets no session cookie."""
    login(browser, env.agent_token)
    assert "phasegate_session" not in browser.cookies
    assert browser.get("/", follow_redirects=False).status_code == 303


def test_login_without_the_form_token_is_refused(browser: TestClient, env: WebEnv) -> None:
    """A login post that didn't come from our form (no login CSRF) is refused."""
    response = browser.post("/login", data={"token": env.human_token}, follow_redirects=False)
    assert response.status_code == 403
    assert "phasegate_session" not in browser.cookies


def test_login_never_redirects_off_site(browser: TestClient, env: WebEnv) -> None:
    """A `next` pointing at another host is replaced with the dashboard's root."""
    page = browser.get("/login")
    token = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
    assert token is not None
    response = browser.post(
        "/login",
        data={"token": env.human_token, "next": "//evil.example", "login_csrf": token.group(1)},
        follow_redirects=False,
    )
    assert response.headers["location"] == "/"


def test_forged_cookie_is_ignored(browser: TestClient) -> None:
    """A cookie not signed by this server counts as no login."""
    browser.cookies.set("phasegate_session", "eyJoIjoiYWJjIn0.forged")
    assert browser.get("/", follow_redirects=False).status_code == 303


def test_form_post_without_csrf_is_refused(browser: TestClient, env: WebEnv) -> None:
    """A cookie-authenticated decision without the form's CSRF token is 403 and changes nothing."""
    session = env.new_session()
    login(browser, env.human_token)
    before = snapshot(env)
    response = browser.post(
        f"/sessions/{session.id}/decide",
        data={"action": "pause", "expected_version": str(session.version)},
    )
    assert response.status_code == 403
    assert snapshot(env) == before


def test_form_post_with_csrf_decides(browser: TestClient, env: WebEnv) -> None:
    """With the CSRF token from the page, the same decision goes through."""
    session = env.new_session()
    login(browser, env.human_token)
    token = csrf_of(browser, f"/sessions/{session.id}")
    response = browser.post(
        f"/sessions/{session.id}/decide",
        follow_redirects=False,
        data={"action": "pause", "expected_version": str(session.version), "csrf_token": token},
    )
    assert response.status_code == 303
    assert env.orch.get(session.id).paused


def test_cookie_api_write_needs_the_csrf_header(browser: TestClient, env: WebEnv) -> None:
    """An API write with only the cookie needs X-CSRF-Token; the bearer token does not."""
    session = env.new_session()
    login(browser, env.human_token)
    url = f"/api/sessions/{session.id}/pause"
    assert browser.post(url, json={}).status_code == 403
    response = browser.post(url, json={}, headers={"X-CSRF-Token": csrf_of(browser)})
    assert response.status_code == 200 and response.json()["paused"]


def test_logout_clears_the_login(browser: TestClient, env: WebEnv) -> None:
    """After logging out, pages redirect to the login form again."""
    login(browser, env.human_token)
    browser.post("/logout", data={"csrf_token": csrf_of(browser)})
    assert browser.get("/", follow_redirects=False).status_code == 303


def test_revoked_token_logs_the_browser_out(browser: TestClient, env: WebEnv) -> None:
    """Revoking a human's token ends the logins made with it at the next request."""
    _, token = env.orch.add_principal("human", "bob")
    login(browser, token)
    assert browser.get("/api/me").json()["name"] == "bob"
    env.orch.revoke_principal("bob")
    assert browser.get("/api/me").status_code == 401


def test_unknown_host_is_refused(browser: TestClient, env: WebEnv) -> None:
    """A request for a host name we don't serve (DNS rebinding) is a 400."""
    response = browser.get("/api/sessions", headers={**env.bearer, "Host": "evil.example"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_host"


def test_cross_origin_write_is_refused(browser: TestClient, env: WebEnv) -> None:
    """A POST whose Origin is another site is a 403, even with a valid token; nothing changes."""
    session = env.new_session()
    before = snapshot(env)
    response = browser.post(
        f"/api/sessions/{session.id}/pause",
        json={},
        headers={**env.bearer, "Origin": "http://evil.example"},
    )
    assert response.status_code == 403 and response.json()["error"]["code"] == "bad_origin"
    assert snapshot(env) == before


def test_same_origin_write_is_allowed(browser: TestClient, env: WebEnv) -> None:
    """A POST from the dashboard's own origin goes through."""
    session = env.new_session()
    response = browser.post(
        f"/api/sessions/{session.id}/pause",
        json={},
        headers={**env.bearer, "Origin": "http://testserver"},
    )
    assert response.status_code == 200
