"""Migrations: processes that start together on a new database take turns."""

from __future__ import annotations

import subprocess
import sys

from phasegate.store.database import Database

MIGRATE = (
    "import sys; from phasegate.store.database import Database; Database(sys.argv[1]).migrate()"
)


def test_four_processes_migrating_one_new_database_all_succeed(db_url: str) -> None:
    """Four processes migrate the same empty database at once; all succeed, once."""
    procs = [
        subprocess.Popen([sys.executable, "-c", MIGRATE, db_url], stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    errors = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    assert Database(db_url).migrate() == []  # nothing left to apply
