"""One-time login links: a fragment-borne code that logs a human in once, within ten minutes."""

from __future__ import annotations

import os
import re
import subprocess
from datetime import timedelta
from urllib.parse import urlsplit

import httpx
import pytest
from starlette.testclient import TestClient

from phasegate.entrypoints.web import create_app
from phasegate.entrypoints.web.auth import COOKIE_NAME
from phasegate.entrypoints.web.login_links import LINK_TTL, issue_login_link
from phasegate.errors import PermissionDenied
from phasegate.feed import EventFeed
from phasegate.orchestrator import Orchestrator
from phasegate.timekeeping import utcnow
from tests.web.conftest import PHASEGATE, WebEnv, served, served_project

BASE = "http://testserver"


def code_of(link: str) -> str:
    fragment = urlsplit(link).fragment
    assert fragment.startswith("code=")
    return fragment.removeprefix("code=")


def use_link(client: TestClient, link: str) -> tuple[int, str, str | None]:
    """Do what the link page's script does: load it, then post the fragment's code.

    Returns the status, the page (or the redirect target) and the login cookie set, if any.
    """
    client.cookies.clear()
    parts = urlsplit(link)
    page = client.get(f"{parts.path}?{parts.query}" if parts.query else parts.path)
    assert page.status_code == 200
    csrf = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
    next_path = re.search(r'name="next" value="([^"]*)"', page.text)
    assert csrf and next_path
    answer = client.post(
        "/login/link",
        data={"login_csrf": csrf.group(1), "next": next_path.group(1), "code": code_of(link)},
        follow_redirects=False,
    )
    shown = answer.headers.get("location", "") if answer.status_code == 303 else answer.text
    return answer.status_code, shown, answer.cookies.get(COOKIE_NAME)


def test_a_link_logs_its_human_in_once_and_then_says_how_to_get_another(
    env: WebEnv, client: TestClient
) -> None:
    """The first use sets the login cookie and lands on the page; the second gets a clear 410."""
    session = env.new_session()
    link = issue_login_link(env.orch, env.human, BASE, f"/sessions/{session.id}")

    status, target, cookie = use_link(client, link)
    assert (status, target) == (303, f"/sessions/{session.id}") and cookie
    client.cookies.clear()
    client.cookies.set(COOKIE_NAME, cookie)
    logged_in = client.get(f"/sessions/{session.id}")
    assert logged_in.status_code == 200 and env.human.name in logged_in.text

    status, page, cookie = use_link(client, link)
    assert status == 410 and cookie is None
    assert "used already" in page and "phasegate login-link --url http://testserver" in page


def test_an_expired_link_is_refused_with_a_clear_page(env: WebEnv, client: TestClient) -> None:
    """A link issued more than ten minutes ago gets 410 and no login, even unused."""
    past = Orchestrator(
        env.orch.project, env.orch.db, clock=lambda: utcnow() - LINK_TTL - timedelta(seconds=5)
    )
    link = issue_login_link(past, env.human, BASE)
    status, page, cookie = use_link(client, link)
    assert status == 410 and cookie is None
    assert "expired" in page and "phasegate login-link" in page


def test_an_unknown_or_missing_code_is_refused(env: WebEnv, client: TestClient) -> None:
    """A code that was never issued (or none) gets 400 and the way to a new link."""
    real = issue_login_link(env.orch, env.human, BASE)
    for code in (code_of(real)[:-3] + "xyz", ""):
        status, page, cookie = use_link(client, real.split("#")[0] + "#code=" + code)
        assert status == 400 and cookie is None
        assert "not valid" in page and "phasegate login-link" in page
    status, _, cookie = use_link(client, real)  # the near miss did not use the real one up
    assert status == 303 and cookie


def test_a_post_without_the_pages_csrf_cookie_leaves_the_link_unused(
    env: WebEnv, client: TestClient
) -> None:
    """A code posted from elsewhere (no login-form cookie) is refused and still works after."""
    link = issue_login_link(env.orch, env.human, BASE)
    client.cookies.clear()
    forged = client.post(
        "/login/link", data={"login_csrf": "x", "code": code_of(link)}, follow_redirects=False
    )
    assert forged.status_code == 403 and COOKIE_NAME not in forged.cookies
    assert use_link(client, link)[0] == 303


def test_the_link_carries_a_fresh_code_never_the_token(env: WebEnv) -> None:
    """The token is nowhere in the link, the code only in the fragment, and each link differs."""
    first = issue_login_link(env.orch, env.human, BASE, "/sessions/abc")
    second = issue_login_link(env.orch, env.human, BASE, "/sessions/abc")
    assert env.human_token not in first
    parts = urlsplit(first)
    assert (parts.path, parts.query) == ("/login/link", "next=/sessions/abc")
    assert code_of(first) not in parts.path + parts.query and code_of(first) != code_of(second)
    assert len(code_of(first)) >= 40  # 256 random bits


def test_no_link_for_an_agent_or_a_human_with_a_passphrase(env: WebEnv) -> None:
    """A link is one factor: an agent never gets one, nor a human whose login needs more."""
    with pytest.raises(PermissionDenied, match="agent"):
        issue_login_link(env.orch, env.agent, BASE)
    carol, _ = env.orch.add_principal("human", env.orch.unused_principal_name("carol"))
    env.orch.principals.set_passphrase(carol.name, "correct horse battery staple")
    with pytest.raises(PermissionDenied, match="passphrase"):
        issue_login_link(env.orch, carol, BASE)


def test_a_guarded_server_refuses_a_link_and_asks_for_the_passphrase(env: WebEnv) -> None:
    """On a guarded server a link is not enough: 403, no cookie, the way to the login form."""
    app = create_app(
        env.orch,
        EventFeed(env.orch, poll_interval=0.1),
        allowed_hosts=["testserver"],
        secret=b"test-secret",
        guarded=True,
        insecure_remote=True,
    )
    with TestClient(app) as guarded:
        status, page, cookie = use_link(guarded, issue_login_link(env.orch, env.human, BASE))
    assert status == 403 and cookie is None
    assert "passphrase" in page and "/login" in page


def test_cli_login_link_prints_a_working_link_and_refuses_unknown_names(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """`phasegate login-link --url` prints a link the running server accepts; bad names fail."""
    with served_project(tmp_path_factory, "login-link") as project, served(project) as server:
        cli_env = {**os.environ, "PHASEGATE_TOKEN": project.human_token}
        done = subprocess.run(
            [PHASEGATE, "login-link", "--url", server.url],
            cwd=project.root,
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        [link] = [w for w in done.stdout.split() if w.startswith(server.url)]
        assert project.human_token not in done.stdout
        with httpx.Client(base_url=server.url, follow_redirects=True) as browser:
            page = browser.get("/login/link")
            csrf = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
            assert csrf
            answer = browser.post(
                "/login/link",
                data={"login_csrf": csrf.group(1), "next": "/", "code": code_of(link)},
                headers={"Origin": server.url},
            )
            assert answer.status_code == 200 and str(answer.url) == f"{server.url}/"
            assert "log out" in answer.text

        project.orch.add_principal("human", "dave")
        for_dave = subprocess.run(
            [PHASEGATE, "login-link", "--name", "dave", "--url", server.url],
            cwd=project.root,
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert for_dave.returncode == 0 and "login link for dave" in for_dave.stdout

        unknown = subprocess.run(
            [PHASEGATE, "login-link", "--name", "nobody", "--url", server.url],
            cwd=project.root,
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert unknown.returncode == 1 and "Traceback" not in unknown.stderr
        assert "no active human named 'nobody'" in unknown.stderr
        assert len(unknown.stderr.strip().splitlines()) == 1
