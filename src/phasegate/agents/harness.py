"""The `claude`, `codex` and `gemini` adapters: a real agent CLI drives the phase over MCP.

    phasegate worker --role tester,coder --agent tester=claude --agent coder=codex

For each claimed session the CLI runs headless in the session's worktree,
inside the same sandbox as the `command` adapter (`agents.sandbox`), with
phasegate as its MCP server (the worker's own endpoint) and a job token: it
acts as the worker's agent, under the worker's lease, on this one session
only, and is revoked when the job ends. It also gets the role's prompt and a
timeout (`[agents.<role>] timeout_s`). It submits through phasegate's tools
itself, so the adapter returns no Submission: it checks that the session
moved on.

What the CLI printed becomes one `agent_transcript` event in the session's
timeline: its text, the tools it called, how it ended. A CLI that exits
non-zero, hangs past its timeout or ends without submitting is an
`AgentFailed`: the worker gives the lease back, the session is unchanged
(nothing was submitted), and the failure counts towards parking it for a human.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from phasegate.agents.base import TRANSCRIPT, AgentCancelled, AgentFailed, Job, printable
from phasegate.agents.command import agent_environment, attempt_log, reset_worktree
from phasegate.agents.harness_clis import (
    CLIS,
    TOKEN_ENV,
    Endpoint,
    HarnessCli,
    Step,
    bounded,
)
from phasegate.agents.process import AgentRun, run_agent_process
from phasegate.agents.prompt import build_prompt
from phasegate.agents.sandbox import agent_launch
from phasegate.config import AgentSettings
from phasegate.errors import ConfigError, PhasegateError
from phasegate.submissions import session_lock
from phasegate.testrun import SandboxUnavailable
from phasegate.testrun.sandbox import check_available

log = logging.getLogger(__name__)
AFTER_SUBMIT_S = 60.0  # once the session moved on, the CLI has this long to end its turn
DEFAULT_TIMEOUT_S = 1800.0


class HarnessAgent:
    """Runs one agent CLI (`cli`) for `role`; it submits through phasegate's MCP tools."""

    holds_claim = True
    submits_itself = True

    def __init__(self, cli: HarnessCli, role: str, endpoint: Endpoint, *, timeout_s: float) -> None:
        self.cli, self.role, self.endpoint = cli, role, endpoint
        self.timeout_s = timeout_s

    @classmethod
    def for_role(
        cls,
        kind: str,
        role: str,
        endpoint: Endpoint | None,
        agents: dict[str, AgentSettings],
        *,
        sandbox_mode: str = "bwrap",
    ) -> HarnessAgent:
        """The adapter; ConfigError (one line) if the CLI is missing, too old or can't be boxed."""
        if endpoint is None:
            raise ConfigError(
                f"the {kind} adapter needs phasegate's MCP endpoint for its CLI: run it under "
                f"`phasegate worker --agent {kind}`, which serves one"
            )
        check_cli(kind, sandbox_mode)
        settings = agents.get(role)
        timeout_s = settings.timeout_s if settings else DEFAULT_TIMEOUT_S
        return cls(CLIS[kind], role, endpoint, timeout_s=timeout_s)

    def work(self, job: Job) -> None:
        """Run the CLI on the claimed phase until it has submitted; AgentFailed if it didn't."""
        worktree = job.orch.project.root / job.session.context["worktree"]
        with session_lock(job.orch.kernel, job.session.id):
            reset_worktree(worktree)
        token = self.endpoint.tokens.issue(job.principal, job.session.id)
        try:
            run, log_path = self._run(job, worktree, token)
        finally:
            self.endpoint.tokens.revoke(token)  # the job is over: so is its token
        steps = self._transcript(job, log_path, run)
        self._raise_unless_submitted(job, run, steps)

    def _run(self, job: Job, worktree: Path, token: str) -> tuple[AgentRun, Path]:
        """The CLI in its sandbox, with its private config and job token, until it ends."""
        url = self.endpoint.url
        with tempfile.TemporaryDirectory(prefix=f"phasegate-{self.cli.name}-") as tmp:
            private = Path(tmp)
            prompt_file = private / "prompt.md"
            prompt_file.write_text(self.prompt(job), encoding="utf-8")
            self.cli.write_config(url, token, private)
            env = self._environment(job, private, token)
            command = self.cli.command(url, prompt_file, private)
            try:
                launch = agent_launch(job.orch.kernel, command, worktree, env, show=(private,))
            except SandboxUnavailable as exc:
                raise AgentFailed(f"can't sandbox the agent CLI: {exc}") from exc
            log_path = attempt_log(job, self.cli.name)
            stop = threading.Event()
            watcher = threading.Thread(
                target=_stop_when, args=(job, stop), name="harness-watch", daemon=True
            )
            watcher.start()
            try:
                run = run_agent_process(
                    launch.argv,
                    worktree,
                    stdin_path=Path(os.devnull),
                    env=launch.env,
                    log_path=log_path,
                    timeout_s=self.timeout_s,
                    cancelled=stop,
                )
            finally:
                stop.set()
                watcher.join()
        return run, log_path

    def prompt(self, job: Job) -> str:
        """The role's prompt, and how to hand the work to phasegate through its tools."""
        last_run = job.orch.stored_runs(job.session.context.get("test_results"))[0]
        return build_prompt(job.session, job.kind, last_run=last_run) + (
            "\n## Handing in your work\n\n"
            "You are connected to phasegate's MCP server `phasegate`. When your files are "
            "ready in the working directory, call its get_session_status tool with "
            f'session_id "{job.session.id}", then the submit tool it names in `next_action`, '
            "without `files`: phasegate commits the working directory's changes and runs the "
            "tests itself. If the result is an error, correct what it says and submit again. "
            "Once a submission is accepted, stop: a human decides the next gate; do not wait "
            "for it and do not work on other sessions.\n"
        )

    def _environment(self, job: Job, private: Path, token: str) -> dict[str, str]:
        return {
            **agent_environment(job, self.role),
            **self.cli.environment(private),
            TOKEN_ENV: token,  # the job's token: this session only (Codex reads it from here)
        }

    def _transcript(self, job: Job, log_path: Path, run: AgentRun) -> list[Step]:
        """Record what the CLI did as one timeline event; the steps, for the outcome."""
        with open(log_path, encoding="utf-8", errors="replace") as lines:
            steps = list(self.cli.steps(lines))
        payload = {
            "harness": self.cli.name,
            "role": self.role,
            "phase": job.session.phase,
            "exit_code": run.exit_code,
            "timed_out": run.timed_out,
            "duration_s": round(run.duration_s, 1),
            "steps": bounded(steps),
            "log": log_path.name,
        }
        try:
            recorded = job.orch.record(job.session.id, TRANSCRIPT, job.principal, payload)
        except PhasegateError as exc:  # the transcript is for reading; the work stands without it
            log.warning("could not record %s's transcript: %s", self.cli.name, exc)
            return steps
        if recorded.phase == job.session.phase and recorded.lease_epoch == job.epoch:
            # Still the claimed session, one annotation on: a failure is counted against it.
            job.session = recorded
        return steps

    def _raise_unless_submitted(self, job: Job, run: AgentRun, steps: list[Step]) -> None:
        moved = job.moved_on.is_set() or _moved_on(job)
        last = " | ".join(printable(s.text.splitlines()[0][:200]) for s in steps[-3:] if s.text)
        detail = f"; last output: {last}" if last else ""
        if job.cancelled.is_set():
            raise AgentCancelled(f"cancelled after {run.duration_s:.1f} s")
        if moved:
            return  # it submitted; a CLI stopped while ending its turn did its work
        if run.timed_out:
            raise AgentFailed(
                f"{self.cli.name} timed out after {self.timeout_s:g} s and was killed{detail}",
                output=run.output_tail,
            )
        code = run.exit_code or 0
        if code != 0:
            how = f"was killed by signal {-code}" if code < 0 else f"exited {code}"
            raise AgentFailed(f"{self.cli.name} {how}{detail}", output=run.output_tail)
        raise AgentFailed(
            f"{self.cli.name} ended without submitting anything{detail}", output=run.output_tail
        )


def check_cli(kind: str, sandbox_mode: str = "bwrap") -> str:
    """The CLI's path; ConfigError naming the npm package if it is missing or too old, or
    if the sandbox it would run in can't be made here."""
    cli = CLIS[kind]
    program = shutil.which(cli.program)
    if program is None:
        raise ConfigError(
            f"{cli.program} is not on PATH: the {kind} adapter runs it; install it with "
            f"{cli.install_hint()}"
        )
    try:
        done = subprocess.run(
            [program, "--version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(
            f"{program} --version failed ({exc}); reinstall it with {cli.install_hint()}"
        ) from exc
    found = cli.version_of(done.stdout + done.stderr)
    if found is None or found < cli.oldest:
        shown = ".".join(map(str, found)) if found else "an unknown version"
        oldest = ".".join(map(str, cli.oldest))
        raise ConfigError(
            f"the {kind} adapter needs {cli.package} {oldest} or newer, {program} is "
            f"{shown}; install it with {cli.install_hint()}"
        )
    if sandbox_mode != "none":
        try:
            check_available()
        except SandboxUnavailable as exc:
            raise ConfigError(f"can't sandbox the agent CLI: {exc}") from exc
    return program


def _stop_when(job: Job, stop: threading.Event) -> None:
    """Stop the CLI at once if the work is cancelled; shortly after the session moved on."""
    while not stop.wait(0.2):
        if job.cancelled.is_set():
            break
        if job.moved_on.is_set():
            stop.wait(AFTER_SUBMIT_S)
            break
    stop.set()


def _moved_on(job: Job) -> bool:
    """Did the session leave the claimed phase? Only an accepted submission moves it on."""
    return job.orch.get(job.session.id).phase != job.session.phase
