"""Idempotent decisions: a decision retried with its key returns the first result, once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import drive, event_count, make_project_repo, phasegate, run_cli, start

from phasegate.config import open_project
from phasegate.domain.principal import Principal
from phasegate.errors import StorageError
from phasegate.orchestrator import Orchestrator


def test_approve_twice_with_one_key_returns_the_same_version_and_one_event(
    orch: Orchestrator, human: Principal
) -> None:
    """The retry of an approve (same key, same version seen) is no conflict: the first result."""
    seen = drive(orch, start(orch, human).id, "awaiting_test_review")
    events = event_count(orch, seen.id)
    first = orch.decide(
        seen.id, "approve", human, expected_version=seen.version, idempotency_key="a-1"
    )
    again = orch.decide(
        seen.id, "approve", human, expected_version=seen.version, idempotency_key="a-1"
    )
    assert (
        (again.version, again.phase)
        == (first.version, first.phase)
        == (
            seen.version + 1,
            "generating_implementation",
        )
    )
    assert event_count(orch, seen.id) == events + 1


def test_a_reject_retried_after_success_returns_the_original_result(
    orch: Orchestrator, human: Principal
) -> None:
    """The retry saw the version before the reject, yet gets the reject's result, not a conflict."""
    seen = drive(orch, start(orch, human).id, "awaiting_test_review")
    first = orch.decide(
        seen.id,
        "reject",
        human,
        comment="test the negative case",
        expected_version=seen.version,
        idempotency_key="r-1",
    )
    events = event_count(orch, seen.id)
    again = orch.decide(
        seen.id,
        "reject",
        human,
        comment="test the negative case",
        expected_version=seen.version,
        idempotency_key="r-1",
    )
    assert (again.version, again.phase, again.paused) == (
        seen.version + 1,
        "generating_tests",
        False,
    )
    assert first.version == again.version and again.context == first.context
    assert event_count(orch, seen.id) == events


@pytest.fixture
def cli_project(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Path, str, Orchestrator]]:
    """An initialised project (the current directory) and a session at the test review."""
    root = make_project_repo(tmp_path / "repo")
    monkeypatch.chdir(root)
    monkeypatch.setenv("PHASEGATE_DATABASE_URL", db_url)
    assert phasegate("init")[0] == 0
    orch = Orchestrator.open(open_project(root))
    human = orch.add_principal("human", "setup")[0]
    sid = drive(orch, start(orch, human).id, "awaiting_test_review").id
    yield root, sid, orch
    orch.close()


def test_the_cli_idempotency_key_returns_the_first_result(
    cli_project: tuple[Path, str, Orchestrator], db_url: str
) -> None:
    """`phasegate approve --idempotency-key K` run twice approves once; both print that version."""
    root, sid, orch = cli_project
    events = event_count(orch, sid)
    runs = [
        run_cli(root, "approve", sid[:8], "--idempotency-key", "cli-1", "--json", db_url=db_url)
        for _ in range(2)
    ]
    assert [r.returncode for r in runs] == [0, 0], [r.stderr for r in runs]
    first, again = (json.loads(r.stdout) for r in runs)
    assert (again["version"], again["phase"]) == (first["version"], "generating_implementation")
    assert event_count(orch, sid) == events + 1
    other = run_cli(root, "approve", sid[:8], db_url=db_url)  # a fresh key: a new decision
    assert other.returncode == 1 and "approve" in other.stderr


def test_the_cli_retries_a_decision_whose_commit_outcome_is_unknown(
    cli_project: tuple[Path, str, Orchestrator], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commit landed but its acknowledgement was lost: the CLI asks again and shows it."""
    _root, sid, orch = cli_project
    events = event_count(orch, sid)
    real = Orchestrator.decide
    calls: list[str | None] = []

    def lost_ack(self: Orchestrator, *args: Any, **kwargs: Any) -> Any:
        session = real(self, *args, **kwargs)
        calls.append(kwargs.get("idempotency_key"))
        if len(calls) == 1:
            raise StorageError(
                "the database connection broke; whether the change landed is unknown"
            )
        return session

    monkeypatch.setattr(Orchestrator, "decide", lost_ack)
    code, out, err = phasegate("approve", sid[:8], "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert (shown["phase"], shown["version"]) == (
        "generating_implementation",
        orch.get(sid).version,
    )
    assert len(calls) == 2 and calls[0] == calls[1] and calls[0]
    assert event_count(orch, sid) == events + 1
