"""Beat as it ships (the Procfile's command): the first GIS scan goes at start, not one
interval later, so a wrong key shows at once and a new fleet syncs right away."""

from __future__ import annotations

import json
import os
import sys

from tests.support import wait_for
from tests.support.compose import procfile_command
from tests.support.processes import Process

# A fleet of its own on the test Redis: its queues apart from the test fleet's worker,
# so nothing consumes what beat sends.
PREFIX = "beat-test"


def test_beat_sends_the_first_scan_at_start_and_the_next_an_interval_later(
        redis_url, redis_client, tmp_path):
    command = procfile_command("beat")
    assert command[:3] == ["celery", "-A", "worker"]
    env = {**os.environ, "GIS_SCAN_INTERVAL": "300", "REDIS_KEY_PREFIX": PREFIX,
           "LOG_LEVEL": "DEBUG"}
    queue = f"{PREFIX}:celery:gis"
    beat = Process("beat", [sys.executable, "-m", *command], env, cwd=tmp_path, logs=tmp_path)
    try:
        first = wait_for(lambda: redis_client.lindex(queue, 0), "beat's first gis.scan", 60,
                         alive=[beat])
        # Beat has looked at its schedule since (and goes to sleep): still that one scan.
        wait_for(lambda: "Waking up in" in beat.log(), "beat's first tick", 30, alive=[beat])
    finally:
        beat.stop()
    message = json.loads(first)
    assert message["headers"]["task"] == "gis.scan"
    assert message["headers"]["expires"]  # superseded if not started within an interval
    assert redis_client.llen(queue) == 1
    redis_client.delete(*redis_client.keys(f"{PREFIX}:*"))
