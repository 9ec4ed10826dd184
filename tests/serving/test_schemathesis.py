"""Property-based API fuzzing from the OpenAPI spec (schemathesis): no input may cause a 5xx.

Bounded for CI: a fixed number of examples per operation and generation mode, no deadline (the
machine is shared). Runs in process over ASGI against the text test model, which exercises every
endpoint including ``POST /items``; write endpoints get the API key so generated bodies reach the
handlers. Operations are driven through schemathesis' Python API (``get_all_operations`` /
``as_strategy``) rather than its pytest plugin, whose lazy fixture loader does not work with
pytest 9.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import content_type_conformance, not_a_server_error, response_schema_conformance

from lmrec.serving.app import create_app
from lmrec.serving.state import ServingConfig, ServingState
from tests.serving.conftest import API_KEY, AUTH

#: per operation and mode; LMREC_FUZZ_EXAMPLES raises it for a longer run outside CI
MAX_EXAMPLES = int(os.environ.get("LMREC_FUZZ_EXAMPLES", "25"))


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors(text_artifact: Path, tmp_path: Path, mode: GenerationMode) -> None:
    state = ServingState.from_artifact(
        text_artifact, db=tmp_path / "events.db", config=ServingConfig(api_key=API_KEY)
    )
    try:
        schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(state))
        operations = [r.ok() for r in schema.get_all_operations()]
        assert {op.label for op in operations} >= {
            "POST /recommend",
            "GET /items/{item_id}/similar",
            "POST /feedback",
            "POST /items",
            "GET /health",
            "GET /metrics",
        }
        statuses: dict[str, set[int]] = {}
        checks = [not_a_server_error]
        if mode is GenerationMode.POSITIVE:
            checks += [response_schema_conformance, content_type_conformance]
        for op in operations:
            if mode is GenerationMode.NEGATIVE and op.label in ("GET /health", "GET /metrics"):
                continue  # no inputs: nothing to make invalid

            @given(case=op.as_strategy(generation_mode=mode))
            @settings(
                max_examples=MAX_EXAMPLES,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                database=None,
            )
            def run(case: schemathesis.Case) -> None:
                response = case.call(headers=AUTH)
                statuses.setdefault(case.operation.label, set()).add(response.status_code)
                case.validate_response(response, checks=checks)

            run()
        print(f"schemathesis {mode.value}: status codes per operation {statuses}")
        assert all(code < 500 for codes in statuses.values() for code in codes), statuses
        if mode is GenerationMode.NEGATIVE:
            # invalid input was really generated and rejected with a 4xx
            assert 422 in statuses["POST /recommend"] and 422 in statuses["POST /feedback"]
    finally:
        state.close()
