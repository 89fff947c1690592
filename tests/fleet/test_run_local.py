"""`make run` (scripts/run_local.py): the fleet starts, Flower wants the printed login, and
Ctrl-C stops every process, the Redis it started included."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.foundation.helpers import ROOT
from worker.settings import get_settings

sys.path.insert(0, str(ROOT / "scripts"))
import run_local  # noqa: E402
from redis_server import free_port  # noqa: E402


def test_sandbox_mode_points_every_api_at_the_sandbox(monkeypatch):
    from sandbox.credentials import env_for

    monkeypatch.delenv("FLOWER_BASIC_AUTH", raising=False)
    env, lines = run_local.fleet_env("redis://127.0.0.1:1/0", sandbox=True)
    url = f"http://127.0.0.1:{env['SANDBOX_PORT']}"
    assert {k: env[k] for k in env_for(url)} == env_for(url)
    assert env["SANDBOX_HOST"] == "127.0.0.1" and env["FLOWER_ADDRESS"] == "127.0.0.1"
    user, password = env["FLOWER_BASIC_AUTH"].split(":")
    assert user == "admin" and len(password) >= 16
    assert any(env["FLOWER_BASIC_AUTH"] in line for line in lines)  # printed once, here


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
    flower_port, sandbox_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "FLOWER_BASIC_AUTH")}
    env.update(SYNCFLEET_RUN_DIR=str(tmp_path), FLOWER_PORT=str(flower_port),
               SANDBOX_PORT=str(sandbox_port), PYTHONUNBUFFERED="1")
    log_path = tmp_path / "run.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "scripts/run_local.py", "--sandbox"], cwd=ROOT,
                                env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        output = wait_log(log_path, proc, r"celery@\S+ ready")
        login = re.search(r"login (\S+?):(\S+)\)", output).groups()
        redis_port = int(re.search(r"Redis:\s+redis://127\.0\.0\.1:(\d+)/0", output).group(1))
        base = f"http://127.0.0.1:{flower_port}"
        wait_until(lambda: listening(flower_port), "flower", proc)
        assert requests.get(f"{base}/", timeout=5).status_code == 401
        assert requests.get(f"{base}/", auth=login, timeout=5).status_code == 200
        wait_until(lambda: listening(sandbox_port), "the sandbox", proc)
        stats = requests.get(f"http://127.0.0.1:{sandbox_port}/admin/stats", timeout=5)
        assert stats.status_code == 200
        assert listening(redis_port)
        pids = [int(p) for p in re.findall(r"started \(pid=(\d+)\)", log_path.read_text())]
        assert len(pids) == 4  # worker, beat, flower, sandbox
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends to the terminal's group
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    assert code == 0, log_path.read_text()[-3000:]
    assert not listening(redis_port)
    assert not [pid for pid in pids if alive(pid)]


def wait_log(path: Path, proc: subprocess.Popen, pattern: str, timeout: float = 45) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text()
        if re.search(pattern, text):
            return text
        if proc.poll() is not None:
            pytest.fail(f"run_local exited ({proc.returncode}): {text[-3000:]}")
        time.sleep(0.2)
    pytest.fail(f"no {pattern!r} in time: {path.read_text()[-3000:]}")


def wait_until(check, what: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc.poll() is not None:
            pytest.fail(f"run_local exited before {what} was up")
        time.sleep(0.2)
    pytest.fail(f"{what} did not come up")


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
    assert run_local.forget_sandbox_state(redis_url) == 2
    assert not redis_client.exists("sf:gis:mark", "sf:gis:steps")
    assert redis_client.get("test:not-the-fleets") == "kept"
    redis_client.delete("test:not-the-fleets")
