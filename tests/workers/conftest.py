"""Fixtures for worker tests: a fast project on SQLite or a fresh PostgreSQL database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from phasegate.domain.principal import Principal
from phasegate.orchestrator import Orchestrator
from tests.conftest import postgres_database
from tests.workers.fleet import Fleet, make_fast_project, make_script_dir


def _open(tmp_path: Path, url: str) -> Orchestrator:
    return Orchestrator.open(make_fast_project(tmp_path / "project", url))


@pytest.fixture
def sqlite_orch(tmp_path: Path) -> Iterator[Orchestrator]:
    """An orchestrator on a grep-tested project on SQLite."""
    orch = _open(tmp_path, f"sqlite:///{tmp_path / 'phasegate.db'}")
    yield orch
    orch.close()


@pytest.fixture
def postgres_orch(tmp_path: Path) -> Iterator[Orchestrator]:
    """An orchestrator on a grep-tested project on a fresh PostgreSQL database."""
    for url in postgres_database():
        orch = _open(tmp_path, url)
        yield orch
        orch.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fast_orch(request: pytest.FixtureRequest) -> Orchestrator:
    """The same, once on each database."""
    orch: Orchestrator = request.getfixturevalue(f"{request.param}_orch")
    return orch


@pytest.fixture
def reviewer(fast_orch: Orchestrator) -> Principal:
    return fast_orch.add_principal("human", "reviewer")[0]


@pytest.fixture
def fleet_factory(tmp_path: Path) -> Iterator[Callable[[Orchestrator], Fleet]]:
    """Makes a Fleet of worker processes; kills whatever is left at the end."""
    fleets: list[Fleet] = []

    def make(orch: Orchestrator) -> Fleet:
        logs = tmp_path / f"logs-{len(fleets)}"
        logs.mkdir()
        fleets.append(Fleet(orch, make_script_dir(tmp_path / f"script-{len(fleets)}"), logs))
        return fleets[-1]

    yield make
    for fleet in fleets:
        fleet.stop_all()
