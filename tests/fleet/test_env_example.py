"""`.env.example` and the README's configuration table list every setting, with its default."""

from __future__ import annotations

import re

import pytest

from tests.support import ROOT
from worker.settings import Settings

EXAMPLE = (ROOT / ".env.example").read_text()
# "NAME=value" (to fill in) or "# NAME=value" (a default, commented out)
ENTRIES = {m.group(2): (m.group(1), m.group(3)) for m in
           re.finditer(r"^(# )?([A-Z][A-Z0-9_]*)=(.*)$", EXAMPLE, re.M)}
FIELDS = {name.upper(): field for name, field in Settings.model_fields.items()}


def shown(default: object) -> str:
    if default is None:
        return ""
    if isinstance(default, bool):
        return str(default).lower()
    return str(default)


def test_every_setting_is_in_env_example():
    missing = sorted(set(FIELDS) - set(ENTRIES))
    assert not missing, f"add to .env.example (one-line comment each): {missing}"


def test_env_example_has_nothing_settings_do_not_read():
    compose_only = {"FLOWER_BASIC_AUTH", "FLOWER_PORT", "SANDBOX_PORT",
                    "COMPOSE_FILE", "COMPOSE_PROFILES", "REDIS_MAXMEMORY",
                    "REDIS_MEMORY_LIMIT", "REDIS_CPUS", "WORKER_MEMORY_LIMIT", "WORKER_CPUS",
                    "BEAT_MEMORY_LIMIT", "BEAT_CPUS", "FLOWER_MEMORY_LIMIT", "FLOWER_CPUS",
                    "METRICS_MEMORY_LIMIT", "METRICS_CPUS"}
    assert set(ENTRIES) - set(FIELDS) == compose_only


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_env_example_shows_the_real_default_with_a_comment(name):
    if name not in ENTRIES:
        pytest.skip("reported by test_every_setting_is_in_env_example")
    commented, value = ENTRIES[name]
    if commented:  # a commented-out line documents the default
        assert value == shown(FIELDS[name].default), name
    else:  # an active line is a credential or id to fill in: empty in the example
        assert value == "", f"{name}: no values in .env.example"
    line = EXAMPLE.splitlines().index(f"{commented or ''}{name}={value}")
    above = EXAMPLE.splitlines()[line - 1]
    assert above.startswith("# ") and "=" not in above.split()[1], f"{name}: comment above"


def test_a_copied_env_example_is_a_valid_configuration(tmp_path):
    copy = tmp_path / ".env"
    copy.write_text(EXAMPLE)
    settings = Settings(_env_file=str(copy))  # empty values mean unset, not invalid
    assert settings.gis_home_lc_id is None and settings.customerio_api_key is None


def test_readme_configuration_table_lists_every_setting():
    readme = (ROOT / "README.md").read_text()
    rows = set(re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", readme, re.M))
    missing = sorted(set(FIELDS) - rows)
    assert not missing, f"add to README.md's configuration table: {missing}"
