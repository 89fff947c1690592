"""The CLI on the bad day, for real: Redis stopped, a malformed REDIS_URL, a missing
setting, no worker consuming the queue, a timeout, a run halted by a wrong key. Each is
one line naming the cause (JSON on stdout with --json) and its own exit status, never a
traceback."""

from __future__ import annotations

import json
import sys
import time

import pytest

from tests.support import ROOT
from tests.support.cli import syncfleet, syncfleet_json
from worker.cli.display import EXIT_TIMEOUT, EXIT_UNAVAILABLE, EXIT_USAGE

sys.path.insert(0, str(ROOT / "scripts"))
from redis_server import free_port

# Out of the quick lane (make test-fast): real programs and real timeouts, seconds each.
pytestmark = pytest.mark.slow

COMMANDS = (("runs",), ("status", "01abc"), ("gis", "runs"), ("gis", "failed"),
            ("gis", "scan"), ("gis", "backfill", "--since", "2026-01-01"), ("migrate",))


def one_line(done) -> str:
    """The command's failure: exactly one line on stderr, nothing on stdout."""
    assert done.stdout == "", done.stdout
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def error_of(done) -> dict:
    """With --json: the error, as JSON on stdout."""
    error = json.loads(done.stdout)["error"]
    assert set(error) == {"code", "message", "exit_code"}
    assert error["exit_code"] == done.returncode and "Traceback" not in done.stderr
    return error


# 14 commands, each giving up on the stopped Redis after its retries (~5 s each)
def test_with_redis_stopped_every_command_says_so_in_one_line(stopped_redis_url):
    for command in COMMANDS:
        done = syncfleet(*command, REDIS_URL=stopped_redis_url, timeout=60)
        line = one_line(done)
        assert done.returncode == EXIT_UNAVAILABLE, (command, line)
        assert line.startswith("syncfleet: Redis unreachable at redis://127.0.0.1:"), line
        assert "/0 (REDIS_URL): " in line and "start Redis or fix REDIS_URL" in line
        assert "pw4test" not in line
        as_json = syncfleet(*command, "--json", REDIS_URL=stopped_redis_url, timeout=60)
        assert error_of(as_json)["code"] == "unavailable", command
    # health and check report Redis as one of their checks (exit 1, not a traceback).
    code, verdict = syncfleet_json("health", REDIS_URL=stopped_redis_url)
    assert code == 1 and verdict["healthy"] is False
    assert verdict["checks"][0]["name"] == "redis" and verdict["checks"][0]["ok"] is False


def test_with_sentinels_the_messages_name_the_sentinels_not_redis_url(stopped_redis_url):
    port = stopped_redis_url.rsplit(":", 1)[1].split("/")[0]
    sentinels = {"REDIS_SENTINELS": f"127.0.0.1:{port}", "REDIS_URL": "redis:///0"}
    done = syncfleet("runs", **sentinels, timeout=60)
    line = one_line(done)
    assert done.returncode == EXIT_UNAVAILABLE
    assert line.startswith("syncfleet: Redis unreachable at the master 'mymaster' of the "
                           f"sentinels 127.0.0.1:{port} (REDIS_SENTINELS): "), line
    assert line.endswith("start Redis or fix REDIS_SENTINELS"), line
    code, verdict = syncfleet_json("health", **sentinels)
    assert code == 1 and "sentinels 127.0.0.1:" in verdict["checks"][0]["detail"]
    assert "REDIS_URL" not in verdict["reason"]
    checked = syncfleet_json("check", **sentinels)[1]["checks"][0]
    assert checked["status"] == "failed" and "(REDIS_SENTINELS)" in checked["detail"]


@pytest.mark.parametrize("url", ["notaurl", "redis-sentinel://127.0.0.1:26379/mymaster",
                                 "redis://127.0.0.1:notaport/0"])
def test_a_malformed_redis_url_is_a_configuration_error(url):
    for command in (*COMMANDS, ("health",), ("check",), ("metrics",)):
        done = syncfleet(*command, REDIS_URL=url, timeout=60)
        line = one_line(done)
        assert done.returncode == EXIT_USAGE, (command, line)
        assert line.startswith("syncfleet: Invalid configuration: REDIS_URL: must be "
                               "redis://"), line
        assert "REDIS_SENTINELS" in line  # the way to a Sentinel, named
    assert error_of(syncfleet("runs", "--json", REDIS_URL=url))["code"] == "configuration"


def test_a_malformed_setting_and_a_missing_one_name_the_variable(redis_url):
    done = syncfleet("runs", GIS_SCAN_INTERVAL="often")
    assert done.returncode == EXIT_USAGE and "GIS_SCAN_INTERVAL" in one_line(done)
    exporter = syncfleet("metrics", "--port", str(free_port()), METRICS_BASIC_AUTH="")
    line = one_line(exporter)
    assert exporter.returncode == EXIT_USAGE
    assert "METRICS_BASIC_AUTH is not set" in line and "user:password" in line


def test_bad_usage_is_one_line_or_json(redis_url):
    done = syncfleet("gis", "backfill", "--since", "31/12/2026")
    assert done.returncode == EXIT_USAGE and "ISO-8601" in one_line(done)
    as_json = syncfleet("gis", "scan", "--timeout", "soon", "--json")
    assert error_of(as_json)["code"] == "usage"


def test_help_lists_every_exit_status():
    shown = syncfleet("--help").stdout
    for code in (0, 1, 2, 3, 69, 75, 130):
        assert f"\n  {code:>3}  " in shown, code


def test_without_a_worker_commands_that_start_work_refuse_at_once(worker_process, redis_client):
    # worker_process: the session's workers stopped, none started.
    for command, queue in ((("gis", "scan"), "gis"), (("migrate",), "segment"),
                           (("gis", "backfill", "--person", "1"), "gis")):
        started = time.monotonic()
        done = syncfleet(*command, "--json")
        error = error_of(done)
        assert done.returncode == EXIT_UNAVAILABLE and error["code"] == "unavailable"
        assert f"no worker consumes the {queue} queue" in error["message"]
        assert "--queue-anyway" in error["message"]
        assert time.monotonic() - started < 30  # a ping's timeout, not 120 s
    assert redis_client.llen("gis") == redis_client.llen("segment") == 0  # nothing queued


def test_queue_anyway_waits_no_longer_than_timeout(worker_process, redis_client):
    try:
        started = time.monotonic()
        done = syncfleet("gis", "scan", "--queue-anyway", "--timeout", "5")
        waited = time.monotonic() - started
        line = one_line(done)
        assert done.returncode == EXIT_TIMEOUT, line
        assert "gis.scan was queued but no worker had started it after 5s" in line
        assert 5 <= waited < 30, waited  # 5 s, plus the interpreter's start
        assert redis_client.llen("gis") == 1  # queued, as asked
    finally:
        redis_client.delete("gis")
