"""docker-compose.yml kept honest without a Docker engine.

The static tests read the file for the properties a production fleet needs; the live
test starts the services' own commands (read from the file) as local processes against
a Redis started from the compose file's redis command, and checks what compose would:
the worker answers its health check, beat sends the GIS scan, Flower wants a login.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from celery import Celery

from tests.support import ROOT, wait_for
from tests.support.compose import (
    MissingVariable,
    command,
    environment,
    interpolate,
    load,
    service,
)
from tests.support.processes import Process
from worker.settings import Settings

sys.path.insert(0, str(ROOT / "scripts"))
from redis_server import free_port, server_binary, wait_ready  # noqa: E402

COMPOSE = load()
SECRETS = {"REDIS_PASSWORD": "Pw4compose7test", "FLOWER_BASIC_AUTH": "tester:fl0wer-pass"}
FLEET = ("worker", "beat", "flower")


def duration_seconds(text: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", str(text))
    assert parts, f"not a compose duration: {text!r}"
    return sum(float(n) * units[u] for n, u in parts)


# ---- the file's properties -------------------------------------------------------------

def test_redis_is_persistent_password_protected_and_never_evicts():
    cmd = command("redis", SECRETS)
    joined = " ".join(cmd)
    assert "--appendonly yes" in joined
    assert "--maxmemory-policy noeviction" in joined
    assert cmd[cmd.index("--requirepass") + 1] == SECRETS["REDIS_PASSWORD"]
    redis = service("redis")
    assert redis["image"].startswith("redis:7")
    assert any(v.endswith(":/data") for v in redis["volumes"])
    # The health check authenticates through the environment, not the command line.
    health = redis["healthcheck"]["test"]
    assert "redis-cli" in health and "ping" in health
    assert not any("REDIS_PASSWORD" in part or part == "-a" for part in health)
    assert environment("redis", SECRETS)["REDISCLI_AUTH"] == SECRETS["REDIS_PASSWORD"]


def test_compose_refuses_to_start_without_the_redis_password():
    with pytest.raises(MissingVariable, match="REDIS_PASSWORD"):
        command("redis", {})
    with pytest.raises(MissingVariable, match="REDIS_PASSWORD"):
        environment("worker", {"FLOWER_BASIC_AUTH": "a:b"})


def test_worker_is_scalable_and_stops_warm():
    worker = service("worker")
    assert worker["command"] == ["celery", "-A", "worker", "worker", "--loglevel=INFO"]
    assert "container_name" not in worker and "ports" not in worker
    check = " ".join(worker["healthcheck"]["test"])
    assert "celery -A worker inspect ping -d celery@$${HOSTNAME}" in check
    # Longer than the hard time limit, so a warm shutdown never cuts a task short.
    assert duration_seconds(worker["stop_grace_period"]) > Settings().task_time_limit
    env_file = worker["env_file"]
    assert {"path": ".env", "required": False} in env_file
    url = environment("worker", SECRETS)["REDIS_URL"]
    assert url == f"redis://:{SECRETS['REDIS_PASSWORD']}@redis:6379/0"


def test_exactly_one_beat_and_no_embedded_beat():
    beat = service("beat")
    assert beat["command"] == ["celery", "-A", "worker", "beat"]
    assert beat.get("deploy", {}).get("replicas", 1) == 1
    for name, svc in COMPOSE["services"].items():
        cmd = svc.get("command") or []
        if name != "beat":
            assert "beat" not in cmd and "--beat" not in cmd and "-B" not in cmd, name


def test_flower_needs_a_login_and_listens_on_localhost_only():
    flower = service("flower")
    assert flower["command"][:4] == ["celery", "-A", "worker", "flower"]
    with pytest.raises(MissingVariable, match="FLOWER_BASIC_AUTH"):
        environment("flower", {"REDIS_PASSWORD": "x"})
    assert environment("flower", SECRETS)["FLOWER_BASIC_AUTH"] == SECRETS["FLOWER_BASIC_AUTH"]
    ports = [interpolate(p, {}) for p in flower["ports"]]
    assert ports == ["127.0.0.1:5555:5555"]


def test_only_flower_and_the_sandbox_publish_ports_and_only_on_localhost():
    for name, svc in COMPOSE["services"].items():
        for port in svc.get("ports", []):
            assert name in ("flower", "sandbox"), name
            assert interpolate(port, {}).startswith("127.0.0.1:"), (name, port)


def test_sandbox_profile_and_override_point_the_fleet_at_it():
    from sandbox.credentials import env_for

    sandbox = service("sandbox")
    assert sandbox["profiles"] == ["sandbox"]
    cmd = sandbox["command"]
    assert cmd[:3] == ["python", "-m", "sandbox"] and cmd[cmd.index("--port") + 1] == "8500"
    override = load("docker-compose.sandbox.yml")
    expected = env_for("http://sandbox:8500")
    for name in ("worker", "beat", "flower"):
        assert override["services"][name]["environment"] == expected, name


def test_dockerfile_runs_unprivileged_without_secrets():
    lines = [ln.strip() for ln in (ROOT / "Dockerfile").read_text().splitlines()
             if ln.strip() and not ln.strip().startswith("#")]
    assert lines[0] == "FROM python:3.11-slim"
    users = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), "the image must end as a non-root user"
    assert lines.index(f"USER {users[-1]}") > max(i for i, ln in enumerate(lines)
                                                  if ln.startswith("RUN "))
    assert lines[-1].startswith("CMD [")  # exec form
    text = "\n".join(lines)
    assert "pip install ." in text
    for package in ("worker/", "beat/", "sandbox/", "scripts/"):
        assert f"COPY {package}" in text
    assert not re.search(r"(?i)^(ENV|ARG)\b.*(KEY|TOKEN|SECRET|PASSWORD|BASIC_AUTH)", text, re.M)
    assert "COPY . " not in text and ".env" not in text
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert ".env" in ignored and ".git" in ignored


# ---- the services, for real --------------------------------------------------------------

@pytest.fixture
def compose_stack(tmp_path: Path) -> Iterator[dict]:
    """redis, worker, beat and flower from docker-compose.yml, as local processes."""
    port, flower_port = free_port(), free_port()
    redis_args = [server_binary(), *command("redis", SECRETS)[1:],
                  "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path)]
    redis = subprocess.Popen(redis_args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    started: list[Process] = []
    try:
        wait_ready_with_auth(port, redis)
        bin_dir = str(Path(sys.executable).parent)
        base = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
                "GIS_SCAN_INTERVAL": "2", "FLOWER_ADDRESS": "127.0.0.1", **SECRETS}
        # No API credentials at all (conftest removed them): the fleet must start anyway.
        for name in FLEET:
            env = {**base, **environment(name, SECRETS)}
            env["REDIS_URL"] = env["REDIS_URL"].replace("@redis:6379", f"@127.0.0.1:{port}")
            args = command(name, SECRETS)
            if name == "flower":  # compose maps the port; here it must be a free one
                args = [a.replace("--port=5555", f"--port={flower_port}") for a in args]
            started.append(Process(name, args, env, cwd=tmp_path, logs=tmp_path))
        yield {"redis_port": port, "redis_proc": redis, "flower_port": flower_port,
               "services": {s.name: s for s in started}, "env": env}
    finally:
        for svc in started:
            svc.stop()
        redis.terminate()
        redis.wait(10)


def wait_ready_with_auth(port: int, proc: subprocess.Popen) -> None:
    """Like redis_server.wait_ready, which sends a bare PING: NOAUTH also means 'up'."""
    try:
        wait_ready(port, proc, seconds=1)
    except RuntimeError:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"PING\r\n")
            assert s.recv(64).startswith(b"-NOAUTH")


def redis_cli() -> str | None:
    found = shutil.which("redis-cli")
    bundled = Path(server_binary()).with_name("redis-cli")
    return found or (str(bundled) if bundled.exists() else None)


@pytest.mark.slow
def test_compose_services_start_and_answer(compose_stack):
    port = compose_stack["redis_port"]
    svc = compose_stack["services"]
    everything = list(svc.values())

    # redis: the health check's own command, authenticated by REDISCLI_AUTH only.
    cli = redis_cli()
    if cli:
        health = service("redis")["healthcheck"]["test"][1:]  # drop "CMD"
        args = [cli, "-p", str(port), *health[1:]]
        with_auth = {**os.environ, **environment("redis", SECRETS)}
        assert subprocess.run(args, env=with_auth, capture_output=True, text=True,
                              timeout=10).stdout.strip() == "PONG"
        without = {k: v for k, v in with_auth.items() if k != "REDISCLI_AUTH"}
        out = subprocess.run(args, env=without, capture_output=True, text=True, timeout=10)
        assert "NOAUTH" in out.stdout + out.stderr

    # worker: answers ping through the password-protected Redis.
    url = compose_stack["env"]["REDIS_URL"]
    node = f"celery@{socket.gethostname()}"
    client = Celery(broker=url, backend=url)
    try:
        wait_for(lambda: any(node in r for r in client.control.ping(timeout=0.5) or []),
                 "the worker to answer ping", alive=everything)
        # ... and the compose health check itself passes ($$ is compose's escape for $).
        check = " ".join(service("worker")["healthcheck"]["test"][1:]).replace("$$", "$")
        env = {**compose_stack["env"], "HOSTNAME": socket.gethostname()}
        result = subprocess.run(["sh", "-c", check], env=env, cwd=ROOT, capture_output=True,
                                text=True, timeout=30)
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        client.close()

    # beat: started, and the GIS scan it sends reaches the worker through Redis
    # (whether gis.scan then succeeds is the GIS job's business, not the plumbing's).
    # (The worker's banner lists "gis.scan" too: match a received message, not the name.)
    received = re.compile(r"gis\.scan\[[0-9a-f-]{36}\] received|unregistered task of type "
                          r"'gis\.scan'")
    wait_for(lambda: received.search(svc["worker"].log()), "beat's gis.scan at the worker",
             alive=everything)
    assert "celery beat" in svc["beat"].log() and "is starting" in svc["beat"].log()

    # flower: open health check, everything else behind the login.
    base = f"http://127.0.0.1:{compose_stack['flower_port']}"

    def healthy() -> bool:
        try:
            return requests.get(f"{base}/healthcheck", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    wait_for(healthy, "flower's /healthcheck", alive=everything)
    user, password = SECRETS["FLOWER_BASIC_AUTH"].split(":", 1)
    assert requests.get(f"{base}/", timeout=5).status_code == 401
    assert requests.get(f"{base}/", auth=(user, "wrong"), timeout=5).status_code == 401
    assert requests.get(f"{base}/api/workers", timeout=5).status_code == 401
    assert requests.get(f"{base}/", auth=(user, password), timeout=5).status_code == 200
    workers = requests.get(f"{base}/api/workers?refresh=1", auth=(user, password), timeout=15)
    assert workers.status_code == 200 and node in workers.json()

    # SIGTERM (what compose sends) gives Celery's warm shutdown, then the worker exits.
    svc["worker"].stop()
    assert svc["worker"].proc.returncode is not None
    assert "Warm shutdown" in svc["worker"].log()
