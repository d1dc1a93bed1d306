"""Workflows declare artifacts and locks: each contradiction is the one line the user sees.

Each case writes a phasegate.toml with a custom workflow into a real git
repository and runs the installed `phasegate workflow check` / `workflow show`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import make_project_repo

from phasegate.domain.builtin_workflows import SPEC, TDD, workflow_from_mapping

PHASEGATE = str(Path(sys.executable).with_name("phasegate"))


def phase(name: str, kind: str, **extra: Any) -> str:
    fields = ", ".join(f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {v!r}".replace("'", '"')
                       for k, v in extra.items())  # fmt: skip
    return f'{{ name = "{name}", kind = "{kind}"{", " + fields if fields else ""} }}'


def workflow_toml(*, write: dict[str, Any], gate: dict[str, Any], action: str = "submit") -> str:
    """A small custom workflow `mini`: write → review gate → done, plus the final phases."""
    phases = [
        phase("write", "agent", **write),
        phase("review", "human", **gate),
        phase("done", "final"),
        phase("cancelled", "final"),
        phase("failed", "final"),
    ]
    transitions = [
        f'{{ action = "{action}", from = "write", to = "review", actor = "agent" }}',
        '{ action = "approve", from = "review", to = "done", actor = "human" }',
    ]
    return (
        'test_command = "true"\n[workflows.mini]\n'
        f"phases = [{', '.join(phases)}]\n"
        f"transitions = [{', '.join(transitions)}]\n"
    )


def run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PHASEGATE, "--project", str(root), *args],
        cwd=root,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_project_repo(tmp_path / "project")


WITH_TESTS = {"role": "tester", "artifact": "tests"}
CASES = [
    (
        WITH_TESTS,
        {"locks": ["design"]},
        "submit_tests",
        "workflow 'mini': gate 'review' locks 'design', but no phase produces it "
        '(no phase has artifact = "design"); fix the [workflows.mini] table',
    ),
    (
        {"artifact": "tests"},
        {"locks": ["tests"]},
        "submit_tests",
        "workflow 'mini': agent phase 'write' has no role; set role = \"tester\" "
        "(or designer, coder, reviewer); fix the [workflows.mini] table",
    ),
    (
        {"role": "coder", "artifact": "review"},
        {},
        "submit_review",
        "workflow 'mini': agent phase 'write' has role 'coder' and artifact 'review'; a review "
        "is written by a reviewer, and a reviewer writes only reviews; fix the "
        "[workflows.mini] table",
    ),
    (
        WITH_TESTS,
        {"locks": ["implementation"]},
        "submit_tests",
        "workflow 'mini': gate 'review' locks 'implementation'; only design or tests can be "
        "locked; fix the [workflows.mini] table",
    ),
    (
        {"role": "tester", "artifact": "poems"},
        {},
        "submit_tests",
        "workflow 'mini': phase 'write' has unknown artifact 'poems'; use design, tests, "
        "implementation, fix or review; fix the [workflows.mini] table",
    ),
    (
        {**WITH_TESTS, "locks": ["tests"]},
        {},
        "submit_tests",
        "workflow 'mini': phase 'write' locks tests, but only gates (kind human) lock; fix the "
        "[workflows.mini] table",
    ),
    (
        WITH_TESTS,
        {"artifact": "tests"},
        "submit_tests",
        "workflow 'mini': human phase 'review' declares artifact 'tests'; only agent phases "
        "produce artifacts; fix the [workflows.mini] table",
    ),
    (
        WITH_TESTS,
        {"locks": ["tests"]},
        "submit",
        "workflow 'mini': agent phase 'write' produces tests but no 'submit_tests' transition "
        "(actor agent) leaves it; fix the [workflows.mini] table",
    ),
]


@pytest.mark.parametrize(("write", "gate", "action", "expected"), CASES)
def test_each_contradiction_is_one_line(
    repo: Path, write: dict[str, Any], gate: dict[str, Any], action: str, expected: str
) -> None:
    """`workflow check` and `workflow show` print the exact one-line problem and exit 1."""
    (repo / "phasegate.toml").write_text(workflow_toml(write=write, gate=gate, action=action))
    for command in (("workflow", "check"), ("workflow", "show", "mini")):
        done = run(repo, *command)
        assert done.returncode == 1 and done.stdout == "", (done.stdout, done.stderr)
        assert done.stderr == f"phasegate: {expected}\n"


def test_builtin_options_are_checked_in_one_line(repo: Path) -> None:
    """A misspelt option of a built-in workflow names the options it has."""
    (repo / "phasegate.toml").write_text("[workflows.tdd]\nreview_failure = true\n")
    done = run(repo, "workflow", "check")
    assert done.returncode == 1
    assert done.stderr == (
        "phasegate: workflow 'tdd' is built in and has no option 'review_failure'; its options "
        "are review_failures, pre_review, max_fix_attempts (or define the whole workflow with "
        "phases and transitions); fix the [workflows.tdd] table\n"
    )


def test_a_consistent_workflow_checks_and_shows_its_locks(repo: Path) -> None:
    """A valid custom workflow passes the check; show and the diagram say what the gate locks."""
    toml = workflow_toml(write=WITH_TESTS, gate={"locks": ["tests"]}, action="submit_tests")
    (repo / "phasegate.toml").write_text(toml)
    done = run(repo, "workflow", "check")
    assert done.returncode == 0, done.stderr
    assert "workflow mini: ok (5 phases; review locks tests)" in done.stdout
    assert "workflow spec: ok (14 phases; awaiting_design_review locks design, " in done.stdout
    mermaid = run(repo, "workflow", "show", "mini", "--format", "mermaid").stdout
    assert "review --> done: approve · locks tests" in mermaid


def test_a_workflow_from_before_locks_still_locks_its_tests() -> None:
    """A custom workflow that declares no locks keeps locking tests at awaiting_test_review."""
    old = {
        "phases": [
            {"name": "generating_tests", "kind": "agent", "role": "tester", "submission": "tests"},
            {"name": "awaiting_test_review", "kind": "human"},
            {"name": "completed", "kind": "final"},
            {"name": "cancelled", "kind": "final"},
            {"name": "failed", "kind": "final"},
        ],
        "transitions": [
            {"action": "submit_tests", "from": "generating_tests", "to": "awaiting_test_review",
             "actor": "agent"},
            {"action": "approve", "from": "awaiting_test_review", "to": "completed",
             "actor": "human"},
        ],
    }  # fmt: skip
    assert workflow_from_mapping("old", old).locks_at("awaiting_test_review") == ("tests",)
    assert TDD.locks_at("awaiting_test_review") == ("tests",)
    assert SPEC.locks_at("awaiting_design_review") == ("design",)
    assert TDD.gates() == ["awaiting_test_review", "awaiting_human_intervention",
                           "awaiting_final_review"]  # fmt: skip


def test_the_dashboard_diagram_shows_what_each_gate_locks() -> None:
    """The SVG marks each locking gate and labels its approve edge with what it locks."""
    from phasegate.entrypoints.web.diagram import workflow_svg

    svg = str(workflow_svg(SPEC, current="drafting_design"))
    assert 'data-phase="awaiting_design_review" data-locks="design"' in svg
    assert 'data-phase="awaiting_test_review" data-locks="tests"' in svg
    assert "approve · locks design" in svg and "approve · locks tests" in svg
    assert 'data-phase="awaiting_final_review" data-locks' not in svg
