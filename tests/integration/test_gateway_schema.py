"""Schemathesis against the gateway's own OpenAPI schema: no generated request, valid or not, gets a 5xx.

Cases come from each operation's Hypothesis strategy (schemathesis's Python API) rather than its pytest plugin,
whose lazy-fixture subtests do not run under this pytest; the examples per operation are bounded.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.integration.conftest import GATEWAY_KEY
from tests.support.gateway import RunningGateway

AUTH = {"Authorization": f"Bearer {GATEWAY_KEY}"}
EXAMPLES_PER_OPERATION = 5


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda mode: mode.value)
def test_no_generated_request_gets_a_server_error(gateway: RunningGateway, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(f"{gateway.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]  # an invalid schema fails here
    assert len(operations) >= 15  # every route is in the schema
    failures: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy(mode))
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck))
        def call(case: schemathesis.Case[Any]) -> None:
            response = case.call(base_url=gateway.url, headers=AUTH, timeout=30)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}")

        try:
            call()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE  # an operation without parameters has no invalid input to make
    assert not failures, "\n".join(failures)
