"""The `command` adapter: any agent CLI, configured per role in `phasegate.toml`.

    [agents.coder]
    command = "claude -p --permission-mode acceptEdits"
    prompt = "stdin"        # or "file": the path is in $PHASEGATE_PROMPT_FILE
    timeout_s = 1800

The CLI runs in the session's worktree, which is first reset to the session's
newest commit (a crashed earlier attempt may have left edits behind), inside a
sandbox that hides phasegate's state and your credentials (`agents.sandbox`).
Whatever it leaves changed in the worktree becomes the submission.
"""

from __future__ import annotations

import logging
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from phasegate.agents.base import AgentCancelled, AgentFailed, Job, Submission, printable
from phasegate.agents.process import AgentRun, run_agent_process
from phasegate.agents.prompt import build_prompt
from phasegate.agents.sandbox import agent_launch
from phasegate.config import AgentSettings
from phasegate.errors import ConfigError
from phasegate.submissions import session_lock
from phasegate.testrun import SandboxUnavailable
from phasegate.testrun.sandbox import check_available
from phasegate.workspace.git import Git

_HIDDEN_ENV_PREFIX = "PHASEGATE_"  # tokens and database URLs stay with the worker
log = logging.getLogger(__name__)


class CommandAgent:
    """Runs the CLI configured for `role` on each claimed session."""

    holds_claim = True
    submits_itself = False

    def __init__(self, role: str, settings: AgentSettings) -> None:
        if settings.command is None:
            raise ConfigError(
                f'no command for [agents.{role}] in phasegate.toml; add command = "..." '
                "(the agent CLI to run for this role) there, or use --agent claude, codex "
                "or gemini"
            )
        self.command = settings.command
        if settings.prompt not in ("stdin", "file"):
            raise ConfigError(
                f'[agents.{role}] prompt must be "stdin" or "file", not {settings.prompt!r}'
            )
        self.role = role
        self.settings = settings

    @classmethod
    def for_role(
        cls, role: str, agents: dict[str, AgentSettings], *, sandbox_mode: str = "bwrap"
    ) -> CommandAgent:
        """The adapter for `role`; ConfigError if phasegate.toml has no [agents.<role>],
        or if the agent's sandbox can't be made on this machine."""
        if role not in agents:
            raise ConfigError(
                f'no [agents.{role}] table in phasegate.toml; add one with command = "..." '
                "(the agent CLI to run for this role), or use --agent claude, codex or gemini"
            )
        if sandbox_mode != "none":
            try:
                check_available()
            except SandboxUnavailable as exc:
                raise ConfigError(f"can't sandbox the agent CLI: {exc}") from exc
        return cls(role, agents[role])

    def work(self, job: Job) -> Submission:
        """Run the CLI with the phase's prompt; the worktree's changes are the submission."""
        kind = job.kind
        worktree = job.orch.project.root / job.session.context["worktree"]
        with session_lock(job.orch.kernel, job.session.id):
            reset_worktree(worktree)
        with tempfile.TemporaryDirectory(prefix="phasegate-prompt-") as tmp:
            prompt_file = Path(tmp) / "prompt.md"
            last_run = job.orch.stored_runs(job.session.context.get("test_results"))[0]
            prompt = build_prompt(job.session, kind, last_run=last_run)
            prompt_file.write_text(prompt, encoding="utf-8")
            env = self._environment(job, prompt_file)
            try:
                launch = agent_launch(
                    job.orch.kernel, self.command, worktree, env, show=(Path(tmp),)
                )
            except SandboxUnavailable as exc:
                raise AgentFailed(f"can't sandbox the agent CLI: {exc}") from exc
            run = run_agent_process(
                launch.argv,
                worktree,
                stdin_path=prompt_file if self.settings.prompt == "stdin" else Path(os.devnull),
                env=launch.env,
                log_path=attempt_log(job),
                timeout_s=self.settings.timeout_s,
                cancelled=job.cancelled,
            )
        if run.log_cut_bytes:
            log.warning(
                "the agent on %s printed %d bytes more than its log keeps; the middle is cut",
                job.session.short_id,
                run.log_cut_bytes,
            )
        _raise_unless_finished(run, self.settings.timeout_s)
        return Submission(files=None, note=run.output_tail.strip()[-2000:])

    def _environment(self, job: Job, prompt_file: Path) -> dict[str, str]:
        env = agent_environment(job, self.role)
        if self.settings.prompt == "file":
            env["PHASEGATE_PROMPT_FILE"] = str(prompt_file)
        return env


def agent_environment(job: Job, role: str) -> dict[str, str]:
    """The worker's environment without its own secrets, and which session and role this is."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_HIDDEN_ENV_PREFIX)}
    env.update(
        PHASEGATE_SESSION=job.session.id, PHASEGATE_PHASE=job.session.phase, PHASEGATE_ROLE=role
    )
    return env


def reset_worktree(worktree: Path) -> None:
    """Drop uncommitted edits and untracked files (not ignored ones, such as a venv): a crashed
    earlier attempt may have left some."""
    git = Git(worktree)
    git.run("reset", "-q", "--hard", "HEAD")
    git.run("clean", "-fdq")


def attempt_log(job: Job, label: str = "") -> Path:
    """Where one attempt's output is kept, named by session, phase, epoch (and harness)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    tag = f"-{label}" if label else ""
    name = f"{job.session.id[:12]}-{job.session.phase}-e{job.epoch}{tag}-{stamp}.log"
    return job.orch.project.state_dir / "logs" / "agents" / name


def _raise_unless_finished(run: AgentRun, timeout_s: float) -> None:
    tail = [printable(line) for line in run.output_tail.strip().splitlines()[-3:]]
    detail = f"; last output: {' | '.join(tail)}" if tail else ""
    if run.cancelled:
        raise AgentCancelled(f"cancelled after {run.duration_s:.1f} s")
    if run.timed_out:
        raise AgentFailed(
            f"timed out after {timeout_s:g} s and was killed{detail}", output=run.output_tail
        )
    code = run.exit_code or 0
    if code != 0:
        how = f"killed by signal {-code}" if code < 0 else f"exited {code}"
        raise AgentFailed(f"the agent command {how}{detail}", output=run.output_tail)
