"""Read docker-compose.yml, the Procfile and the Dockerfile the way docker compose, honcho
and docker build do."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
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


class _Loader(yaml.SafeLoader):
    """YAML with compose's merge tags: `!reset` (drop the value of an earlier file) and
    `!override` (replace it instead of merging)."""


class Reset:
    """`!reset`: the key is removed from what earlier files gave."""


class Override:
    def __init__(self, value: Any) -> None:
        self.value = value


def _construct(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


_Loader.add_constructor("!reset", lambda loader, node: Reset())
_Loader.add_constructor("!override", lambda loader, node: Override(_construct(loader, node)))

# Sequences compose merges as a union (the rest of the sequences are replaced).
_UNION = {"secrets", "volumes", "ports", "profiles"}


def load(name: str = "docker-compose.yml") -> dict[str, Any]:
    return yaml.load((ROOT / name).read_text(), Loader=_Loader)  # SafeLoader + 2 tags


def merged(*names: str) -> dict[str, Any]:
    """`docker compose -f A -f B ...`: the files merged the way compose merges them."""
    result: dict[str, Any] = {}
    for name in names:
        result = _merge(result, load(name))
    return result


def _merge(base: Any, over: Any, key: str = "") -> Any:
    if isinstance(over, Override):
        return _strip(over.value)
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            if isinstance(v, Reset):
                out.pop(k, None)
            else:
                out[k] = _merge(out[k], v, k) if k in out else _strip(v)
        return out
    if key in _UNION and isinstance(base, list) and isinstance(over, list):
        return base + [v for v in over if v not in base]
    return _strip(over)


def _strip(value: Any) -> Any:
    """A value with no merge tag left in it (a tag with nothing to act on)."""
    if isinstance(value, Override):
        return _strip(value.value)
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if not isinstance(v, Reset)}
    return value


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


# ---- the Dockerfile, read the way `docker build` does (enough for our own file) ----------

@dataclass
class Stage:
    """One `FROM base AS name` stage and its instructions, in order."""

    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def commands(self, instruction: str) -> list[str]:
        return [args for op, args in self.instructions if op == instruction]


def dockerfile_stages(text: str | None = None) -> dict[str, Stage]:
    """The Dockerfile's stages by name (insertion order = file order)."""
    text = (ROOT / "Dockerfile").read_text() if text is None else text
    joined = re.sub(r"\\\n", " ", text)  # continuation lines
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for raw in joined.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        op, _, args = line.partition(" ")
        op, args = op.upper(), " ".join(args.split())
        if op == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else str(len(stages))
            current = stages[name] = Stage(name, parts[0])
        else:
            assert current is not None, f"{op} before FROM"
            current.instructions.append((op, args))
    return stages


def stage_chain(target: str, stages: dict[str, Stage] | None = None) -> list[Stage]:
    """The stages a target is built from, the first (FROM an image) first."""
    stages = stages or dockerfile_stages()
    chain = [stages[target]]
    while chain[0].base in stages:
        chain.insert(0, stages[chain[0].base])
    return chain


def image_source(path: str, target: str = "fleet") -> Path:
    """The file of this repository that the target's image has at `path` (a COPY)."""
    for stage in reversed(stage_chain(target)):
        for args in reversed(stage.commands("COPY")):
            *sources, dest = args.split()
            if dest == path and len(sources) == 1:
                return ROOT / sources[0]
    raise AssertionError(f"the {target} image copies nothing to {path}")
