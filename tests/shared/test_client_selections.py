"""Two-model selections through the blocking and the asyncio client: the body names the models by role only
when asked, and a refusal arrives as a SelectorError with the service's code and line."""

from __future__ import annotations

import json

import httpx
import pytest

from shared.client import SelectorError
from tests.shared.test_client import KINDS, Mocked


@pytest.mark.parametrize("kind", KINDS)
def test_create_selection_sends_the_models_by_role(kind: str) -> None:
    bodies: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(200, json={"id": "s", "count": 4})

    c = Mocked(kind, handler, "http://a")
    assert c.create_selection("p", "reducible_loss", count=4, models={"learner": "a1", "reference": "b2"})["id"] == "s"
    c.create_selection("p", "salt_ds", fraction=0.5, diversity="kmeans", n_clusters=3)
    assert bodies[0] == {"pool_id": "p", "method": "reducible_loss", "diversity": "none", "seed": 0, "count": 4,
                         "models": {"learner": "a1", "reference": "b2"}}
    assert bodies[1] == {"pool_id": "p", "method": "salt_ds", "diversity": "kmeans", "seed": 0, "fraction": 0.5,
                         "n_clusters": 3}


@pytest.mark.parametrize("kind", KINDS)
def test_a_refused_two_model_selection_raises_its_line(kind: str) -> None:
    line = "model reference (b2) lacks scores of 5 of the pool's 24 windows; score the pool with a service serving it"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(409, json={"error": {"code": "scores_missing", "message": line, "request_id": "r"}})

    c = Mocked(kind, handler, "http://a")
    with pytest.raises(SelectorError) as e:
        c.create_selection("p", "difference", count=4, models={"teacher": "a1", "reference": "b2"})
    assert (e.value.status, e.value.code, e.value.message) == (409, "scores_missing", line)
