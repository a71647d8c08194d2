"""Fuzzing with schemathesis against the service's own OpenAPI schema: every operation, the API key set, a
bounded number of examples each, schema-valid and schema-invalid data. Every check must pass: no server
error, schema-invalid data rejected, every answer (status code, content type, body) as documented."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.servers import start_server, stop_server

pytestmark = pytest.mark.e2e

KEY = "fuzz-key"
MAX_EXAMPLES = 25
# Runtime bounds the schema cannot state (ids below the served vocabulary, windows within the model's
# context, the served tokenizer's hash, a pool that exists and is sealed) make many schema-valid bodies a
# 4xx by design, so "schema-valid data is accepted" is the one check left out; every other check runs.
NOT_EXPRESSIBLE = [schemathesis.checks.positive_data_acceptance]


@pytest.fixture(scope="module")
def api(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[schemathesis.BaseSchema]:
    db = tmp_path_factory.mktemp("fuzz") / "cache.sqlite"
    proc, base = start_server(tiny_checkpoint, f"sqlite:///{db}", SALT_API_KEY=KEY, SALT_MAX_BATCH_WINDOWS="16",
                              SALT_WARMUP="false")
    try:
        yield schemathesis.openapi.from_url(f"{base}/openapi.json", headers={"X-API-Key": KEY})
    finally:
        stop_server(proc)


def test_api_conforms_to_its_schema(api: schemathesis.BaseSchema) -> None:
    # Each operation runs as its own hypothesis test (schemathesis' pytest plugin is not used, so the run
    # does not depend on pytest internals); failures are gathered and reported together.
    failures: dict[str, str] = {}
    operations = [r.ok() for r in api.get_all_operations()]
    assert len(operations) >= 14, [op.label for op in operations]
    for op, mode in itertools.product(operations, (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)):

        @given(case=op.as_strategy(generation_mode=mode))
        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def run(case: schemathesis.Case) -> None:
            # The key as a bearer token; schemathesis' "ignored auth" check also sends it wrong or not at all.
            case.call_and_validate(headers={"Authorization": f"Bearer {KEY}"}, timeout=30,
                                   excluded_checks=NOT_EXPRESSIBLE)

        try:
            run()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE  # an operation without inputs has no invalid request
        except Exception as e:
            failures[f"{op.label} ({mode.value})"] = f"{type(e).__name__}: {e}"[:3000]
    assert not failures, "\n\n".join(f"{k}\n{v}" for k, v in failures.items())
