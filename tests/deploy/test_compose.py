"""Static checks of the deployment files: compose validates and has the services the README describes."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.deploy.compose import ROOT, load


@pytest.mark.compose
def test_docker_compose_config_is_valid() -> None:
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose is missing: apt-get install docker-compose (.ci/run does)"
    for args in ([], ["--profile", "train"]):
        done = subprocess.run([exe, *args, "config", "-q"], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr


def test_services_health_checks_volumes_and_dependencies() -> None:
    spec = load()
    services = spec["services"]
    assert set(services) == {"db", "selector", "prepare", "trainer"}
    assert {"pgdata", "salt"} <= set(spec["volumes"])

    db = services["db"]
    assert db["image"].startswith("postgres")
    assert "pgdata:/var/lib/postgresql/data" in db["volumes"]
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])

    sel = services["selector"]
    assert sel["command"][:2] == ["salt", "serve"] and "0.0.0.0" in sel["command"]
    assert sel["environment"]["SALT_DATABASE_URL"].startswith("postgresql+psycopg://") and "@db:" in \
        sel["environment"]["SALT_DATABASE_URL"]
    assert "salt:/srv/salt" in sel["volumes"]  # the SLM checkpoint prepare wrote
    assert "/readyz" in " ".join(sel["healthcheck"]["test"])
    assert sel["depends_on"]["db"]["condition"] == "service_healthy"
    assert sel["depends_on"]["prepare"]["condition"] == "service_completed_successfully"
    # Scalable (`--scale selector=N`): no fixed container name, no published host port.
    assert "container_name" not in sel and "ports" not in sel

    prep = services["prepare"]
    script = prep["command"][0]
    assert "salt prepare" in script and "salt train" in script and "--preset ${SALT_SLM_PRESET:-slm}" in script
    assert "salt:/srv/salt" in prep["volumes"]

    tr = services["trainer"]
    assert tr["profiles"] == ["train"]
    script = tr["command"][0]
    assert "salt train --mode baseline" in script and "salt train --mode salt" in script and "salt report" in script
    assert "http://selector:8000" in script
    assert tr["depends_on"]["selector"]["condition"] == "service_healthy"


def test_dockerfile_is_slim_non_root_and_installs_the_project() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE=python:3.11-slim" in text and "ARG TORCH_INDEX=" in text
    assert "\nUSER salt" in text
    assert "COPY shared" in text and "-c constraints.txt ." in text
    assert "setup.py" in text and "postproc.available()" in text  # the C extension is built and checked
