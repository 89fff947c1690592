"""Read docker-compose.yml and the Procfile the way docker compose and honcho do."""

from __future__ import annotations

import re
import shlex
from typing import Any

import yaml

from tests.support import ROOT

# $$, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, $VAR
_VARIABLE = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}|\$(\w+)")


class MissingVariable(ValueError):
    """A `${VAR:?message}` whose variable is unset: compose refuses to start."""


def interpolate(text: str, env: dict[str, str]) -> str:
    def replace(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group(1) or m.group(4), m.group(2), m.group(3)
        value = env.get(name)
        unset = value is None or (value == "" and op is not None and op.startswith(":"))
        if op and op.endswith("?") and unset:
            raise MissingVariable(f"{name}: {arg}")
        if op and op.endswith("-") and unset:
            return arg
        return value or ""

    return _VARIABLE.sub(replace, text)


def load(name: str = "docker-compose.yml") -> dict[str, Any]:
    return yaml.safe_load((ROOT / name).read_text())


def service(name: str, compose: dict[str, Any] | None = None) -> dict[str, Any]:
    return (compose or load())["services"][name]


def command(name: str, env: dict[str, str], compose: dict[str, Any] | None = None) -> list[str]:
    """A service's exec-form command, interpolated."""
    cmd = service(name, compose)["command"]
    assert isinstance(cmd, list), f"{name}: command must be in exec form (a list)"
    return [interpolate(str(part), env) for part in cmd]


def environment(name: str, env: dict[str, str],
                compose: dict[str, Any] | None = None) -> dict[str, str]:
    raw = service(name, compose).get("environment") or {}
    return {key: interpolate(str(value), env) for key, value in raw.items()}


def procfile() -> dict[str, str]:
    entries = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_-]+):\s*(.+)$", line)
        if m:
            entries[m.group(1)] = m.group(2)
    return entries


def procfile_command(name: str, env: dict[str, str] | None = None) -> list[str]:
    """A Procfile line as the shell would run it (defaults of ${VAR:-x} when unset)."""
    return shlex.split(interpolate(procfile()[name], env or {}))
