"""bench/load.py, shortened: concurrent hits and misses over loopback, no error, no RSS growth between rounds."""

from __future__ import annotations

import importlib.util

import pytest

from tests.servers import ROOT

pytestmark = pytest.mark.e2e


def test_load_bench_runs_clean(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("bench_load", ROOT / "bench" / "load.py")
    load = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(load)  # type: ignore[union-attr]
    # Three short rounds: the first still warms the allocator up; rounds 2 and 3 are compared.
    rc = load.main(["--clients", "16", "--requests", "96", "--rounds", "3", "--warm", "64", "--rss-slack-mb", "32"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "round 3: 96 requests, 0 errors" in out and "errors: 0;" in out

