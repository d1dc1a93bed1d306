"""The CLI contract: JSON shapes, unique prefixes, and one-line errors that write nothing."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from engine_helpers import bare_session, make_project_repo, phasegate, run_cli

from phasegate.config import open_project
from phasegate.orchestrator import Orchestrator

SESSION_KEYS = {
    "id",
    "task",
    "workflow",
    "phase",
    "version",
    "fix_attempts",
    "waiting_on",
    "paused",
}
UNREACHABLE = "postgresql://postgres@127.0.0.1:1/x"


def test_json_outputs_have_the_documented_shapes(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """start/show/ls --json print session objects, token add --json prints name, kind, token."""
    root = make_project_repo(tmp_path / "repo")
    monkeypatch.chdir(root)
    monkeypatch.setenv("PHASEGATE_DATABASE_URL", db_url)
    assert phasegate("init")[0] == 0
    started = json.loads(run_cli(root, "start", "design.md", "--json", db_url=db_url).stdout)
    assert started.keys() >= SESSION_KEYS
    assert (started["phase"], started["waiting_on"], started["paused"]) == (
        "generating_tests",
        "agent:tester",
        False,
    )
    shown = json.loads(phasegate("show", started["id"][:6], "--json")[1])
    assert shown.keys() >= SESSION_KEYS and shown["id"] == started["id"]
    listed = json.loads(phasegate("ls", "--json")[1])
    assert [s["id"] for s in listed] == [started["id"]] and listed[0].keys() >= SESSION_KEYS
    token = json.loads(phasegate("token", "add", "--agent", "bot", "--role", "coder", "--json")[1])
    assert {"name", "kind", "token"} <= token.keys()
    assert (token["name"], token["kind"]) == ("bot", "agent") and token["token"]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Orchestrator]:
    """An initialised SQLite project (the current directory), with an orchestrator on it."""
    root = make_project_repo(tmp_path / "repo")
    monkeypatch.chdir(root)
    assert phasegate("init")[0] == 0
    orch = Orchestrator.open(open_project(root))
    yield orch
    orch.close()


def _row_counts(orch: Orchestrator) -> dict[str, int]:
    with orch.db.read() as conn:
        return {
            t: int(conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one())
            for t in ("tasks", "sessions", "events", "principals", "idempotency_keys")
        }


def _ambiguous_prefix(orch: Orchestrator) -> str:
    firsts: Counter[str] = Counter()
    while not firsts or firsts.most_common(1)[0][1] < 2:
        firsts[bare_session(orch).id[0]] += 1
    return firsts.most_common(1)[0][0]


def _assert_one_line_error(code: int, out: str, err: str, *needles: str) -> None:
    assert code == 1, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("phasegate: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_bad_references_are_one_line_errors_that_write_nothing(project: Orchestrator) -> None:
    """Unknown and ambiguous sessions, unknown tasks and missing designs: exit 1, one line."""
    prefix = _ambiguous_prefix(project)
    cases = [
        (("show", "0123456789abcdef"), "no session '0123456789abcdef'"),
        (("approve", "not-hex"), "no session 'not-hex'"),
        (("show", prefix), f"session prefix '{prefix}' matches"),
        (("pause", prefix), "type more of the id"),
        (("start", "no-such-task"), "no task 'no-such-task'"),
        (("task", "add", "missing.md"), "missing.md does not exist"),
        (("log", "fff0000"), "no session"),
    ]
    for args, needle in cases:
        before = _row_counts(project)
        _assert_one_line_error(*phasegate(*args), needle)
        assert _row_counts(project) == before, args


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"test_command = \n", "can't read"),
        (b'test_command = "\xff"\n', "can't read"),
        (b"no_such_setting = 1\n", "is invalid: no_such_setting"),
        (b"max_fix_attempts = 0\n", "is invalid: max_fix_attempts"),
    ],
)
def test_a_broken_config_is_a_one_line_error(
    project: Orchestrator, content: bytes, needle: str
) -> None:
    """A malformed, undecodable or invalid phasegate.toml names the file and changes nothing."""
    before = _row_counts(project)
    (project.project.root / "phasegate.toml").write_bytes(content)
    _assert_one_line_error(*phasegate("start", "design.md"), "phasegate.toml", needle)
    assert _row_counts(project) == before


def test_an_unreachable_database_is_a_one_line_error(
    project: Orchestrator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database URL nobody answers says so in one line and says what to check."""
    monkeypatch.setenv("PHASEGATE_DATABASE_URL", UNREACHABLE)
    result = run_cli(project.project.root, "start", "design.md", db_url=UNREACHABLE)
    _assert_one_line_error(
        result.returncode,
        result.stdout,
        result.stderr,
        "can't reach the database",
        "127.0.0.1:1",
        "PHASEGATE_DATABASE_URL",
    )
    monkeypatch.delenv("PHASEGATE_DATABASE_URL")
    assert _row_counts(project)["sessions"] == 0


def test_unique_prefixes_reach_the_session(project: Orchestrator) -> None:
    """Any unique prefix of a session id works for show and decisions."""
    code, out, _ = phasegate("start", "design.md", "--json")
    sid = json.loads(out)["id"]
    code, out, err = phasegate("pause", sid[:10])
    assert code == 0, err
    assert project.get(sid).paused
