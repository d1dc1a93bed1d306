"""The OpenAPI document is valid and true: schemathesis fuzzes every operation against it."""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import Case, GenerationMode

from tests.web.conftest import WebEnv

EXAMPLES = 10  # per operation and mode: 14 operations x 2 modes stay well under 60 s


def test_document_is_openapi_3_1(live_url: str) -> None:
    """/api/openapi.json is an OpenAPI 3.1 document listing every API path, without a token."""
    document = httpx.get(f"{live_url}/api/openapi.json").json()
    assert document["openapi"] == "3.1.0"
    assert "/api/sessions/{session_id}/approve" in document["paths"]
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def operations(live_url: str) -> list[schemathesis.APIOperation]:
    loaded = schemathesis.openapi.from_url(f"{live_url}/api/openapi.json")
    return [result.ok() for result in loaded.get_all_operations()]


@pytest.mark.parametrize("mode", list(GenerationMode))
def test_api_conforms_to_its_document(live_url: str, env: WebEnv, mode: GenerationMode) -> None:
    """Generated requests (valid and invalid) never get a 5xx and responses match the document."""
    env.gate_session()  # a real session to list, show and decide on
    for operation in operations(live_url):

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def check(case: Case) -> None:
            case.call_and_validate(headers=env.bearer)

        check()
