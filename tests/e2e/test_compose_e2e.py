"""docker-compose.yml without Docker: its services' own commands as processes against the local PostgreSQL.

prepare -> two selector replicas on two ports over one database -> trainer run A (the client spreads its
requests over both replicas) -> trainer run B under torchrun (2 ranks, each asking for its shard):
every label a cache hit, no SLM forward pass, whichever replica answers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from shared.client import SelectorClient
from shared.data import PackedDataset
from tests.conftest import make_corpus
from tests.deploy.compose import ROOT, argv, environment, load
from tests.servers import free_port, stop_server
from trainer.recipe.metrics import read_metrics

pytestmark = pytest.mark.e2e
LABEL_ROUTES = [f'salt_requests_total{{method="POST",route="{r}",status="200"}}'
                for r in ("/v1/soft-labels", "/v1/soft-labels/by-hash")]
"""Phase one asks by hash first, then sends the windows the service lacks: both are label requests."""
BIN = str(Path(sys.executable).parent)
TORCHRUN = f"{sys.executable} -m torch.distributed.run --standalone --nproc_per_node 2 -m trainer train"


def run(cmd: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}",
                                              "OMP_NUM_THREADS": "1", **env},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{cmd}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"


def wait_ready(procs: list[subprocess.Popen], urls: list[str]) -> None:
    deadline = time.monotonic() + 120
    pending = set(urls)
    while pending and time.monotonic() < deadline:
        for proc in procs:
            assert proc.poll() is None, "a selector replica exited at start-up"
        for url in list(pending):
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    pending.discard(url)
            except httpx.HTTPError:
                pass
        time.sleep(0.2)
    assert not pending, f"not ready: {pending}"


def label_requests(url: str) -> float:
    with SelectorClient(url) as c:
        m = c.metrics()
        return sum(m.get(r, 0.0) for r in LABEL_ROUTES)


def test_compose_services_as_processes(tmp_path: Path, pg_url: str) -> None:
    home = tmp_path / "srv"
    home.mkdir()
    sizes = {"SALT_SOURCE": str(make_corpus(tmp_path / "corpus")), "SALT_SEQ_LEN": "32", "SALT_VOCAB_SIZE": "300",
             "SALT_VAL_FRACTION": "0.2", "SALT_SLM_PRESET": "slm-tiny", "SALT_SLM_STEPS": "10",
             "SALT_BATCH_SIZE": "8", "SALT_WARMUP_STEPS": "1", "SALT_TRAIN_DEVICE": "cpu", "SALT_SERVICE_DEVICE": "cpu",
             "SALT_LLM_PRESET": "llm-tiny", "SALT_LLM_STEPS": "6", "SALT_N_KD": "3",
             "SALT_KD_TRANSITION": "step"}  # phase one: 3 steps of sampled labels, nothing asked after

    run(argv("prepare", env=sizes, home=home), {})
    assert (home / "runs" / "slm" / "checkpoint" / "model.safetensors").is_file()

    ports = [free_port(), free_port()]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    svc_env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", **environment("selector", env=sizes, home=home),
               "SALT_DATABASE_URL": pg_url}
    procs = [subprocess.Popen(argv("selector", env=sizes, home=home,
                                   replace={"0.0.0.0": "127.0.0.1", "8000": str(p)}),
                              cwd=ROOT, env=svc_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for p in ports]
    try:
        wait_ready(procs, urls)
        # The compose health check itself passes against each replica.
        check = load()["services"]["selector"]["healthcheck"]["test"][1:]
        for port in ports:
            run([c.replace("8000", str(port)) for c in check], {})
        both = {**sizes, "SALT_SERVICE_URLS": ",".join(urls)}

        run(argv("trainer", env={**both, "SALT_RUN": "a"}, home=home), {})
        a = home / "runs" / "a"
        assert (a / "report.md").is_file() and json.loads((a / "baseline" / "summary.json").read_text())["steps"] == 6
        summary_a = json.loads((a / "salt" / "summary.json").read_text())
        assert summary_a["service"]["cache_misses"] > 0 and summary_a["service"]["slm_forward_passes"] > 0
        per_replica = [label_requests(u) for u in urls]
        assert summary_a["service"]["requests"] == 3  # micro-batches asked, each by hash, then its missing windows
        assert sum(per_replica) == 2 * 3  # a cold cache: every by-hash ask is followed by an upload
        assert all(n > 0 for n in per_replica), per_replica  # both replicas answered phase one

        # Run B: another LLM, same data order, 2 DDP ranks: every label from the shared PostgreSQL cache.
        cmd = argv("trainer", env={**both, "SALT_RUN": "b", "SALT_LLM_PRESET": "slm-tiny"}, home=home,
                   replace={"salt train": TORCHRUN})
        run(cmd, {})
        summary_b = json.loads((home / "runs" / "b" / "salt" / "summary.json").read_text())
        svc = summary_b["service"]
        assert summary_b["processes"] == 2
        assert svc["requests"] == 3 * 2  # each rank asks for its half of each phase-one batch
        # Every label, and the SLM's validation loss that --kd-until auto compares with (each validation window's
        # scores, asked once), from the cache that run A filled.
        val_windows = min(512, len(PackedDataset(home / "data").val))
        assert svc["cache_hits"] == 3 * 8 + val_windows
        assert svc["cache_misses"] == 0 and svc["slm_forward_passes"] == 0
        steps = [r["step"] for r in read_metrics(home / "runs" / "b" / "salt") if r["kind"] == "train"]
        assert steps == list(range(1, 7))
        assert (home / "runs" / "b" / "report.md").is_file()
    finally:
        for proc in procs:
            stop_server(proc)
