"""phasegate: a durable, human-gated design → tests → code orchestrator for AI coding agents."""

from phasegate.config import Project, Settings, open_project
from phasegate.domain.principal import Principal, PrincipalKind
from phasegate.domain.session import Actor, Session
from phasegate.domain.workflow import TDD, Phase, PhaseKind, Transition, Workflow
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
