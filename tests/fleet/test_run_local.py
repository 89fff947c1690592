"""`make run` (scripts/run_local.py): the fleet starts, Flower wants the printed login, and
Ctrl-C stops every process, the Redis it started included."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from celery import Celery

from tests.support import ROOT, wait_for
from tests.support.processes import Process
from worker.settings import get_settings

sys.path.insert(0, str(ROOT / "scripts"))
import run_local
from redis_server import free_port


def test_sandbox_mode_points_every_api_at_the_sandbox(monkeypatch):
    from sandbox.credentials import env_for

    monkeypatch.delenv("FLOWER_BASIC_AUTH", raising=False)
    monkeypatch.delenv("METRICS_BASIC_AUTH", raising=False)
    env, lines = run_local.fleet_env("redis://127.0.0.1:1/0", sandbox=True)
    url = f"http://127.0.0.1:{env['SANDBOX_PORT']}"
    assert {k: env[k] for k in env_for(url)} == env_for(url)
    assert env["SANDBOX_HOST"] == "127.0.0.1" and env["FLOWER_ADDRESS"] == "127.0.0.1"
    user, password = env["FLOWER_BASIC_AUTH"].split(":")
    assert user == "admin" and len(password) >= 16
    assert any(env["FLOWER_BASIC_AUTH"] in line for line in lines)  # printed once, here
    assert env["METRICS_HOST"] == "127.0.0.1"
    assert any(env["METRICS_BASIC_AUTH"] in line and env["METRICS_PORT"] in line
               for line in lines)


def test_any_real_credential_means_no_sandbox(monkeypatch):
    assert not run_local.has_real_credentials()
    monkeypatch.setenv("SEGMENT_ACCESS_TOKEN", "real-token")
    get_settings.cache_clear()
    assert run_local.has_real_credentials()


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_make_run_starts_the_fleet_and_ctrl_c_stops_all_of_it(tmp_path: Path):
    flower_port, sandbox_port, metrics_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("REDIS_URL", "FLOWER_BASIC_AUTH", "METRICS_BASIC_AUTH")}
    env.update(SYNCFLEET_RUN_DIR=str(tmp_path), FLOWER_PORT=str(flower_port),
               SANDBOX_PORT=str(sandbox_port), METRICS_PORT=str(metrics_port),
               PYTHONUNBUFFERED="1")
    run = Process("make-run", [sys.executable, "scripts/run_local.py", "--sandbox"], env,
                  logs=tmp_path)
    try:
        # The worker's readiness from the worker itself (a ping), whatever its log level.
        output = wait_for(lambda: re.search(r"Flower: .*\(login \S+\)", run.log()) and run.log(),
                          "make run's banner", 45, alive=[run])
        login = re.search(r"login (\S+?):(\S+)\)", output).groups()
        redis_port = int(re.search(r"Redis:\s+redis://127\.0\.0\.1:(\d+)/0", output).group(1))
        client = Celery(broker=f"redis://127.0.0.1:{redis_port}/0")
        try:
            wait_for(lambda: client.control.ping(timeout=0.5), "the worker to answer ping", 60,
                     alive=[run])
        finally:
            client.close()
        base = f"http://127.0.0.1:{flower_port}"
        wait_for(lambda: listening(flower_port), "flower", 30, alive=[run])
        assert requests.get(f"{base}/", timeout=5).status_code == 401
        assert requests.get(f"{base}/", auth=login, timeout=5).status_code == 200
        wait_for(lambda: listening(sandbox_port), "the sandbox", 30, alive=[run])
        stats = requests.get(f"http://127.0.0.1:{sandbox_port}/admin/stats", timeout=5)
        assert stats.status_code == 200
        # The exporter, behind its printed login.
        exporter = f"http://127.0.0.1:{metrics_port}/metrics"
        metrics_login = re.search(r"Metrics: \S+\s+\(login (\S+?):(\S+)\)", output).groups()
        wait_for(lambda: listening(metrics_port), "the exporter", 30, alive=[run])
        assert requests.get(exporter, timeout=5).status_code == 401
        assert "syncfleet_" in requests.get(exporter, auth=metrics_login, timeout=10).text
        # `syncfleet check` ran at start, against the sandbox: every line ok.
        rows = r"│ (redis|gis|customerio|segment|voucherify) +│ (\S+)"
        table = wait_for(lambda: len(re.findall(rows, run.log())) == 5 and run.log(),
                         "the check's table at start", 90, alive=[run])
        assert {status for _, status in re.findall(rows, table)} == {"ok"}
        assert "`syncfleet check` failed" not in table
        assert listening(redis_port)
        pids = [int(p) for p in re.findall(r"started \(pid=(\d+)\)", run.log())]
        assert len(pids) == 5  # worker, beat, flower, metrics, sandbox
    finally:
        if run.proc.poll() is None:
            os.killpg(run.proc.pid, signal.SIGINT)  # what Ctrl-C sends to the terminal's group
        try:
            code = run.proc.wait(30)
        except subprocess.TimeoutExpired:
            run.kill()
            raise
    assert code == 0, run.log()[-3000:]
    assert not listening(redis_port)
    assert not [pid for pid in pids if alive(pid)]


def test_a_malformed_setting_stops_make_run_with_one_line():
    env = {**os.environ, "GIS_SCAN_INTERVAL": "abc"}
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "run_local.py")], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "run_local: Invalid configuration: GIS_SCAN_INTERVAL: Input should be a valid "
        "integer, unable to parse string as an integer (see .env.example)"]


def test_sandbox_mode_forgets_only_the_fleets_own_state(redis_url, redis_client):
    redis_client.set("sf:gis:mark", "2026-01-01T00:00:00Z")
    redis_client.hset("sf:gis:steps", "42", "3")
    redis_client.set("test:not-the-fleets", "kept")  # Celery's and others' keys stay
    live_workers = redis_client.exists("sf:workers")  # the session's workers' entries
    assert run_local.forget_sandbox_state(redis_client) == 2 + live_workers
    assert not redis_client.exists("sf:gis:mark", "sf:gis:steps")
    assert redis_client.get("test:not-the-fleets") == "kept"
    redis_client.delete("test:not-the-fleets")
