"""Idempotency keys: a retried call with the same key returns the first call's result."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from phasegate.domain.principal import Principal
from phasegate.errors import InvalidInput


@dataclass(frozen=True)
class Idempotency:
    principal: str
    key: str
    request: Mapping[str, Any]

    @classmethod
    def of(
        cls, principal: Principal, key: str | None, request: Mapping[str, Any]
    ) -> Idempotency | None:
        """The idempotency of a call, if it carries a key; refuses a malformed key."""
        if key is None:
            return None
        if not key.strip() or len(key) > 200:
            raise InvalidInput("an idempotency key must be 1 to 200 characters")
        return cls(principal.name, key, request)

    @property
    def request_hash(self) -> str:
        body = json.dumps(self.request, sort_keys=True, default=str)
        return hashlib.sha256(body.encode()).hexdigest()
