"""A Hugging Face causal LM as the served SLM: labels and scores equal ``transformers``' own forward over the
tokenizer's ids (padding rows never served), /v1/model says what it runs, bad folders are refused at start-up
with one line."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from selector_service.config import Settings
from selector_service.server import preflight
from shared.client import SelectorClient
from shared.data import PackedDataset
from shared.errors import SaltError
from shared.hf import hf_fingerprint
from tests.hf_models import model_folder, transformers_logits
from tests.reference import topk_soft_labels, window_scores
from tests.selector_service.conftest import make_client

PADDING = 10


ARCHS = ["llama", "gpt2", "neox", "qwen2"]


@pytest.fixture(scope="module", params=ARCHS)
def hf_slm(request: pytest.FixtureRequest, tiny_dataset: PackedDataset,
           tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random two-layer model of each architecture; the Qwen2 (tied embeddings) has PADDING output rows
    past the tokenizer's ids."""
    pad = PADDING if request.param == "qwen2" else 0
    return model_folder(tmp_path_factory.mktemp(request.param), request.param, tiny_dataset, seed=1, padding_rows=pad)


@pytest.fixture(scope="module")
def qwen2(tiny_dataset: PackedDataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One model for the start-up checks (which read the folder, not the architecture)."""
    return model_folder(tmp_path_factory.mktemp("one"), "qwen2", tiny_dataset, seed=1, padding_rows=PADDING)


def _padding(folder: Path) -> int:
    return PADDING if json.loads((folder / "config.json").read_text())["model_type"] == "qwen2" else 0


@pytest.fixture
def hf_client(hf_slm: Path, sqlite_url: str) -> Iterator[TestClient]:
    with make_client(hf_slm, sqlite_url) as c:
        yield c


def _hidden(folder: Path, ids: torch.Tensor) -> torch.Tensor:
    import transformers as tf

    model = tf.AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True).eval()
    with torch.no_grad():
        return model.base_model(input_ids=ids).last_hidden_state


def test_labels_and_scores_equal_transformers_over_the_tokenizer_ids(
    hf_client: TestClient, hf_slm: Path, windows: np.ndarray, tiny_dataset: PackedDataset
) -> None:
    x, y = torch.from_numpy(windows[:, :-1]), torch.from_numpy(windows[:, 1:])
    logits = transformers_logits(hf_slm, x, tiny_dataset.vocab_size)  # (B, L, V): padding rows cut
    _, lp, tail = topk_soft_labels(logits, 16, 2.0)
    sc = SelectorClient("http://testserver", http_client=hf_client)
    got = sc.soft_labels(windows, k=16, temperature=2.0)
    assert int(got.ids.max()) < tiny_dataset.vocab_size
    # The served ids in the reference's order, up to log-probs that tie once rounded (random-init logits differ
    # by a few ulps; the service ranks the logits themselves): each served id has the reference's log-prob of
    # its rank.
    torch.testing.assert_close(torch.log_softmax(logits / 2.0, -1).gather(-1, got.ids), lp)
    torch.testing.assert_close(got.logprobs, lp, atol=1e-2, rtol=1e-3)
    torch.testing.assert_close(got.tail, tail, atol=1e-2, rtol=1e-3)
    ref = window_scores(logits, y, _hidden(hf_slm, x))
    rows = sc.scores(windows)
    for i, r in enumerate(rows):
        assert abs(r.mean_loss - ref["mean_loss"][i]) < 1e-4
        assert abs(r.top1_acc - ref["top1_acc"][i]) < 1e-9
        if np.isnan(ref["salt_ds"][i]):
            assert r.salt_ds is None
        else:  # the median loss over the positions whose true token is in the top 10
            assert abs(r.salt_ds - ref["salt_ds"][i]) < 1e-4
    # A repeat is served from the cache: no new forward pass.
    before = sc.metrics()
    assert [r.hash for r in sc.scores(windows)] == [r.hash for r in rows]
    sc.soft_labels(windows, k=16, temperature=2.0)
    after = sc.metrics()
    assert after["salt_forward_passes_total"] == before["salt_forward_passes_total"]
    assert after["salt_cache_hits_total"] == before["salt_cache_hits_total"] + 2 * len(windows)


def test_model_info_of_a_hugging_face_slm(hf_client: TestClient, hf_slm: Path, tiny_dataset: PackedDataset) -> None:
    info = hf_client.get("/v1/model").json()
    model_type = json.loads((hf_slm / "config.json").read_text())["model_type"]
    assert info["kind"] == "hf" and info["preset"] == model_type
    assert info["vocab_size"] == tiny_dataset.vocab_size
    assert info["output_rows"] == tiny_dataset.vocab_size + _padding(hf_slm)
    assert info["eot_id"] == tiny_dataset.eot_id and info["block_size"] == 64
    assert info["fingerprint"] == hf_fingerprint(hf_slm)
    assert info["tokenizer_hash"] == tiny_dataset.tokenizer_hash


def test_a_pool_of_another_tokenizer_is_refused(hf_client: TestClient, tiny_dataset: PackedDataset) -> None:
    r = hf_client.post("/v1/pools", json={"name": "p", "dataset_fingerprint": "ab" * 8, "tokenizer_hash": "cd" * 8,
                                          "window_len": 33})
    assert r.status_code == 409, r.text
    assert "tokenizer" in r.json()["error"]["message"]


def _broken(folder: Path, qwen2: Path, what: str) -> Path:
    folder.mkdir()
    for f in (f for f in qwen2.iterdir() if f.is_file()):
        if what == "pickled" and f.suffix == ".safetensors":
            torch.save({}, folder / "pytorch_model.bin")  # written, never loaded
            continue
        (folder / f.name).write_bytes(f.read_bytes())
    if what == "not causal":
        cfg = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**cfg, "model_type": "t5", "architectures": ["T5Model"]}))
    if what == "no tokenizer":
        (folder / "tokenizer.json").unlink()
    return folder


@pytest.mark.parametrize(("what", "message"), [("pickled", "pickled weights"), ("not causal", "causal"),
                                               ("no tokenizer", "tokenizer")])
def test_bad_folders_are_refused_before_loading(qwen2: Path, tmp_path: Path, what: str, message: str) -> None:
    folder = _broken(tmp_path / "m", qwen2, what)
    with pytest.raises(SaltError, match=message):
        preflight(Settings(model_path=str(folder), database_url=f"sqlite:///{tmp_path / 'c.sqlite'}"))


def test_a_model_too_large_for_the_free_memory_is_refused(qwen2: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shared.hf._free_bytes", lambda device: 1024)
    with pytest.raises(SaltError, match=r"needs about .* GiB in torch.float32 but cpu has 0.0 GiB free"):
        preflight(Settings(model_path=str(qwen2), database_url=f"sqlite:///{tmp_path / 'c.sqlite'}"))


def test_the_service_command_refuses_a_bad_folder_with_one_line(qwen2: Path, tmp_path: Path) -> None:
    folder = _broken(tmp_path / "m", qwen2, "pickled")
    env = {"SALT_MODEL_PATH": str(folder), "SALT_DATABASE_URL": f"sqlite:///{tmp_path / 'c.sqlite'}", "PATH": ""}
    proc = subprocess.run([sys.executable, "-m", "selector_service", "--port", "0"], env=env, capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
