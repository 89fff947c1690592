"""`make run` starts what docker compose starts: the Procfile and compose commands agree."""

from __future__ import annotations

import re

import pytest

from tests.support import ROOT
from tests.support.compose import procfile, procfile_command, service

SERVICES = ("worker", "beat", "flower", "metrics", "sandbox")


@pytest.mark.parametrize("name", SERVICES)
def test_procfile_runs_the_compose_command(name):
    # With its ${VAR:-default}s at their defaults, each line is the compose command.
    assert procfile_command(name) == service(name)["command"]


def test_procfile_has_only_the_compose_services():
    assert set(procfile()) == set(SERVICES)


def test_local_overrides_only_choose_ports_and_loopback():
    env = {"FLOWER_PORT": "6001", "SANDBOX_HOST": "127.0.0.1", "SANDBOX_PORT": "6002",
           "METRICS_HOST": "127.0.0.1", "METRICS_PORT": "6003"}
    assert procfile_command("flower", env)[-1] == "--port=6001"
    assert procfile_command("metrics", env)[-4:] == ["--host", "127.0.0.1", "--port", "6003"]
    sandbox = procfile_command("sandbox", env)
    assert sandbox[sandbox.index("--host") + 1] == "127.0.0.1"
    assert sandbox[sandbox.index("--port") + 1] == "6002"
    # No other variable can change what runs.
    names = set(re.findall(r"\$\{(\w+)", " ".join(procfile().values())))
    assert names == set(env)


def test_run_local_starts_the_procfile_processes():
    text = (ROOT / "scripts" / "run_local.py").read_text()
    assert '["worker", "beat", "flower", "metrics"]' in text and '["sandbox"]' in text
