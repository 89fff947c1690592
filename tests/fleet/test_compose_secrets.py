"""docker-compose.secrets.yml (every secret from a file) kept honest without a Docker
engine, as tests/fleet/test_compose.py does: the merged configuration is read the way
compose merges it, then the services' own commands run as processes with the secret
files where compose would mount them. Redis and the fleet read one password file; a
fleet configured only by *_FILE variables runs a GIS cold start; no process's command
line or environment holds a secret (what `docker inspect` would show)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_py
import requests

from tests.support import ROOT, wait_for
from tests.support.compose import command, environment, interpolate, merged, service
from tests.support.gis import WORLD, Truth, assert_clean, received
from tests.support.processes import Process
from worker.gis_sync.run_state import GIS
from worker.settings import FILE_SETTINGS, get_settings

sys.path.insert(0, str(ROOT / "scripts"))
from redis_server import free_port, server_binary, wait_ready

COMPOSE = merged("docker-compose.yml", "docker-compose.secrets.yml")
FILES = ("docker-compose.yml", "docker-compose.secrets.yml")
FLEET = ("worker", "beat", "flower", "metrics")
SECRET_SETTINGS = {name.upper() for name in FILE_SETTINGS} - {"REDIS_URL"}
COMPOSE_SECRETS = {"FLOWER_BASIC_AUTH"}
DOT_ENV = {"GIS_HOME_LC_ID": "1340", "CUSTOMERIO_SITE_ID": "site"}  # .env, no secret in it
SECRETS = {"redis_password": "Pw-from-a-secret-7", "flower_basic_auth": "admin:fl0wer-file",
           "metrics_basic_auth": "prom:m3trics-file"}


def mounted(path: str, secrets_dir: Path) -> str:
    """A path of the container, /run/secrets/NAME, where the test keeps that file."""
    return path.replace("/run/secrets/", f"{secrets_dir}/")


# ---- the merged file's properties ------------------------------------------------------

def test_no_secret_is_needed_in_dot_env_nor_shown_in_any_container():
    for name in COMPOSE["services"]:
        if "sandbox" in service(name, COMPOSE).get("profiles", []):
            continue
        shown = environment(name, DOT_ENV, COMPOSE)  # no MissingVariable: nothing required
        assert not set(shown) & (SECRET_SETTINGS | COMPOSE_SECRETS | {"REDISCLI_AUTH"}), name
        text = " ".join([*command(name, DOT_ENV, COMPOSE), *shown.values(),
                         *service(name, COMPOSE).get("healthcheck", {}).get("test", [])])
        assert "requirepass" not in text.replace("requirepass $(cat", ""), name
        mounts = set(service(name, COMPOSE).get("secrets", []))
        for variable, value in shown.items():
            if variable.endswith("_FILE"):
                secret = value.removeprefix("/run/secrets/")
                assert secret in mounts, (name, variable)
                assert COMPOSE["secrets"][secret] == {"file": f"./secrets/{secret}"}


def test_every_secret_setting_of_the_fleet_is_read_from_a_mounted_file():
    worker = environment("worker", DOT_ENV, COMPOSE)
    # All but the exporter's login (metrics has it) and a sentinel password (no sentinels).
    assert {v.removesuffix("_FILE") for v in worker if v.endswith("_FILE")} == \
        SECRET_SETTINGS - {"METRICS_BASIC_AUTH", "REDIS_SENTINEL_PASSWORD"}
    assert worker["REDIS_URL"] == "redis://redis:6379/0"  # the password is not in it
    for name in ("flower", "metrics"):  # they read Redis only: no API key is mounted
        assert not set(service(name, COMPOSE)["secrets"]) & {
            "customerio_api_key", "gis_access_token", "segment_access_token"}
    assert environment("metrics", DOT_ENV, COMPOSE)["METRICS_BASIC_AUTH_FILE"] == \
        "/run/secrets/metrics_basic_auth"
    assert environment("flower", DOT_ENV, COMPOSE)["FLOWER_BASIC_AUTH_FILE"] == \
        "/run/secrets/flower_basic_auth"


# ---- the services, for real ------------------------------------------------------------

@pytest.fixture
def secrets_redis(tmp_path: Path) -> Iterator[dict]:
    """Compose's redis command from the merged files, its secret where compose mounts it,
    the image's entrypoint a stand-in that runs what it is given (the real one drops to
    the redis user first)."""
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    for name in COMPOSE["secrets"]:
        (secrets_dir / name).write_text(SECRETS.get(name, "") + "\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    entrypoint = bin_dir / "docker-entrypoint.sh"
    entrypoint.write_text('#!/bin/sh\nexec "$@"\n')
    entrypoint.chmod(0o755)
    (bin_dir / "redis-server").symlink_to(server_binary())
    port = free_port()
    shell, flag, script = command("redis", DOT_ENV, COMPOSE)
    script = mounted(script, secrets_dir).replace(
        "redis-server ", f"redis-server --port {port} --bind 127.0.0.1 --dir {tmp_path} ", 1)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen([shell, flag, script], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    try:
        wait_ready(port, proc)
        yield {"port": port, "proc": proc, "secrets": secrets_dir, "path": env["PATH"]}
    finally:
        proc.terminate()
        proc.wait(10)


def test_redis_takes_its_password_from_the_file_and_shows_it_nowhere(secrets_redis):
    port, password = secrets_redis["port"], SECRETS["redis_password"]
    with pytest.raises(redis_py.AuthenticationError):
        redis_py.Redis(port=port).ping()
    assert redis_py.Redis(port=port, password=password).ping()
    cmdline = Path(f"/proc/{secrets_redis['proc'].pid}/cmdline").read_bytes()
    assert b"redis-server" in cmdline and password.encode() not in cmdline  # `ps` shows none
    # The health check, as the file says, with the secret where compose mounts it.
    test = service("redis", COMPOSE)["healthcheck"]["test"]
    check = mounted(interpolate(test[1], {}), secrets_redis["secrets"])
    check = check.replace("redis-cli ping", f"redis-cli -p {port} ping")
    done = subprocess.run(["sh", "-c", check], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PATH": secrets_redis["path"]})
    assert done.stdout.strip() == "PONG", done.stdout + done.stderr


def fleet_env(name: str, secrets_redis: dict, secrets_dir: Path) -> dict[str, str]:
    """A service's environment from the merged files, as its container would have it."""
    env = {k: mounted(v, secrets_dir) for k, v in environment(name, DOT_ENV, COMPOSE).items()}
    env["REDIS_URL"] = env["REDIS_URL"].replace("redis:6379", f"127.0.0.1:{secrets_redis['port']}")
    if "FLOWER_CONF" in env:
        env["FLOWER_CONF"] = str(ROOT / "deploy" / "flowerconfig.py")
    return env


@pytest.mark.slow
def test_a_fleet_configured_only_by_secret_files_runs_a_gis_cold_start(
        sandbox_env, secrets_redis, other_fleet, monkeypatch):
    admin = sandbox_env.admin
    admin.reset(WORLD)
    truth = Truth(admin)
    secrets_dir = secrets_redis["secrets"]
    # The sandbox's keys go into their secret files; only *_FILE stays in the environment.
    for variable in SECRET_SETTINGS:
        value = os.environ.get(variable)
        if value:
            (secrets_dir / variable.lower()).write_text(value + "\n")
            monkeypatch.delenv(variable)
    monkeypatch.delenv("REDIS_URL")
    for variable, value in fleet_env("worker", secrets_redis, secrets_dir).items():
        monkeypatch.setenv(variable, value)
    get_settings.cache_clear()

    worker = other_fleet.worker("secrets-1")
    environ = Path(f"/proc/{worker.proc.pid}/environ").read_bytes().decode(errors="replace")
    shown = dict(line.split("=", 1) for line in environ.split("\0") if "=" in line)
    assert not set(shown) & SECRET_SETTINGS  # what `docker inspect` would list
    for secret in [*SECRETS.values(), *(p.read_text().strip() for p in secrets_dir.iterdir())]:
        assert not secret or secret not in environ

    run_id = other_fleet.send_task("gis.scan").id
    run = wait_for(lambda: GIS.summary(run_id), f"the summary of run {run_id}", 120,
                   alive=[worker])
    assert run["status"] == "finished_with_errors"  # unusable applications only
    assert set(admin.customerio_profiles()["profiles"]) == truth.valid_people()
    assert received(admin) and admin.customerio_events()["duplicates"] == 0
    assert_clean(admin)


@pytest.mark.slow
def test_flower_and_the_exporter_take_their_logins_from_files(secrets_redis, tmp_path):
    secrets_dir, started = secrets_redis["secrets"], []
    bin_dir = str(Path(sys.executable).parent)
    try:
        for name, secret in (("metrics", "metrics_basic_auth"), ("flower", "flower_basic_auth")):
            port = free_port()
            env = {**{k: v for k, v in os.environ.items()
                      if k not in SECRET_SETTINGS | COMPOSE_SECRETS},
                   **fleet_env(name, secrets_redis, secrets_dir),
                   "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                   "FLOWER_ADDRESS": "127.0.0.1"}
            args = [a.replace("5555", str(port)).replace("9808", str(port))
                    for a in command(name, DOT_ENV, COMPOSE)]
            proc = Process(name, args, env, cwd=tmp_path, logs=tmp_path)
            started.append(proc)
            url = f"http://127.0.0.1:{port}/metrics"
            wait_for(lambda u=url: _answers(u), f"{name} on {port}", 60, alive=[proc])
            assert requests.get(url, timeout=5).status_code == 401
            login = tuple(SECRETS[secret].split(":", 1))
            assert requests.get(url, auth=login, timeout=10).status_code == 200
    finally:
        for proc in started:
            proc.stop()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code in (200, 401)
    except requests.ConnectionError:
        return False
