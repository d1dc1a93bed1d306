"""A checkout that names a guarded server never grows a second, local phasegate."""

from __future__ import annotations

from pathlib import Path

import pytest
from engine_helpers import run_cli


@pytest.mark.parametrize(
    "command", [("start", "design.md"), ("task", "add", "design.md"), ("log", "abcd")]
)
def test_commands_that_need_the_state_point_to_the_server_and_create_nothing(
    project_root: Path, command: tuple[str, ...]
) -> None:
    """One line naming the server and where the command works; no local database appears."""
    (project_root / "phasegate.toml").write_text(
        (project_root / "phasegate.toml").read_text() + '\n[server]\nurl = "http://127.0.0.1:9"\n'
    )
    done = run_cli(project_root, *command)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip() == (
        "phasegate: this project's sessions live with the guarded server at http://127.0.0.1:9; "
        "here, use ls, show and the decisions (or the dashboard); run this command on the "
        "server, as its user, with --state-dir"
    )
    assert not (project_root / ".phasegate" / "phasegate.db").exists()
