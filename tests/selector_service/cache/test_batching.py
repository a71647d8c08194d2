"""Dynamic batching: concurrent requests share forward passes of bounded size; precision and the CPU
post-processing setting are checked."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from selector_service.cache import slm as slm_mod
from shared.client import SelectorClient
from shared.errors import SaltError
from tests.selector_service.conftest import make_client


def test_concurrent_requests_are_coalesced_and_repeats_computed_once(
    tiny_checkpoint: Path, sqlite_url: str, windows: np.ndarray
) -> None:
    with make_client(tiny_checkpoint, sqlite_url, max_wait_ms=300) as c:
        # Four requests of two windows each, overlapping: six distinct windows.
        batches = [windows[[0, 1]], windows[[1, 2]], windows[[3, 4]], windows[[4, 5]]]
        with ThreadPoolExecutor(4) as ex:
            answers = list(ex.map(lambda b: c.post("/v1/scores", json={"windows": b.tolist()}), batches))
        assert all(r.status_code == 200 for r in answers)
        m = SelectorClient("http://testserver", http_client=c).metrics()
    assert m["salt_forward_passes_total"] == 1
    assert m["salt_windows_computed_total"] == 6 and m["salt_tokens_computed_total"] == 6 * 32
    assert answers[0].json()["windows"][1] == answers[1].json()["windows"][0]


def test_tokens_per_forward_are_bounded(tiny_checkpoint: Path, sqlite_url: str, windows: np.ndarray) -> None:
    with make_client(tiny_checkpoint, sqlite_url, max_batch_tokens=64) as c:
        assert c.post("/v1/soft-labels", json={"windows": windows.tolist(), "k": 4}).status_code == 200
        m = SelectorClient("http://testserver", http_client=c).metrics()
    assert m["salt_forward_passes_total"] == 4
    assert m["salt_forward_batch_tokens_sum"] == 8 * 32 and m["salt_forward_batch_tokens_count"] == 4
    assert m['salt_forward_batch_tokens_bucket{le="64.0"}'] == 4


def test_bf16_is_part_of_the_key_where_native(
    tiny_checkpoint: Path, sqlite_url: str, windows: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(slm_mod, "native_bf16", lambda device: True)
    body = {"windows": windows[:2].tolist(), "k": 4}
    with make_client(tiny_checkpoint, sqlite_url) as c:
        fp32 = c.post("/v1/soft-labels", json=body).json()
    with make_client(tiny_checkpoint, sqlite_url, precision="bf16") as c:
        bf16 = c.post("/v1/soft-labels", json=body).json()
        m = SelectorClient("http://testserver", http_client=c).metrics()
        assert c.get("/v1/model").json()["precision"] == "bf16"
    assert bf16["precision"] == "bf16" and m["salt_cache_hits_total"] == 0  # not served the fp32 rows
    np.testing.assert_allclose(np.array(bf16["windows"][0]["logprobs"]), np.array(fp32["windows"][0]["logprobs"]),
                               atol=0.1)


def test_bf16_refused_without_native_support(
    tiny_checkpoint: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(slm_mod, "native_bf16", lambda device: False)
    with pytest.raises(SaltError, match="native bf16"), make_client(tiny_checkpoint, sqlite_url, precision="bf16"):
        pass


def test_forward_in_chunks_gives_the_same_answers(
    tiny_checkpoint: Path, sqlite_url: str, tmp_path: Path, windows: np.ndarray
) -> None:
    body = {"windows": windows.tolist(), "k": 8}
    with make_client(tiny_checkpoint, sqlite_url) as c:
        whole = c.post("/v1/soft-labels", json=body).json()["windows"]
        whole_scores = c.post("/v1/scores", json={"windows": body["windows"]}).json()["windows"]
    with make_client(tiny_checkpoint, f"sqlite:///{tmp_path / 'other.sqlite'}", head_chunk_tokens=40) as c:
        chunked = c.post("/v1/soft-labels", json=body).json()["windows"]
        chunked_scores = c.post("/v1/scores", json={"windows": body["windows"]}).json()["windows"]
        assert SelectorClient("http://testserver", http_client=c).metrics()["salt_windows_computed_total"] == 8
    for a, b in zip(whole, chunked, strict=True):
        assert a["ids"] == b["ids"]
        np.testing.assert_allclose(a["logprobs"], b["logprobs"], atol=1e-2)
    for a, b in zip(whole_scores, chunked_scores, strict=True):
        assert abs(a["mean_loss"] - b["mean_loss"]) < 1e-4


def test_slm_is_loaded_warmed_up_and_run_on_one_thread(
    tiny_checkpoint: Path, sqlite_url: str, windows: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    # torch's CPU thread pool belongs to the thread that first runs the model: a second thread would
    # start a second pool competing for the cores.
    import threading

    seen: dict[str, set[str]] = {"init": set(), "warmup": set(), "run": set()}
    runner = slm_mod.SLMRunner
    for name, attr in (("init", "__init__"), ("warmup", "warmup"), ("run", "run")):
        original = getattr(runner, attr)

        def spy(self, *a, _original=original, _name=name, **kw):  # type: ignore[no-untyped-def]
            seen[_name].add(threading.current_thread().name)
            return _original(self, *a, **kw)

        monkeypatch.setattr(runner, attr, spy)
    with make_client(tiny_checkpoint, sqlite_url) as c:
        assert c.post("/v1/soft-labels", json={"windows": windows[:2].tolist(), "k": 4}).status_code == 200
        assert c.post("/v1/scores", json={"windows": windows[2:4].tolist()}).status_code == 200
    threads = seen["init"] | seen["warmup"] | seen["run"]
    assert len(threads) == 1 and all(seen.values()), seen
    assert threads.pop().startswith("salt-forward")


def test_cpu_postprocessing_by_torch_gives_the_c_extensions_answers(
    tiny_checkpoint: Path, sqlite_url: str, tmp_path: Path, windows: np.ndarray
) -> None:
    body = {"windows": windows.tolist(), "k": 8}
    answers = {}
    for how in ("c", "torch"):
        with make_client(tiny_checkpoint, f"sqlite:///{tmp_path / how}.sqlite", cpu_postprocessing=how) as c:
            answers[how] = (c.post("/v1/soft-labels", json=body).json()["windows"],
                            c.post("/v1/scores", json={"windows": body["windows"]}).json()["windows"])
    (c_labels, c_scores), (t_labels, t_scores) = answers["c"], answers["torch"]
    checked = 0
    for a, b in zip(c_labels, t_labels, strict=True):
        np.testing.assert_allclose(a["logprobs"], b["logprobs"], atol=2e-3)  # float16 on the wire
        np.testing.assert_allclose(a["tail"], b["tail"], atol=2e-3)
        for ids_a, ids_b, lp in zip(a["ids"], b["ids"], a["logprobs"], strict=True):
            # Ids whose log-prob is clearly apart from both neighbours' (the last one's right neighbour is
            # the first left out): the order of (nearly) tied ones may differ between the paths.
            apart = np.diff(lp) < -1e-3
            certain = np.r_[True, apart] & np.r_[apart, False]
            checked += int(certain.sum())
            assert np.array_equal(np.asarray(ids_a)[certain], np.asarray(ids_b)[certain])
    assert checked > len(windows) * 32 * 4  # most of the 8 ids of each position
    for a, b in zip(c_scores, t_scores, strict=True):
        assert abs(a["mean_loss"] - b["mean_loss"]) < 1e-5 and a["salt_ds"] == pytest.approx(b["salt_ds"], abs=1e-5)


def test_c_postprocessing_asked_for_but_not_built_is_refused(
    tiny_checkpoint: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(slm_mod.postproc, "available", lambda: False)
    with pytest.raises(SaltError, match="not built"), make_client(tiny_checkpoint, sqlite_url, cpu_postprocessing="c"):
        pass
    with make_client(tiny_checkpoint, sqlite_url) as c:  # auto: torch, with a warning in the log
        assert c.post("/v1/scores", json={"windows": [list(range(33))]}).status_code == 200
