"""Principals: the humans and agents that hold tokens, and the actor each one acts as."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from phasegate.domain.session import Actor
from phasegate.domain.workflow import ActorKind


class PrincipalKind(StrEnum):
    HUMAN = "human"
    AGENT = "agent"


@dataclass(frozen=True)
class Principal:
    id: str
    name: str
    kind: PrincipalKind
    roles: tuple[str, ...] = ()
    #: A job token's principal (a worker's agent CLI) acts on this one session only.
    session_scope: str | None = None

    @property
    def is_human(self) -> bool:
        return self.kind is PrincipalKind.HUMAN

    def actor(self, wanted_role: str | None = None) -> Actor:
        """The actor this principal is when it works in a phase that wants `wanted_role`."""
        if self.is_human:
            return Actor(ActorKind.HUMAN, self.name)
        role = wanted_role if wanted_role in self.roles else (self.roles[0] if self.roles else None)
        return Actor(ActorKind.AGENT, self.name, role)

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "kind": self.kind.value, "roles": list(self.roles)}
