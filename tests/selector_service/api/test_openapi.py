"""The OpenAPI document is a contract: any change to it shows here, against the committed copy."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

GOLDEN = Path(__file__).with_name("openapi.json")


def test_openapi_document_is_the_committed_one(client: TestClient) -> None:
    served = client.get("/openapi.json").json()
    committed = json.loads(GOLDEN.read_text())
    assert served == committed, f"the API changed: update {GOLDEN} (and the README) if that is intended"
