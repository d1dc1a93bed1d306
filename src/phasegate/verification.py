"""Verification: phasegate runs the approved tests itself and records the evidence.

A run happens outside any transaction, under a runner lease kept alive by
heartbeats; its result is recorded only if that lease's epoch is still
current, so a run that lost its lease can't move the session.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import make_url

from phasegate.config import Settings
from phasegate.credentials import config_dir
from phasegate.domain.principal import Principal
from phasegate.domain.session import SYSTEM, Command, Session
from phasegate.domain.workflow import PhaseKind, Workflow
from phasegate.errors import ConfigError, Conflict, InvalidTransition
from phasegate.kernel import Kernel
from phasegate.leases import acquire_for_run, keep_lease, release
from phasegate.store import queries as q
from phasegate.testrun import (
    Limits,
    Sandbox,
    SandboxUnavailable,
    TamperScan,
    TestInventory,
    TestRunError,
    TestRunEvidence,
    collected_inventory,
    run_tests,
    static_inventory,
)
from phasegate.workspace import (
    DEFAULT_TEST_PATTERNS,
    TestPatterns,
    is_protected_path,
    protected_sources,
    snapshot_protected,
    verify_snapshot,
)

Progress = Callable[[str], None]


def test_patterns(settings: Settings) -> TestPatterns:
    tests = settings.tests
    return TestPatterns(
        test_globs=tuple(tests.globs)
        if tests.globs is not None
        else DEFAULT_TEST_PATTERNS.test_globs,
        runner_config=(
            tuple(tests.runner_config)
            if tests.runner_config is not None
            else DEFAULT_TEST_PATTERNS.runner_config
        ),
    )


def sandbox_for(kernel: Kernel, settings: Settings | None = None) -> Sandbox:
    """The sandbox (a session's, else the project's): phasegate's state, config and DB hidden."""
    box = (settings or kernel.project.settings).sandbox
    hide = [kernel.project.state_dir, config_dir(), *map(Path, box.hide)]
    if kernel.db.dialect == "sqlite" and (database := make_url(kernel.db.url).database):
        hide.append(Path(database).parent)
    limits = Limits(
        memory_bytes=box.memory_mb << 20,
        processes=box.max_processes,
        file_bytes=box.max_file_mb << 20,
        cpu_s=box.cpu_s,
    )
    return Sandbox(
        mode=box.mode,
        network=box.network,
        hide=tuple(hide),
        read_only=tuple(map(Path, box.read_only)),
        limits=limits,
    )


def execute(
    kernel: Kernel,
    settings: Settings,
    run_id: str,
    commit: str,
    inventory: TestInventory | None,
    progress: Progress | None = None,
    *,
    base: str | None = None,
) -> TestRunEvidence:
    """Run the tests on `commit` as `settings` say, in their sandbox; the scan starts at `base`."""
    patterns = test_patterns(settings)

    last_report = [0.0]

    def on_output(nbytes: int) -> None:
        now = time.monotonic()
        if progress and now - last_report[0] >= 1.0:  # a line a second, not one per chunk
            last_report[0] = now
            progress(f"tests running: {nbytes} bytes of output so far")

    try:
        return run_tests(
            kernel.project.root,
            commit,
            settings.test_command,
            timeout_s=settings.test_timeout_s,
            junit_path=settings.junit_path,
            inventory=inventory,
            sandbox=sandbox_for(kernel, settings),
            scan=TamperScan(
                base, lambda path: is_protected_path(path, patterns), settings.tests.harness_allow
            )
            if base
            else None,
            pytest_plugins=tuple(settings.tests.pytest_plugins),
            env_allow=tuple(settings.env_allow),
            on_output=on_output if progress else None,
            keep_report=report_path(kernel, run_id),
        )
    except SandboxUnavailable as exc:
        raise ConfigError(f"can't run the tests: {exc}") from exc
    except TestRunError as exc:
        raise ConfigError(f"can't run the tests: {exc}; check test_command and junit_path") from exc


def report_path(kernel: Kernel, run_id: str) -> Path:
    """Where a run's JUnit report is kept as evidence."""
    return kernel.project.state_dir / "runs" / f"{run_id}.xml"


def insert_run(
    kernel: Kernel,
    conn: Connection,
    run_id: str,
    session_id: str,
    kind: str,
    commit: str,
    evidence: TestRunEvidence,
    warnings: list[str] | None = None,
) -> None:
    q.insert_test_run(
        conn,
        {
            "id": run_id,
            "session_id": session_id,
            "kind": kind,
            "commit": commit,
            "status": evidence.status,
            "reason": evidence.reason,
            "infrastructure": evidence.infrastructure,
            "command": evidence.command,
            "exit_code": evidence.exit_code,
            "duration_s": evidence.duration_s,
            "evidence": {**evidence.to_dict(), "warnings": run_warnings(evidence, warnings)},
            "created_at": kernel.clock(),
        },
    )


SUMMARY_TEXT = 1_000  # characters of a reason or warning in a summary


def run_record(run_id: str, evidence: TestRunEvidence, warnings: list[str]) -> dict[str, Any]:
    """What a session's context keeps of a run: a bounded summary naming the run by id.

    The output, every failure (its ids too) and the collected ids stay in the
    runs table (`stored_runs`), so the session row stays small however loud or
    large the test suite is.
    """
    return {
        "run_id": run_id,
        "status": evidence.status,
        "reason": evidence.reason[:SUMMARY_TEXT],
        "counts": evidence.counts,
        "commit": evidence.commit,
        "sandbox": evidence.sandbox,
        "names_tests": evidence.names_tests,
        "duration_s": evidence.duration_s,
        "warnings": [w[:SUMMARY_TEXT] for w in warnings[:20]],
        "failures_total": len(evidence.failures),
    }


_RUNS_KEPT = 256
_runs: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
_runs_lock = threading.Lock()


def stored_runs(
    kernel: Kernel, *summaries: Mapping[str, Any] | None
) -> list[dict[str, Any] | None]:
    """The whole evidence of each summarised run (None stays None).

    A run is written once and never changed, so the last few hundred read are
    kept in memory (by database and run id): a repeated `get_session_status`
    reads no run. A summary written before runs left the context has no run id:
    it is returned as it is.
    """
    wanted = {str(s["run_id"]) for s in summaries if s and s.get("run_id")}
    found = {run_id: run for run_id in wanted if (run := _cached_run(kernel, run_id)) is not None}
    if missing := sorted(wanted - found.keys()):
        with kernel.db.read_one() as conn:
            for row in q.get_test_runs(conn, missing):
                found[row["id"]] = _keep_run(kernel, {**row["evidence"], "run_id": row["id"]})
    return [
        dict(found.get(str(s.get("run_id"))) or s) if s else None  # a copy: callers may add to it
        for s in summaries
    ]


def _cached_run(kernel: Kernel, run_id: str) -> dict[str, Any] | None:
    with _runs_lock:
        run = _runs.get((kernel.db.url, run_id))
        if run is not None:
            _runs.move_to_end((kernel.db.url, run_id))
        return run


def _keep_run(kernel: Kernel, run: dict[str, Any]) -> dict[str, Any]:
    with _runs_lock:
        _runs[(kernel.db.url, run["run_id"])] = run
        while len(_runs) > _RUNS_KEPT:
            _runs.popitem(last=False)
    return run


def approved_tests_snapshot(kernel: Kernel, session: Session) -> dict[str, Any]:
    """What approving the tests locks: protected files' hashes and the test inventory.

    The inventory is the red run's collected ids, or, when the red run could not
    import the tests (the usual TDD case), the tests found in the approved files.
    """
    worktree = kernel.project.root / session.context["worktree"]
    commit = session.context.get("head") or session.base_commit or "HEAD"
    patterns = test_patterns(kernel.settings_of(session))
    hashes = snapshot_protected(worktree, commit, patterns)
    red = stored_runs(kernel, session.context.get("red_run"))[0] or {}
    ids = runnable_test_ids(red)
    if not _names_tests(red):
        return {"commit": commit, "hashes": hashes, "inventory": None}  # the exit code decides
    if ids and not _import_failures(red):  # a file that didn't import hides its tests
        inventory = collected_inventory(ids)
    else:
        inventory = _static(worktree, commit, patterns)
    return {"commit": commit, "hashes": hashes, "inventory": inventory.to_dict()}


def _names_tests(run: Mapping[str, Any]) -> bool:
    """Whether the project's runs report test ids (pytest, or a configured JUnit report).

    A command like `make check` with no report can't show which tests ran, so
    pinning an inventory would fail every run; its exit code decides instead.
    Runs recorded before this flag existed named tests when pytest's report was asked for.
    """
    return bool(run.get("names_tests", "--junitxml" in str(run.get("command", ""))))


def _static(worktree: Path, commit: str, patterns: TestPatterns) -> TestInventory:
    sources = {
        path: data.decode("utf-8", errors="replace")
        for path, data in protected_sources(worktree, commit, patterns).items()
        if path.endswith(".py")
    }
    try:
        return static_inventory(sources)
    except ValueError as exc:
        raise ConfigError(f"can't pin the approved tests: {exc}; fix the tests first") from exc


def pinned_inventory(kernel: Kernel, session: Session) -> TestInventory | None:
    """The inventory approved for this session; sessions approved before pinning get one now."""
    approved = session.context.get("approved_tests") or {}
    if not approved:
        return None
    if "inventory" in approved:
        pinned = approved["inventory"]
        return TestInventory.from_dict(pinned) if pinned is not None else None
    if approved.get("test_ids"):
        return collected_inventory(approved["test_ids"])
    if not _names_tests(session.context.get("red_run") or {}):
        return None
    worktree = kernel.project.root / session.context["worktree"]
    return _static(worktree, approved["commit"], test_patterns(kernel.settings_of(session)))


def run_warnings(evidence: TestRunEvidence, more: list[str] | None = None) -> list[str]:
    """What anyone reading a run must see first: no sandbox, or code flagged for a human."""
    warnings = [f"harness tampering flagged: {flag}" for flag in evidence.flags]
    if evidence.unsandboxed:
        warnings.insert(
            0,
            'UNSANDBOXED run (sandbox = "none"): the code under test ran with your '
            "permissions and could have forged this evidence",
        )
    return [*warnings, *(w for w in more or [] if w not in warnings)]


def red_run_warnings(red: TestRunEvidence) -> list[str]:
    """What a reviewer should know about the red run before approving the tests."""
    warnings = run_warnings(red)
    if red.infrastructure:
        warnings.append(f"the tests could not be run at all: {red.reason}")
    elif red.counts.get("total", 0) == 0 or "could not be collected" in red.reason:
        warnings.append(f"the tests don't load: {red.reason}; see the output")
    elif red.counts.get("passed", 0):
        warnings.append(
            f"{red.counts['passed']} of {red.counts['total']} tests already pass against the "
            "current code: they may not test anything new"
        )
    return warnings


def runnable_test_ids(evidence: Mapping[str, Any]) -> list[str]:
    """The ids of real test cases in a run, leaving out files that failed to import."""
    broken = _import_failures(evidence)
    return sorted(i for i in evidence.get("collected", []) if i not in broken)


def _import_failures(evidence: Mapping[str, Any]) -> set[str]:
    """Test files that failed to import (pytest reports an error on the file itself)."""
    return {
        f["id"]
        for f in evidence.get("failures", [])
        if f.get("outcome") == "error" and "::" not in f.get("id", "")
    }


class LeaseLost(Conflict):
    """A run whose lease was taken over (its runner stalled past the TTL): its verdict is void."""


SETUP_FAILED = "setup_failed"
WAIT_POLL_S = 0.25  # how often a caller waiting on another process's run looks again


def run_session_tests(
    kernel: Kernel,
    ref: str,
    principal: Principal,
    *,
    progress: Progress | None = None,
    wait: bool = True,
) -> tuple[Session, dict[str, Any]]:
    """Run the approved tests on the session's newest commit and record the outcome.

    Whoever calls first runs them, once per submission: the runner lease
    decides between processes. A caller that finds the run already going
    waits for its result (or, without `wait`, gets the Conflict); one that
    comes after it gets that result.
    """
    session_id = kernel.resolve_session_id(ref)
    announced = False
    while True:
        session = kernel.get(session_id)
        if not _in_run_phase(kernel, session):
            return _last_run(kernel, session)
        if session.paused:
            raise InvalidTransition(
                f"session {session.short_id} is paused; a human must resume it",
                phase=session.phase,
            )
        try:
            epoch = acquire_for_run(kernel, session, principal)
        except Conflict as exc:  # another caller or process runs them: wait for its result
            if not wait:
                raise
            if progress and not announced:
                progress(exc.message)
                announced = True
            time.sleep(WAIT_POLL_S)
            continue
        return _run_and_record(kernel, session, principal, epoch, progress)


def _in_run_phase(kernel: Kernel, session: Session) -> bool:
    phase = kernel.workflow_of(session).phase(session.phase)
    return phase.kind is PhaseKind.SYSTEM and phase.automation == "run_tests"


def _last_run(kernel: Kernel, session: Session) -> tuple[Session, dict[str, Any]]:
    """The run already made on the session's newest commit; refused if there is none."""
    last = session.context.get("test_results") or {}
    if last.get("run_id") and last.get("commit") == session.context.get("head"):
        run = stored_runs(kernel, last)[0] or {}
        return session, {**run, "warnings": last.get("warnings", [])}
    wf = kernel.workflow_of(session)
    allowed = wf.allowed_actions(session.phase, paused=session.paused)
    raise InvalidTransition(
        f"can't run_tests: session {session.short_id} is in {session.phase}; tests run "
        "after an implementation or fix is submitted. Allowed now: " + ", ".join(allowed),
        phase=session.phase,
        allowed_actions=allowed,
    )


def _run_and_record(
    kernel: Kernel,
    session: Session,
    principal: Principal,
    epoch: int,
    progress: Progress | None,
) -> tuple[Session, dict[str, Any]]:
    session_id = session.id
    run_id = uuid.uuid4().hex
    approved = session.context.get("approved_tests") or {}
    commit = session.context["head"]
    settings = kernel.settings_of(session)
    if progress:
        progress(f"running `{settings.test_command}` on commit {commit[:10]}")
    try:
        inventory = pinned_inventory(kernel, session)
        with keep_lease(kernel, session_id, principal, epoch):
            evidence = execute(
                kernel, settings, run_id, commit, inventory, progress, base=session.base_commit
            )
    except ConfigError as exc:  # the sandbox or the command can't be set up at all
        release(kernel, session_id, epoch, "setup_error")
        new = to_human(kernel, session, "verify", exc.message, setting_for(exc.message))
        return new, {"status": "error", "reason": exc.message, "setup_error": True}
    except BaseException:
        release(kernel, session_id, epoch, "run_error")
        raise
    changed = _tampered(kernel, session, commit, approved.get("hashes", {}))
    if changed and evidence.status == "passed":
        evidence = TestRunEvidence.from_dict(
            {
                **evidence.to_dict(),
                "status": "failed",
                "reason": f"approved test files changed: {', '.join(changed)}",
            }
        )
    if evidence.infrastructure or evidence.setup_error:
        with kernel.db.write() as conn:
            insert_run(kernel, conn, run_id, session_id, "verify", commit, evidence)
        release(kernel, session_id, epoch, "setup_error")
        new = to_human(
            kernel,
            session,
            "verify",
            evidence.reason,
            setting_to_fix(evidence),
            run=run_record(run_id, evidence, run_warnings(evidence)),
        )
        return new, {"run_id": run_id, **evidence.to_dict(), "warnings": run_warnings(evidence)}
    action = _result_action(kernel.workflow_of(session), session.phase, evidence)

    def build(current: Session) -> Command:
        if current.lease_epoch != epoch:
            raise LeaseLost(
                f"the run's lease on session {current.short_id} was taken over; "
                "its result is dropped (kept as a dropped run)",
                phase=current.phase,
            )
        summary = run_record(run_id, evidence, run_warnings(evidence))
        context: dict[str, Any] = {"test_results": summary}
        return Command(action, SYSTEM, payload=summary, commit=commit, context_patch=context)

    def store(conn: Connection, new: Session) -> None:
        insert_run(kernel, conn, run_id, session_id, "verify", commit, evidence)

    try:
        kernel.transition(session_id, build, extra=store)
    except LeaseLost:
        with kernel.db.write() as conn:  # the run happened: its evidence stays, its verdict doesn't
            insert_run(kernel, conn, run_id, session_id, "dropped", commit, evidence)
        raise
    except BaseException:
        release(kernel, session_id, epoch, "run_error")  # the session is free to run again
        raise
    release(kernel, session_id, epoch, "run_finished")
    return kernel.get(session_id), {
        "run_id": run_id,
        **evidence.to_dict(),
        "warnings": run_warnings(evidence),
    }


def setting_to_fix(evidence: TestRunEvidence) -> str:
    """The setting a human should look at when the run could not test the code at all."""
    if evidence.exit_code in (126, 127):
        return "test_command (the program was not found or is not executable)"
    if evidence.exit_code == 4:
        return "test_command (or [tests] pytest_plugins)"
    if evidence.exit_code == 3:
        return "test_command (or [tests] pytest_plugins); see the output"
    if evidence.infrastructure:
        return "the machine (phasegate could not prepare the run); see the reason"
    return "test_command (or [tests] globs): it must find the approved tests"


def setting_for(message: str) -> str:
    """The setting to fix when the run could not even be started."""
    return "[sandbox] (or install bubblewrap)" if "sandbox" in message else "test_command"


def to_human(
    kernel: Kernel,
    session: Session,
    at: str,
    reason: str,
    setting: str,
    *,
    run: Mapping[str, Any] | None = None,
) -> Session:
    """Send a session whose tests could not run as configured to a human, naming the setting.

    No fix attempt is used: the code was never tested. A workflow without the
    `setup_failed` transition keeps the session where it is and records the error.
    """
    problem = {
        "at": at,
        "reason": reason[:SUMMARY_TEXT],
        "fix": setting,
        "config": (session.context.get("config") or {}).get("hash"),
        "run_id": run["run_id"] if run else None,
    }
    context: dict[str, Any] = {"setup_error": problem}
    if run is not None and at == "verify":
        context["test_results"] = dict(run)
    if run is not None and at == "red_run":
        context["red_run"] = dict(run)
    if kernel.workflow_of(session).transition(SETUP_FAILED, session.phase) is None:
        return kernel.record(session.id, "test_run_error", None, problem)
    return kernel.transition(
        session.id,
        lambda _current: Command(SETUP_FAILED, SYSTEM, payload=problem, context_patch=context),
    )


def _result_action(wf: Workflow, phase: str, evidence: TestRunEvidence) -> str:
    """tests_passed, tests_failed, or tests_flagged (to a human) where the workflow has it."""
    if evidence.status == "passed":
        return "tests_passed"
    if evidence.flagged and wf.transition("tests_flagged", phase) is not None:
        return "tests_flagged"
    return "tests_failed"


def _tampered(
    kernel: Kernel, session: Session, commit: str, approved: Mapping[str, str]
) -> list[str]:
    if not approved:
        return []
    worktree = kernel.project.root / session.context["worktree"]
    return verify_snapshot(worktree, commit, approved, test_patterns(kernel.settings_of(session)))
