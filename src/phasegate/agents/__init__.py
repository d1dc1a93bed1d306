"""Push-mode agent adapters: what a `phasegate worker` runs for each claimed session."""

from __future__ import annotations

from pathlib import Path

from phasegate.agents.base import Agent, AgentCancelled, AgentFailed, Job, Submission
from phasegate.agents.command import CommandAgent
from phasegate.agents.harness import HarnessAgent, check_cli
from phasegate.agents.harness_clis import CLIS, Endpoint
from phasegate.agents.runner import RunnerAgent
from phasegate.agents.script import ScriptAgent
from phasegate.config import Project
from phasegate.errors import ConfigError
from phasegate.leases import RUNNER_ROLE

__all__ = [
    "ADAPTERS",
    "CLIS",
    "Agent",
    "AgentCancelled",
    "AgentFailed",
    "CommandAgent",
    "Endpoint",
    "HarnessAgent",
    "Job",
    "RunnerAgent",
    "ScriptAgent",
    "Submission",
    "build_agent",
    "check_cli",
]

ADAPTERS = ("command", "script", *CLIS)  # CLIS: claude, codex, gemini


def build_agent(
    kind: str,
    role: str,
    project: Project,
    *,
    script_dir: Path | None = None,
    script_delay_s: float = 0.0,
    endpoint: Endpoint | None = None,
) -> Agent:
    """The adapter `kind` for `role`; the runner role always runs the tests itself.

    The harness adapters (claude, codex, gemini) reach phasegate at `endpoint`.
    """
    if role == RUNNER_ROLE:
        return RunnerAgent()
    if kind in CLIS:
        return HarnessAgent.for_role(
            kind,
            role,
            endpoint,
            project.settings.agents,
            sandbox_mode=project.settings.sandbox.mode,
        )
    if kind == "command":
        return CommandAgent.for_role(
            role, project.settings.agents, sandbox_mode=project.settings.sandbox.mode
        )
    if kind == "script":
        if script_dir is None:
            raise ConfigError(
                "the script adapter needs --script-dir DIR (see phasegate.agents.script)"
            )
        return ScriptAgent(script_dir, delay_s=script_delay_s)
    raise ConfigError(f"unknown agent adapter {kind!r}; use one of {', '.join(ADAPTERS)}")
