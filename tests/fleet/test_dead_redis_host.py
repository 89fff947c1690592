"""A dead Redis host, caused for real on loopback (tests/support/dead_host.py): one that
accepts a connection and never answers, and one that drops every connection attempt.
Unlike a stopped Redis, which refuses at once, such a host would keep a client without
timeouts waiting forever; every part of the fleet waits a bounded time instead
(CONNECT_TIMEOUT, READ_TIMEOUT: worker/redis_target.py) and says so: the CLI in one line,
`health` as its redis check, the exporter with `syncfleet_redis_up 0`, the worker and
beat in their logs, trying again."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator

import pytest
import requests

from tests.fleet.test_cli_failures import one_line
from tests.support import wait_for
from tests.support.cli import syncfleet, syncfleet_json
from tests.support.compose import procfile_command
from tests.support.dead_host import silent_host, unreachable_host
from tests.support.exporter import LOGIN, exporter, parse
from tests.support.fleet import worker_args
from tests.support.processes import Process
from worker.cli.display import EXIT_UNAVAILABLE

# Out of the quick lane (make test-fast): real programs and real timeouts, seconds each.
pytestmark = pytest.mark.slow

HOSTS = {"silent": (silent_host, "Timeout reading from socket"),
         "unreachable": (unreachable_host, "Timeout connecting to server")}
PROMETHEUS_SCRAPE_TIMEOUT = 10  # Prometheus's default scrape_timeout


@pytest.fixture(params=sorted(HOSTS))
def dead(request) -> Iterator[tuple[str, str]]:
    """The URL of a dead Redis host, and the error a client meets there."""
    host, error = HOSTS[request.param]
    with host() as port:
        yield f"redis://:dead-pw@127.0.0.1:{port}/0", error


def test_the_cli_says_so_in_one_line_and_health_names_it(dead):
    url, error = dead
    started = time.monotonic()
    done = syncfleet("runs", REDIS_URL=url, timeout=120)  # a hang would fail here
    took = time.monotonic() - started
    line = one_line(done)
    assert done.returncode == EXIT_UNAVAILABLE, line
    assert line.startswith("syncfleet: Redis unreachable at redis://127.0.0.1:"), line
    assert f"(REDIS_URL): {error}; start Redis or fix REDIS_URL" in line
    code, verdict = syncfleet_json("health", REDIS_URL=url)
    assert code == 1 and verdict["healthy"] is False
    (check,) = verdict["checks"]
    assert check["name"] == "redis" and check["ok"] is False and error in check["detail"]
    print(f"dead Redis host: `syncfleet runs` answered in {took:.1f}s")


def test_the_exporter_answers_its_scrape_with_redis_up_0(dead, tmp_path):
    url, _ = dead
    with exporter(tmp_path, REDIS_URL=url) as running:
        for _ in range(2):  # the first scrape, and one after it found Redis dead
            response = requests.get(running.url, auth=LOGIN, timeout=PROMETHEUS_SCRAPE_TIMEOUT)
            assert response.status_code == 200
            assert parse(response.text) == {("syncfleet_redis_up", ()): 0.0}
        assert "Traceback" not in running.process.log()


@pytest.mark.slow
def test_a_worker_and_beat_say_so_and_keep_trying(dead, tmp_path):
    url, error = dead
    env = {**os.environ, "REDIS_URL": url}
    beat_command = procfile_command("beat")
    worker = Process("worker-dead-host", worker_args("dead"), env, logs=tmp_path)
    beat = Process("beat-dead-host", [sys.executable, "-m", *beat_command], env, cwd=tmp_path,
                   logs=tmp_path)
    try:
        wait_for(lambda: "consumer: Cannot connect to redis" in worker.log()
                 and error in worker.log() and "Trying again" in worker.log(),
                 "the worker to say it cannot reach Redis, and try again", 120, alive=[worker])
        wait_for(lambda: error in beat.log() or "Connection to Redis lost" in beat.log(),
                 "beat to say it cannot reach Redis", 120, alive=[beat])
    finally:
        worker.stop()
        beat.stop()
    for proc in (worker, beat):
        assert "dead-pw" not in proc.log()
