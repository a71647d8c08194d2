"""docker-compose.yml as data: its services, and their commands as local command lines.

The compose-equivalent end-to-end test runs exactly what the compose services run: the command lines
are read from docker-compose.yml, with compose's ``${NAME:-default}`` interpolation done here and the
container paths and addresses replaced by local ones.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
HOME = "/srv/salt"
"""Where the ``salt`` volume is mounted in the containers."""
_VAR = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def load() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ``${NAME}`` / ``${NAME:-default}`` and ``$$`` (a literal ``$``), the forms the file uses."""
    return "$".join(_VAR.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), part) for part in text.split("$$"))


def argv(service: str, *, env: dict[str, str], home: Path, replace: dict[str, str] | None = None) -> list[str]:
    """The service's entrypoint + command, interpolated, with ``/srv/salt`` at ``home``."""
    spec = load()["services"][service]
    parts = list(spec.get("entrypoint") or []) + list(spec["command"])
    out = []
    for part in parts:
        part = interpolate(part, env).replace(HOME, str(home))
        for old, new in (replace or {}).items():
            part = part.replace(old, new)
        out.append(part)
    return out


def environment(service: str, *, env: dict[str, str], home: Path) -> dict[str, str]:
    spec = load()["services"][service]
    return {k: interpolate(str(v), env).replace(HOME, str(home)) for k, v in (spec.get("environment") or {}).items()}
