"""Security: the API key on every route but /healthz, CORS off unless configured, the model path confined to
its root, checkpoints without pickle, SQL through bound parameters only.

Body size, batch and token-id bounds are shown by test_bad_input.py (413 over the body or batch limit, 422
for ids outside the vocabulary) and checked again, with the key set, by the schemathesis run (tests/e2e).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlalchemy as sa
import torch
from starlette.routing import Route

from selector_service import Settings, create_app
from selector_service.config import confined_model_path
from selector_service.server import preflight
from selector_service.store import pool_rows
from selector_service.store.cache_rows import get_rows
from selector_service.store.database import Database
from shared.checkpoint import save_model
from shared.errors import SaltError
from shared.model import GPT, GPTConfig
from tests.selector_service.conftest import assert_error, make_client
from trainer.recipe.checkpointing import CKPT_DIR, STATE, load_checkpoint

ROOT = Path(__file__).resolve().parents[3]
KEY = "k3y-0f-the-test"


def _routes(app) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """(method, concrete path) of every route the app serves: the OpenAPI paths and the docs routes."""
    out = {(m.upper(), p) for p, ops in app.openapi()["paths"].items() for m in ops}
    out |= {(sorted(r.methods - {"HEAD"})[0], r.path) for r in app.routes if isinstance(r, Route) and r.methods}
    return sorted((m, re.sub(r"\{[^}]+\}", "x", p)) for m, p in out)


def test_api_key_on_every_route_but_healthz(tiny_checkpoint: Path, sqlite_url: str) -> None:
    with make_client(tiny_checkpoint, sqlite_url, api_key=KEY) as c:
        routes = _routes(c.app)
        paths = {p for _, p in routes}
        assert {"/metrics", "/readyz", "/docs", "/openapi.json", "/v1/scores", "/healthz"} <= paths
        for method, path in routes:
            if path == "/healthz":
                continue
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-API-Key": KEY[:-1]},
                            {"Authorization": f"Basic {KEY}"}, {"X-API-Key": KEY + "x"}):
                r = c.request(method, path, headers=headers)
                assert_error(r, 401, "unauthorized")
                assert r.headers["www-authenticate"] == "Bearer"
            for headers in ({"Authorization": f"Bearer {KEY}"}, {"X-API-Key": KEY}):
                assert c.request(method, path, headers=headers).status_code != 401, (method, path)
        assert c.get("/healthz").json() == {"status": "ok"}  # the one open route (liveness probes)
        assert_error(c.get("/no/such/route"), 401)  # unknown paths do not tell 404 from 401 either
        ok = {"X-API-Key": KEY}
        assert c.get("/metrics", headers=ok).status_code == 200
        assert c.get("/readyz", headers=ok).status_code == 200
        spec = c.get("/openapi.json", headers=ok).json()
        assert spec["security"] and set(spec["components"]["securitySchemes"]) == {"bearer", "apiKey"}
        assert spec["paths"]["/healthz"]["get"]["security"] == []  # documented as the one open route
    with make_client(tiny_checkpoint, sqlite_url) as c:
        assert "security" not in c.get("/openapi.json").json()  # no key configured: none documented


def test_api_key_is_compared_in_constant_time() -> None:
    # The one check (the middleware, in front of every route) uses hmac.compare_digest, never ==.
    assert "hmac.compare_digest" in (ROOT / "selector_service" / "api" / "middleware.py").read_text()
    for path in (ROOT / "selector_service").rglob("*.py"):
        assert not re.search(r"(sent|key)\s*[!=]=\s*(sent|key|self\.api_key)", path.read_text()), path


def test_cors_is_off_unless_configured(tiny_checkpoint: Path, sqlite_url: str) -> None:
    origin = {"Origin": "https://evil.example"}
    preflight_headers = {**origin, "Access-Control-Request-Method": "POST"}
    with make_client(tiny_checkpoint, sqlite_url) as c:
        r = c.get("/v1/model", headers=origin)
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
        r = c.options("/v1/scores", headers=preflight_headers)
        assert "access-control-allow-origin" not in r.headers and r.status_code >= 400
    with make_client(tiny_checkpoint, sqlite_url, api_key=KEY, cors_origins="https://app.example") as c:
        ok = {"Origin": "https://app.example", "X-API-Key": KEY}
        r = c.get("/v1/model", headers=ok)
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example"
        r = c.options("/v1/scores", headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
                                             "Access-Control-Request-Headers": "authorization,content-type"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example"
        r = c.get("/v1/model", headers={**origin, "X-API-Key": KEY})
        assert "access-control-allow-origin" not in r.headers  # an origin not listed gets nothing
        assert c.get("/v1/model", headers={"Origin": "https://app.example"}).status_code == 401


def test_model_path_is_confined_to_its_root(tiny_checkpoint: Path, tmp_path: Path, sqlite_url: str) -> None:
    root = tiny_checkpoint.parent
    inside = Settings(model_path=str(tiny_checkpoint), model_root=str(root), database_url=sqlite_url)
    assert confined_model_path(inside) == tiny_checkpoint.resolve()
    escape = root / ".." / ".." / tiny_checkpoint.parent.name / tiny_checkpoint.name  # the same folder via ..
    other_root = tmp_path / "models"
    other_root.mkdir()
    (other_root / "link").symlink_to(tiny_checkpoint)  # a link out of the root is an escape too
    for model_path in (str(other_root / ".." / ".." / str(tiny_checkpoint).lstrip("/")), str(other_root / "link"),
                       "/etc", str(escape) + "/../../../../etc"):
        bad = Settings(model_path=model_path, model_root=str(other_root), database_url=sqlite_url)
        with pytest.raises(SaltError, match="outside the allowed root"):
            confined_model_path(bad)
        with pytest.raises(SaltError, match="outside the allowed root"):
            preflight(bad)
        with pytest.raises(SaltError, match="outside the allowed root"), make_client(
                tiny_checkpoint, sqlite_url, model_root=str(other_root)):
            pass


def test_no_route_takes_a_file_path() -> None:
    # The model path is the only path the service opens, and it comes from the settings, never a request.
    app = create_app(Settings())
    spec = app.openapi()
    names = {p["name"] for ops in spec["paths"].values() for op in ops.values() for p in op.get("parameters", [])}
    names |= {f for schema in spec["components"]["schemas"].values() for f in schema.get("properties", {})}
    assert names and not {n for n in names if re.search(r"path|file|dir|folder|root", n.lower())}


class _Boom:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (Path(_MARKER[0]),))


_MARKER = [""]


def test_trainer_state_loads_without_pickle(tiny_dataset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A trainer_state.pt carrying a pickled object is refused and the object's code never runs."""
    run = tmp_path / "run"
    cfg = GPTConfig.from_preset("llm-tiny", vocab_size=tiny_dataset.vocab_size, block_size=32)
    save_model(run / CKPT_DIR, GPT(cfg), tiny_dataset.tokenizer())
    _MARKER[0] = str(tmp_path / "pwned")
    torch.save({"step": 1, "payload": _Boom()}, run / CKPT_DIR / STATE)
    with pytest.raises(SaltError, match="corrupt"):
        load_checkpoint(run, device=torch.device("cpu"))
    assert not (tmp_path / "pwned").exists()


def test_no_pickle_loading_anywhere() -> None:
    for py in [*ROOT.glob("shared/*.py"), *ROOT.glob("trainer/*.py"), *ROOT.glob("selector_service/**/*.py")]:
        source = py.read_text()
        assert "import pickle" not in source and "pickle.load" not in source, py
        for call in re.findall(r"torch\.load\([^)]*\)", source):
            assert "weights_only=True" in call, (py, call)


def test_sql_only_through_bound_parameters() -> None:
    for py in ROOT.glob("selector_service/**/*.py"):
        source = py.read_text()
        assert not re.search(r"text\(\s*f[\"']", source), py
        assert not re.search(r"(execute|exec_driver_sql)\(\s*f[\"']", source), py
        assert not re.search(r"text\([^)]*(%|\.format\()", source), py


def test_sql_injection_strings_are_inert(tiny_checkpoint: Path, sqlite_url: str, windows) -> None:  # type: ignore[no-untyped-def]
    evil = "x'; DROP TABLE salt_cache; --"
    with make_client(tiny_checkpoint, sqlite_url) as c:
        assert c.post("/v1/scores", json={"windows": windows[:2].tolist()}).status_code == 200
        assert_error(c.get(f"/v1/pools/{evil}"), 404)
        assert_error(c.get("/v1/jobs/1' OR '1'='1"), 404)
        assert_error(c.get("/v1/selections/1' OR '1'='1"), 404)
        r = c.post("/v1/pools", json={"name": evil, "dataset_fingerprint": "ab", "tokenizer_hash": "ab",
                                      "window_len": 33})
        assert_error(r, 422)  # pool names are a bounded alphabet
        database: Database = c.app.state.label_cache.database
        assert get_rows(database=database, model="' OR 1=1 --", params=["scores"], hashes=["' OR 1=1 --"]) == {}
        # Below the API's validation, the data-access layer stores such a string verbatim.
        pool = pool_rows.create_pool(database=database, name=evil, dataset_fingerprint="ab", tokenizer_hash="cd",
                                     window_len=33)
        assert pool_rows.get_pool(database=database, pool_id=pool["id"])["name"] == evil  # type: ignore[index]
        assert c.post("/v1/scores", json={"windows": windows[:2].tolist()}).status_code == 200
    engine = sa.create_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM salt_cache WHERE params = 'scores'")).scalar_one() == 2
    finally:
        engine.dispose()
