"""docker-compose.yml and the Dockerfile kept honest without a Docker engine.

The static tests read the files for the properties a production fleet needs (health checks,
limits, log rotation, the image's layers and targets); the live test starts the services'
own commands (read from the file) as local processes against a Redis started from the
compose file's redis command, and checks what compose would: Redis's memory cap is in
force, every health check passes when run as the file says, beat sends the GIS scan,
Flower wants a login everywhere but /healthcheck, the exporter everywhere.
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
from celery.beat import DEFAULT_MAX_INTERVAL, PersistentScheduler

from tests.support import ROOT, wait_for
from tests.support.compose import (
    MissingVariable,
    command,
    dockerfile_stages,
    environment,
    image_source,
    interpolate,
    load,
    service,
    stage_chain,
)
from tests.support.processes import Process
from worker import store
from worker.settings import Settings

sys.path.insert(0, str(ROOT / "scripts"))
from redis_server import free_port, server_binary, wait_ready

COMPOSE = load()
SECRETS = {"REDIS_PASSWORD": "Pw4compose7test", "FLOWER_BASIC_AUTH": "tester:fl0wer-pass",
           "METRICS_BASIC_AUTH": "prom:m3trics-pass"}
FLEET = ("worker", "beat", "flower", "metrics")
LONG_RUNNING = ("redis", "worker", "beat", "flower", "metrics", "sandbox")


def duration_seconds(text: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", str(text))
    assert parts, f"not a compose duration: {text!r}"
    return sum(float(n) * units[u] for n, u in parts)


def size_bytes(text: str) -> int:
    """A compose memory size (512m, 1g) or a Redis one (256mb, 1gb) in bytes."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmg]?)b?", str(text).strip().lower())
    assert m, f"not a memory size: {text!r}"
    return int(float(m.group(1)) * 1024 ** " kmg".index(m.group(2) or " "))


def limits(name: str, env: dict[str, str] | None = None) -> dict[str, str]:
    raw = service(name)["deploy"]["resources"]["limits"]
    return {key: interpolate(str(value), env or {}) for key, value in raw.items()}


def health_command(name: str) -> list[str]:
    """A service's health check as argv (CMD) or a shell line (CMD-SHELL), $$ unescaped."""
    test = [interpolate(part, {}) for part in service(name)["healthcheck"]["test"]]
    if test[0] == "CMD-SHELL":
        return ["sh", "-c", " ".join(test[1:])]
    assert test[0] == "CMD", test
    return test[1:]


def run_health_check(name: str, port: str, published: int, env: dict[str, str]
                     ) -> subprocess.CompletedProcess[str]:
    """A service's health check against its port as published here (a free one)."""
    check = [part.replace(f":{port}/", f":{published}/") for part in health_command(name)]
    return subprocess.run(check, env=env, capture_output=True, text=True, timeout=30)


# ---- the file's properties -------------------------------------------------------------

def test_redis_is_persistent_password_protected_capped_and_never_evicts():
    cmd = command("redis", SECRETS)
    joined = " ".join(cmd)
    assert "--appendonly yes" in joined
    assert "--maxmemory-policy noeviction" in joined
    # A memory cap, from .env (REDIS_MAXMEMORY), well inside the container's own limit: the
    # AOF rewrite forks, and the copy-on-write pages need room beside the data.
    maxmemory = cmd[cmd.index("--maxmemory") + 1]
    assert maxmemory == "256mb"
    assert command("redis", {**SECRETS, "REDIS_MAXMEMORY": "1gb"})[cmd.index("--maxmemory") + 1] \
        == "1gb"
    assert size_bytes(maxmemory) * 2 <= size_bytes(limits("redis")["memory"])
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
    assert worker["command"] == ["celery", "-A", "worker", "worker", "--pool=prefork",
                                 "--concurrency=4"]
    assert worker["build"] == {"context": ".", "target": "fleet"}
    assert "container_name" not in worker and "ports" not in worker
    check = " ".join(worker["healthcheck"]["test"])
    assert "syncfleet health --worker celery@$${HOSTNAME}" in check
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


def test_no_command_sets_a_log_level():
    # The app configures logging from LOG_LEVEL itself: a flag would override it.
    for name, svc in COMPOSE["services"].items():
        cmd = " ".join(svc.get("command") or [])
        assert "--loglevel" not in cmd and " -l " not in f"{cmd} ", name


def test_flower_needs_a_login_and_listens_on_localhost_only():
    flower = service("flower")
    assert flower["command"] == ["celery", "-A", "worker", "flower", "--port=5555"]
    # Its configuration file (the /metrics login) is the one the image has from deploy/.
    conf = environment("flower", SECRETS)["FLOWER_CONF"]
    assert image_source(conf) == ROOT / "deploy" / "flowerconfig.py"
    with pytest.raises(MissingVariable, match="FLOWER_BASIC_AUTH"):
        environment("flower", {"REDIS_PASSWORD": "x"})
    assert environment("flower", SECRETS)["FLOWER_BASIC_AUTH"] == SECRETS["FLOWER_BASIC_AUTH"]
    ports = [interpolate(p, {}) for p in flower["ports"]]
    assert ports == ["127.0.0.1:5555:5555"]


def test_the_exporter_needs_a_login_and_listens_on_localhost_only():
    metrics = service("metrics")
    assert metrics["command"] == ["syncfleet", "metrics", "--host", "0.0.0.0", "--port", "9808"]
    with pytest.raises(MissingVariable, match="METRICS_BASIC_AUTH"):
        environment("metrics", {"REDIS_PASSWORD": "x"})
    assert [interpolate(p, {}) for p in metrics["ports"]] == ["127.0.0.1:9808:9808"]
    assert [interpolate(p, {"METRICS_PORT": "9900"}) for p in metrics["ports"]] == [
        "127.0.0.1:9900:9808"]


def test_only_flower_the_exporter_and_the_sandbox_publish_ports_and_only_on_localhost():
    for name, svc in COMPOSE["services"].items():
        for port in svc.get("ports", []):
            assert name in ("flower", "metrics", "sandbox"), name
            assert interpolate(port, {}).startswith("127.0.0.1:"), (name, port)


def test_sandbox_profile_and_override_point_the_fleet_at_it():
    from sandbox.credentials import env_for

    sandbox = service("sandbox")
    assert sandbox["profiles"] == ["sandbox"]
    # Its own image, built from the Dockerfile's sandbox target: the fleet's has no sandbox.
    assert sandbox["build"] == {"context": ".", "target": "sandbox"}
    assert sandbox["image"] != service("worker")["image"]
    assert {service(n)["image"] for n in FLEET} == {"syncfleet:latest"}
    cmd = sandbox["command"]
    assert cmd[:3] == ["python", "-m", "sandbox"] and cmd[cmd.index("--port") + 1] == "8500"
    override = load("docker-compose.sandbox.yml")
    expected = env_for("http://sandbox:8500")
    for name in FLEET:
        assert override["services"][name]["environment"] == expected, name
    for name in ("worker", "beat"):  # the first scan finds the sandbox up
        assert override["services"][name]["depends_on"]["sandbox"] == {
            "condition": "service_healthy"}, name


def test_every_long_running_service_has_a_health_check():
    assert set(COMPOSE["services"]) == set(LONG_RUNNING)
    for name in LONG_RUNNING:
        check = service(name)["healthcheck"]
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert duration_seconds(check["interval"]) and check["retries"] >= 3, name
        assert duration_seconds(check.get("timeout", "30s")) < duration_seconds(
            check["interval"]), name


def test_beats_health_check_allows_for_how_often_beat_saves_its_schedule():
    # `syncfleet health --beat`: beat saves its schedule file every sync_every seconds,
    # checked after each sleep of at most beat_max_loop_interval: a younger file than
    # that must always count as alive.
    from worker import app, health

    assert health_command("beat") == ["syncfleet", "health", "--beat"]
    assert health.BEAT_SCHEDULE.startswith(app.conf.beat_schedule_filename)
    loop = app.conf.beat_max_loop_interval or DEFAULT_MAX_INTERVAL
    assert PersistentScheduler.sync_every + loop < health.BEAT_SCHEDULE_MAX_AGE
    # Beat's own liveness only: its schedule file is written at its start, so a short
    # start period does; the fleet's state (scans, halted runs) is not beat's check.
    start = duration_seconds(service("beat")["healthcheck"]["start_period"])
    assert 30 <= start <= 120


def test_every_service_has_limits_sized_for_a_small_vm_and_overridable():
    total_cpus, total_memory = 0.0, 0
    for name in LONG_RUNNING:
        limit = limits(name)
        total_cpus += float(limit["cpus"])
        total_memory += size_bytes(limit["memory"])
        assert 0 < float(limit["cpus"]) <= 2, name  # a 2-core VM
    # The fleet without the sandbox fits a 4 GB VM even with every limit reached.
    assert total_memory - size_bytes(limits("sandbox")["memory"]) <= 3 * 1024 ** 3
    # The fleet's limits come from .env (.env.example, "docker compose only").
    for name in ("redis", "worker", "beat", "flower", "metrics"):
        prefix = name.upper()
        raised = limits(name, {f"{prefix}_CPUS": "2", f"{prefix}_MEMORY_LIMIT": "3g"})
        assert raised == {"cpus": "2", "memory": "3g"}, name


def test_every_service_rotates_its_logs():
    for name in LONG_RUNNING:
        logging = service(name)["logging"]
        assert logging["driver"] == "json-file", name
        assert size_bytes(logging["options"]["max-size"]) <= 100 * 1024 ** 2, name
        assert 1 <= int(logging["options"]["max-file"]) <= 10, name


def test_dockerfile_runs_unprivileged_without_secrets():
    text = (ROOT / "Dockerfile").read_text()
    stages = dockerfile_stages(text)
    assert next(iter(stages.values())).base.startswith("python:3.11-slim@sha256:")
    for target in ("fleet", "sandbox"):
        instructions = [i for stage in stage_chain(target, stages) for i in stage.instructions]
        users = [args for op, args in instructions if op == "USER"]
        assert users and users[-1] not in ("root", "0"), f"{target} must end non-root"
        last_run = max(i for i, (op, _) in enumerate(instructions) if op == "RUN")
        assert instructions.index(("USER", users[-1])) > last_run, target
        assert instructions[-1][0] == "CMD" and instructions[-1][1].startswith("["), target
    code = "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))
    assert not re.search(r"(?i)^(ENV|ARG)\b.*(KEY|TOKEN|SECRET|PASSWORD|BASIC_AUTH)", code, re.M)
    assert "COPY . " not in code and ".env" not in code
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert ".env" in ignored and ".git" in ignored


def test_dockerfile_installs_locked_dependencies_before_the_code():
    stages = dockerfile_stages()
    # The fleet is the default target (the last stage): `docker build .` gives the fleet.
    assert list(stages)[-1] == "fleet"
    for target, lock in (("fleet", "requirements/fleet.txt"),
                         ("sandbox", "requirements/sandbox.txt")):
        steps = [i for stage in stage_chain(target, stages) for i in stage.instructions]
        copies = [args.split()[0] for op, args in steps if op == "COPY"]
        installs = [i for i, (op, args) in enumerate(steps)
                    if op == "RUN" and "pip install" in args and "--require-hashes -r" in args]
        assert installs, target
        # Every dependency layer comes before the first copy of code (layer caching).
        first_code = min(i for i, (op, args) in enumerate(steps)
                         if op == "COPY" and not args.startswith("requirements/"))
        assert max(installs) < first_code, target
        assert lock in copies, target
        for i in installs:
            assert "--no-deps" in steps[i][1], "a lock is complete: nothing beyond it"
    fleet = [i for stage in stage_chain("fleet", stages) for i in stage.instructions]
    # The project itself: after its code, without dependencies (they are all locked above).
    project = [args for op, args in fleet if op == "RUN" and "--no-deps /tmp/syncfleet" in args]
    assert len(project) == 1
    copied = " ".join(args for op, args in fleet if op == "COPY")
    assert "worker/" in copied and "beat/" in copied
    # Neither the sandbox's code nor its stack, nor honcho or the test tools, in the fleet.
    assert "sandbox" not in copied and "dev.txt" not in copied


# ---- the services, for real --------------------------------------------------------------

@pytest.fixture
def compose_stack(tmp_path: Path) -> Iterator[dict]:
    """redis, worker, beat and flower from docker-compose.yml, as local processes."""
    port, flower_port, metrics_port = free_port(), free_port(), free_port()
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
                # The image's copy of the file is this repository's.
                env["FLOWER_CONF"] = str(image_source(env["FLOWER_CONF"]))
            if name == "metrics":
                args = [str(metrics_port) if a == "9808" else a for a in args]
            started.append(Process(name, args, env, cwd=tmp_path, logs=tmp_path))
        yield {"redis_port": port, "redis_proc": redis, "flower_port": flower_port,
               "metrics_port": metrics_port,
               "services": {s.name: s for s in started}, "env": env, "workdir": tmp_path}
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

    # redis: the memory cap is in force, with no eviction.
    url = compose_stack["env"]["REDIS_URL"]
    config = store.connect(url).config_get("maxmemory*")
    assert int(config["maxmemory"]) == size_bytes("256mb")
    assert config["maxmemory-policy"] == "noeviction"

    # worker: answers ping through the password-protected Redis.
    node = f"celery@{socket.gethostname()}"
    client = Celery(broker=url, backend=url)
    try:
        wait_for(lambda: any(node in r for r in client.control.ping(timeout=0.5) or []),
                 "the worker to answer ping", alive=everything)
        # ... and the compose health check itself passes ($$ is compose's escape for $).
        env = {**compose_stack["env"], "HOSTNAME": socket.gethostname()}
        result = subprocess.run(health_command("worker"), env=env, cwd=ROOT,
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stdout + result.stderr

        # beat: started, and the GIS scans it sends reach the worker through Redis: the
        # worker counts them (whether gis.scan then succeeds is the GIS job's business, not
        # the plumbing's; and no log level is assumed).
        def scans_taken() -> int:
            stats = client.control.inspect([node], timeout=1).stats() or {}
            return stats.get(node, {}).get("total", {}).get("gis.scan", 0)

        wait_for(scans_taken, "beat's gis.scan at the worker", alive=everything)
    finally:
        client.close()
    assert "celery beat" in svc["beat"].log() and "is starting" in svc["beat"].log()

    # beat's health check, run where beat runs (its working directory): passes while beat
    # keeps its schedule file fresh, fails once the file is older than the check allows.
    workdir = compose_stack["workdir"]

    def beat_check() -> subprocess.CompletedProcess[str]:
        return subprocess.run(health_command("beat"), env=compose_stack["env"], cwd=workdir,
                              capture_output=True, text=True, timeout=30)

    wait_for(lambda: beat_check().returncode == 0, "beat's health check to pass",
             alive=everything)
    for schedule in workdir.glob("celerybeat-schedule*"):
        os.utime(schedule, (0, 0))
    assert beat_check().returncode != 0

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
    assert requests.get(f"{base}/metrics", timeout=5).status_code == 401
    assert requests.get(f"{base}/metrics", auth=(user, "wrong"), timeout=5).status_code == 401
    assert requests.get(f"{base}/", auth=(user, password), timeout=5).status_code == 200
    metrics = requests.get(f"{base}/metrics", auth=(user, password), timeout=5)
    assert metrics.status_code == 200 and "flower_" in metrics.text
    # ... and the compose health check itself passes (the published port is a free one here).
    assert run_health_check("flower", "5555", compose_stack["flower_port"],
                            compose_stack["env"]).returncode == 0
    workers = requests.get(f"{base}/api/workers?refresh=1", auth=(user, password), timeout=15)
    assert workers.status_code == 200 and node in workers.json()

    # metrics: the fleet's own exporter, behind its login; its health check passes.
    exporter = f"http://127.0.0.1:{compose_stack['metrics_port']}/metrics"

    def answers() -> bool:
        try:
            return requests.get(exporter, timeout=2).status_code == 401
        except requests.ConnectionError:
            return False

    wait_for(answers, "the exporter", alive=everything)
    login = tuple(SECRETS["METRICS_BASIC_AUTH"].split(":", 1))
    scraped = requests.get(exporter, auth=login, timeout=10)
    assert scraped.status_code == 200 and "syncfleet_queue_depth" in scraped.text
    # Its health check is the scrape Prometheus makes, with the login (a 401 fails it).
    assert run_health_check("metrics", "9808", compose_stack["metrics_port"],
                            compose_stack["env"]).returncode == 0
    wrong_login = {**compose_stack["env"], "METRICS_BASIC_AUTH": "prom:wrong"}
    assert run_health_check("metrics", "9808", compose_stack["metrics_port"],
                            wrong_login).returncode != 0

    # SIGTERM (what compose sends) gives Celery's warm shutdown, then the worker exits.
    svc["worker"].stop()
    assert svc["worker"].proc.returncode is not None
    assert "Warm shutdown" in svc["worker"].log()

    # Redis stops: a restart of the exporter or of a worker would not fix that, so their
    # health checks pass (the exporter answers `syncfleet_redis_up 0`, for the alerts).
    compose_stack["redis_proc"].terminate()
    compose_stack["redis_proc"].wait(10)
    down = requests.get(exporter, auth=login, timeout=10)
    assert down.status_code == 200 and "syncfleet_redis_up 0.0" in down.text
    assert run_health_check("metrics", "9808", compose_stack["metrics_port"],
                            compose_stack["env"]).returncode == 0
    env = {**compose_stack["env"], "HOSTNAME": socket.gethostname()}
    worker_check = subprocess.run(health_command("worker"), env=env, cwd=ROOT,
                                  capture_output=True, text=True, timeout=30)
    assert worker_check.returncode == 0 and "Redis unreachable" in worker_check.stdout
    svc["metrics"].stop()
    assert run_health_check("metrics", "9808", compose_stack["metrics_port"],
                            compose_stack["env"]).returncode != 0


def test_every_compose_variable_is_in_env_example_with_its_default():
    example = (ROOT / ".env.example").read_text()
    shown = dict(re.findall(r"^(?:# )?([A-Z][A-Z0-9_]*)=(.*)$", example, re.M))
    text = "\n".join((ROOT / name).read_text()
                     for name in ("docker-compose.yml", "docker-compose.sandbox.yml",
                                  "docker-compose.secrets.yml"))
    for name, default in re.findall(r"(?<!\$)\$\{(\w+)(?::-([^}]*))?", text):
        assert name in shown, f"{name}: add it to .env.example (docker compose only)"
        if default:
            assert shown[name] == default, f"{name}: .env.example shows {shown[name]!r}"


def test_make_run_gives_flower_the_same_configuration_file(monkeypatch):
    import run_local

    monkeypatch.delenv("FLOWER_BASIC_AUTH", raising=False)
    env, _ = run_local.fleet_env("redis://127.0.0.1:1/0", sandbox=False)
    assert Path(env["FLOWER_CONF"]) == image_source(environment("flower", SECRETS)["FLOWER_CONF"])
