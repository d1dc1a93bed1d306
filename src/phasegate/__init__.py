"""phasegate: a durable, human-gated design → tests → code orchestrator for AI coding agents.

The public names are imported on first use (PEP 562), so `phasegate --version`
or `phasegate mcp` does not pay for SQLAlchemy before it needs it.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from phasegate.config import Project, Settings, open_project
    from phasegate.domain.builtin_workflows import TDD
    from phasegate.domain.principal import Principal, PrincipalKind
    from phasegate.domain.session import Actor, Session
    from phasegate.domain.workflow import Phase, PhaseKind, Transition, Workflow
    from phasegate.errors import (
        Conflict,
        InvalidInput,
        InvalidTransition,
        NotFound,
        PermissionDenied,
        PhasegateError,
        SubmissionRefused,
    )
    from phasegate.orchestrator import Orchestrator

#: Each public name and the module that defines it.
_HOMES = {
    "Project": "phasegate.config",
    "Settings": "phasegate.config",
    "open_project": "phasegate.config",
    "Principal": "phasegate.domain.principal",
    "PrincipalKind": "phasegate.domain.principal",
    "Actor": "phasegate.domain.session",
    "Session": "phasegate.domain.session",
    "TDD": "phasegate.domain.builtin_workflows",
    "Phase": "phasegate.domain.workflow",
    "PhaseKind": "phasegate.domain.workflow",
    "Transition": "phasegate.domain.workflow",
    "Workflow": "phasegate.domain.workflow",
    "Conflict": "phasegate.errors",
    "InvalidInput": "phasegate.errors",
    "InvalidTransition": "phasegate.errors",
    "NotFound": "phasegate.errors",
    "PermissionDenied": "phasegate.errors",
    "PhasegateError": "phasegate.errors",
    "SubmissionRefused": "phasegate.errors",
    "Orchestrator": "phasegate.orchestrator",
}

__all__ = [
    "TDD",
    "Actor",
    "Conflict",
    "InvalidInput",
    "InvalidTransition",
    "NotFound",
    "Orchestrator",
    "PermissionDenied",
    "Phase",
    "PhaseKind",
    "PhasegateError",
    "Principal",
    "PrincipalKind",
    "Project",
    "Session",
    "Settings",
    "SubmissionRefused",
    "Transition",
    "Workflow",
    "open_project",
]


def __getattr__(name: str) -> Any:
    """A public name, imported from its module the first time it is asked for."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'phasegate' has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value  # asked once: later lookups don't come here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
