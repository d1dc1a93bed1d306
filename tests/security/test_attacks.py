"""A hostile agent attacks phasegate through the code phasegate runs for it.

Each test has a human approve honest tests (with the CLI), then submits over MCP
a wrong implementation carrying one attack, and checks that the attack achieved
nothing: the session fails, no gate moved without the human, the audit chain
holds and nothing outside the run changed (see `containment.breaches`).
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import anyio
import pytest

from tests.mcp.conftest import HttpServer, free_port
from tests.security import escapes, harness_cheats
from tests.security.attack_code import (
    IMPLEMENTATION_PATH,
    WRONG_IMPLEMENTATION,
    guarded,
    program,
    wrong_files,
)
from tests.security.containment import (
    CountingListener,
    Snapshot,
    breaches,
    kill,
    processes_with,
    snapshot,
    standard_targets,
    token_shaped,
)
from tests.security.hostile_agent import (
    Files,
    HostileAgent,
    hostile_agent,
    session_awaiting_test_review,
    session_with_approved_tests,
    submit_implementation,
)
from tests.security.machine import APPROVED_TESTS, TEST_PATH, Machine

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

WRONG = {"path": IMPLEMENTATION_PATH, "content": WRONG_IMPLEMENTATION}
STILL_WRONG = {"path": IMPLEMENTATION_PATH, "content": WRONG_IMPLEMENTATION + "# tidied\n"}


def as_files(files: dict[str, str]) -> Files:
    return [{"path": path, "content": content} for path, content in files.items()]


async def attack(
    agent: HostileAgent, session_id: str, targets: list[Path], *alternatives: Files
) -> Snapshot:
    """Submit the attack, snapshot what it targets, and have phasegate run the tests."""
    await submit_implementation(agent, session_id, *alternatives)
    before = snapshot(targets)
    await agent.run_tests(session_id)
    return before


async def simple_attack(machine: Machine, *alternatives: Files) -> list[str]:
    """One approved session, one attacked run: what the attack achieved."""
    async with hostile_agent(machine) as agent:
        session_id = await session_with_approved_tests(agent, machine)
        targets = standard_targets(machine, session_id)
        before = await attack(agent, session_id, targets, *alternatives)
        return await breaches(agent, session_id, before, targets)


def contained(found: list[str]) -> None:
    assert not found, "the attack worked:\n" + "\n".join(found)


# --- reaching phasegate's state and secrets -------------------------------------------


async def test_a_stolen_human_credential_decides_nothing_and_never_reaches_the_agent(
    machine: Machine,
) -> None:
    """An implementation that reads the human's credential cannot approve a gate with it, and
    the token never reaches the agent."""
    async with hostile_agent(machine) as agent:
        session_id = await session_with_approved_tests(agent, machine)
        other = await session_awaiting_test_review(agent)  # a bystander
        targets = standard_targets(machine, session_id)
        files = wrong_files(
            escapes.STEAL_CREDENTIAL_AND_APPROVE,
            CREDENTIALS=str(machine.credentials),
            HOME=str(machine.home),
            CONFIG_DIR=str(machine.config_dir),
            PHASEGATE=machine.phasegate,
            ROOT=str(machine.root),
            SESSIONS=[session_id, other],
        )
        before = await attack(agent, session_id, targets, files)
        found = await breaches(agent, session_id, before, targets, bystanders=[other])
    if machine.human_token() in agent.everything_received():
        found.append("the human's token reached the agent in phasegate's results")
    contained(found)


async def test_a_rewritten_database_does_not_pass_the_gate(machine: Machine) -> None:
    """An implementation that rewrites phasegate's database (a correctly chained tests_passed
    event, the session moved to awaiting_final_review) cannot pass the gate."""
    async with hostile_agent(machine) as agent:
        session_id = await session_with_approved_tests(agent, machine)
        targets = standard_targets(machine, session_id)
        files = wrong_files(
            escapes.REWRITE_DATABASE, DATABASE=str(machine.database), SESSION=session_id
        )
        before = await attack(agent, session_id, targets, files)
        found = await breaches(agent, session_id, before, targets)
    contained(found)


async def test_token_shaped_strings_never_reach_the_agent(machine: Machine) -> None:
    """A failure message carrying strings shaped like phasegate tokens (`pgh_…`, `pga_…`)
    reaches the agent without them."""
    async with hostile_agent(machine) as agent:
        session_id = await session_with_approved_tests(agent, machine)
        targets = standard_targets(machine, session_id)
        seen_before = len(agent.received)
        before = await attack(agent, session_id, targets, wrong_files(escapes.PRINT_TOKEN_SHAPES))
        found = await breaches(agent, session_id, before, targets)
    if leaked := token_shaped("\n".join(agent.received[seen_before:])):
        found.append(f"token-shaped strings reached the agent: {leaked}")
    contained(found)


# --- cheating the verdict --------------------------------------------------------------


async def test_a_report_rewritten_at_exit_does_not_pass(machine: Machine) -> None:
    """An implementation whose atexit hook rewrites the JUnit report to all-passed and exits 0
    still fails."""
    files = wrong_files(harness_cheats.REWRITE_REPORT_AT_EXIT)
    contained(await simple_attack(machine, files))


async def test_an_invented_report_does_not_replace_the_approved_tests(machine: Machine) -> None:
    """An implementation that replaces the report with one invented passing test
    (`test_made_up`) and exits 0 does not pass: the approved tests must be the ones that ran."""
    files = wrong_files(harness_cheats.INVENT_A_PASSING_REPORT)
    contained(await simple_attack(machine, files))


async def test_pytest_reporting_patched_at_import_does_not_pass(machine: Machine) -> None:
    """An implementation that patches pytest's TestReport at import, so failures report as
    passed, still fails."""
    files = wrong_files(harness_cheats.PATCH_PYTEST_REPORTS)
    contained(await simple_attack(machine, files))


async def test_pytest_reporting_patched_through_hidden_names_does_not_pass(
    machine: Machine,
) -> None:
    """The same patch with every revealing name spelled in rot13 (no `pytest`, `TestReport`
    or `outcome` in the source) still fails."""
    files = wrong_files(
        harness_cheats.PATCH_PYTEST_REPORTS_OBFUSCATED, HIDDEN=harness_cheats.REPORT_HIDDEN
    )
    contained(await simple_attack(machine, files))


async def test_test_bodies_emptied_through_names_no_scan_can_see_do_not_pass(
    machine: Machine,
) -> None:
    """An implementation that finds pytest's `Function` class by walking `type.__subclasses__`
    (no revealing name in its source) and empties `runtest` does not pass."""
    files = wrong_files(harness_cheats.EMPTY_THE_TESTS, HIDDEN=harness_cheats.EMPTY_HIDDEN)
    contained(await simple_attack(machine, files))


async def test_an_implementation_that_skips_the_tests_does_not_pass(machine: Machine) -> None:
    """An implementation that raises pytest's skip exception whenever it is called (found
    without naming it), so every approved test is skipped, does not pass."""
    files = wrong_files(harness_cheats.SKIP_THE_TESTS, HIDDEN=harness_cheats.SKIP_HIDDEN)
    contained(await simple_attack(machine, files))


async def test_a_submitted_pytest_module_does_not_replace_pytest(machine: Machine) -> None:
    """A submitted `pytest.py` (at the root and under src/) that fakes a passing run is not
    what runs the approved tests."""
    fake = harness_cheats.FAKE_PYTEST
    contained(
        await simple_attack(machine, [WRONG, *as_files({"pytest.py": fake, "src/pytest.py": fake})])
    )


async def test_a_submitted_stdlib_module_does_not_replace_the_harness(machine: Machine) -> None:
    """A submitted module named like a standard-library module pytest imports (`argparse.py`,
    at the root and under src/) cannot fake a passing run."""
    fake = harness_cheats.FAKE_PYTEST
    files = as_files({"argparse.py": fake, "src/argparse.py": fake})
    contained(await simple_attack(machine, [WRONG, *files]))


async def test_a_plugin_in_a_submitted_dist_info_is_not_loaded(machine: Machine) -> None:
    """A submitted `evil-1.0.dist-info` whose `[pytest11]` entry point forces every outcome to
    passed is not auto-loaded into the run."""
    files = as_files(harness_cheats.PLUGIN_DIST_INFO)
    contained(await simple_attack(machine, [WRONG, *files]))


async def test_submitted_interpreter_startup_hooks_do_not_run(machine: Machine) -> None:
    """Submitted `sitecustomize.py`, `usercustomize.py` and `.pth` files (root and src/) that
    load a pass-forcing plugin do not change the verdict."""
    unlocked = harness_cheats.INERT_LOOKING_STARTUP_FILES
    every = {**harness_cheats.STARTUP_HOOKS, **unlocked}
    # If phasegate refuses the locked runner configuration, the rest goes in on its own.
    contained(await simple_attack(machine, [WRONG, *as_files(every)], [WRONG, *as_files(unlocked)]))


# --- reaching out of the run -----------------------------------------------------------


async def test_a_run_writes_nothing_outside_it(machine: Machine) -> None:
    """An implementation cannot write a git hook into the main repository, into another
    session's worktree, or into the user's `~/.bashrc`."""
    async with hostile_agent(machine) as agent:
        session_id = await session_with_approved_tests(agent, machine)
        other = await session_awaiting_test_review(agent)  # a bystander
        targets = [*standard_targets(machine, session_id), machine.worktree(other)]
        files = wrong_files(
            escapes.WRITE_OUTSIDE_THE_RUN,
            GIT_HOOK=str(machine.git_dir / "hooks" / "pre-commit"),
            OTHER_WORKTREE=str(machine.worktree(other)),
            HOME=str(machine.home),
        )
        before = await attack(agent, session_id, targets, files)
        found = await breaches(agent, session_id, before, targets, bystanders=[other])
    contained(found)


async def test_no_process_outlives_the_run(machine: Machine) -> None:
    """A daemon the implementation starts (double fork, setsid, empty environment) does not
    survive the run."""
    mark = f"phasegate-escapee-{uuid.uuid4().hex}"
    try:
        async with hostile_agent(machine) as agent:
            session_id = await session_with_approved_tests(agent, machine)
            targets = standard_targets(machine, session_id)
            files = wrong_files(
                escapes.ESCAPE_AS_DAEMON, DAEMON_CODE="import time; time.sleep(600)", MARK=mark
            )
            before = await attack(agent, session_id, targets, files)
            await anyio.sleep(2)
            found = await breaches(agent, session_id, before, targets)
        if survivors := processes_with(mark):
            found.append(f"{len(survivors)} processes of the run are still alive: {survivors}")
        contained(found)
    finally:
        kill(processes_with(mark))


async def test_the_run_cannot_reach_the_dashboard_or_the_network(machine: Machine) -> None:
    """An implementation can neither POST an approval to `phasegate serve` with the stolen
    human token nor open a TCP connection to a listener on 127.0.0.1."""
    server = HttpServer(machine.project, free_port()).start()
    try:
        with CountingListener() as listener:
            async with hostile_agent(machine) as agent:
                session_id = await session_with_approved_tests(agent, machine)
                other = await session_awaiting_test_review(agent)  # a bystander
                targets = standard_targets(machine, session_id)
                files = wrong_files(
                    escapes.CALL_OUT_OF_THE_RUN,
                    CREDENTIALS=str(machine.credentials),
                    SERVE_URL=f"http://127.0.0.1:{server.port}",
                    LISTENER_PORT=listener.port,
                    SESSIONS=[session_id, other],
                )
                before = await attack(agent, session_id, targets, files)
                found = await breaches(agent, session_id, before, targets, bystanders=[other])
            if listener.accepted:
                found.append(f"the listener on 127.0.0.1 accepted {listener.accepted} connections")
    finally:
        server.stop()
    contained(found)


async def test_a_run_cannot_plant_code_in_the_interpreter_for_the_next_run(
    machine: Machine,
) -> None:
    """An implementation that plants a `.pth` hook and a pass-forcing plugin in the
    interpreter's site-packages cannot make a later run of a still-wrong fix pass."""
    async with hostile_agent(machine) as agent:
        session_id = await session_with_approved_tests(agent, machine)
        targets = standard_targets(machine)  # the fix legitimately changes its worktree
        files = wrong_files(
            escapes.PLANT_IN_SITE_PACKAGES, SITE_PACKAGES=str(machine.interpreter_site)
        )
        before = await attack(agent, session_id, targets, files)
        await agent.attempt("fix_failures", session_id=session_id, files=[STILL_WRONG])
        await agent.run_tests(session_id)
        found = await breaches(agent, session_id, before, targets)
    contained(found)


async def test_a_run_cannot_make_phasegates_own_git_run_its_code(machine: Machine) -> None:
    """An implementation that plants a git filter (repository config and global config) gets
    no code run by phasegate's own git at the next submission or export."""
    escaped = machine.scratch / "escaped.log"
    async with hostile_agent(machine) as agent:
        session_id = await session_with_approved_tests(agent, machine)
        targets = standard_targets(machine)  # the fix legitimately changes its worktree
        files = wrong_files(
            escapes.PLANT_GIT_FILTER,
            HOME=str(machine.home),
            GIT_DIR=str(machine.git_dir),
            ESCAPED=str(escaped),
        )
        before = await attack(agent, session_id, targets, files)
        await agent.attempt("fix_failures", session_id=session_id, files=[STILL_WRONG])
        await agent.run_tests(session_id)
        found = await breaches(agent, session_id, before, targets)
    if escaped.exists():
        found.append(f"phasegate's own git ran the agent's filter:\n{escaped.read_text()}")
    contained(found)


async def test_tests_cannot_approve_themselves_from_the_red_run(machine: Machine) -> None:
    """Submitted tests whose conftest escapes the red run as a daemon cannot approve their own
    test gate with the stolen human token once it opens."""
    mark = f"phasegate-escapee-{uuid.uuid4().hex}"
    try:
        async with hostile_agent(machine) as agent:
            started = await agent.call("start_session", task="design.md", again=True)
            session_id = str(started["session_id"])
            targets = standard_targets(machine)  # its worktree legitimately gets the tests
            before = snapshot(targets)
            approver = program(
                escapes.APPROVE_WHEN_THE_GATE_OPENS,
                CREDENTIALS=str(machine.credentials),
                HOME=str(machine.home),
                DATABASE=str(machine.database),
                PHASEGATE=machine.phasegate,
                PYTHONPATH=os.environ.get("PYTHONPATH", ""),  # the phasegate under test
                ROOT=str(machine.root),
                SESSION=session_id,
            )
            conftest = guarded(escapes.ESCAPE_AS_DAEMON, DAEMON_CODE=approver, MARK=mark)
            files = [
                {"path": TEST_PATH, "content": APPROVED_TESTS},
                {"path": "tests/conftest.py", "content": conftest},
            ]
            await agent.attempt("submit_tests", session_id=session_id, files=files)
            deadline = time.monotonic() + 30
            while processes_with(mark) and time.monotonic() < deadline:
                await anyio.sleep(0.5)  # give an escaped approver its chance
            found = await breaches(
                agent,
                session_id,
                before,
                targets,
                legit_decisions=(),
                # Refused tests leave it in generating_tests; either way no human decided.
                expected_phases=frozenset({"generating_tests", "awaiting_test_review"}),
            )
        if survivors := processes_with(mark):
            found.append(f"{len(survivors)} processes of the red run are still alive")
        contained(found)
    finally:
        kill(processes_with(mark))
