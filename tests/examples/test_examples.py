"""The two examples under examples/ run as a user runs them: a plain PyTorch loop and Hugging Face's Trainer,
each training a tiny Hugging Face model with SALT against a real selector service."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.client import SelectorClient
from shared.data import PackedDataset
from tests.hf_models import config_file
from tests.servers import ROOT, start_server, stop_server

LABEL_ROUTE = 'salt_requests_total{method="POST",route="/v1/soft-labels",status="200"}'


@pytest.fixture
def service(tiny_checkpoint: Path, tmp_path: Path) -> Iterator[str]:
    proc, url = start_server(tiny_checkpoint, f"sqlite:///{tmp_path / 'cache.sqlite'}")
    try:
        yield url
    finally:
        stop_server(proc)


@pytest.mark.parametrize("example", ["own_loop.py", "hf_trainer.py"])
def test_example_trains_with_labels_in_phase_one_only(example: str, tiny_dataset: PackedDataset, tmp_path: Path,
                                                      service: str) -> None:
    model_cfg = config_file(tmp_path / "llama", "llama", tiny_dataset)
    out = tmp_path / "out"
    cmd = [sys.executable, str(ROOT / "examples" / example), "--data", str(tiny_dataset.path), "--service-url",
           service, "--model", str(model_cfg), "--out", str(out), "--steps", "6", "--n-kd", "3", "--batch-size", "4",
           "--kd-k", "8"]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])["summary"]
    assert summary["steps"] == 6 and summary["kd_steps"] == 3
    assert summary["service"]["requests"] == 3 and summary["service"]["fallback_batches"] == 0
    with SelectorClient(service) as client:
        assert client.metrics()[LABEL_ROUTE] == 3  # one request per phase-one step, none after
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(str(out), local_files_only=True)
    assert model.config.vocab_size == tiny_dataset.vocab_size
