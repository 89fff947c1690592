"""A flat Redis: what scans leave behind does not grow with their number. Five scans on
the shipped worker, sent the way beat sends them (and one through `syncfleet gis scan`,
whose result the CLI reads), against a sandbox world that changes between scans; after
each one, once the fleet is idle, every key of the Redis is looked at:

- no task result is left (`celery-task-meta-*`): results nobody reads are not stored,
  a chord header's are forgotten by its body, the CLI forgets the scan's once read;
- an ended run is one key, its summary (run history, kept by age: GIS_RUNS_KEPT_DAYS);
- every other key lasts, or lives at most 300 s (Celery's marker of a chord done);
- the lasting keys are the same ones after scan 2 as after scan 5.

Flower still lists the tasks (it reads the workers' events, not the results)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import requests

from tests.support import ROOT, wait_for
from tests.support.cli import syncfleet_json
from tests.support.gis import wait_run
from tests.support.processes import Process

sys.path.insert(0, str(ROOT / "scripts"))
from redis_server import free_port

SHORT = 300  # seconds: Celery keeps a chord's "done" marker this long (redis backend)
SUMMARY = re.compile(r"^sf:gis:run:[^:]+:summary$")
FLOWER_LOGIN = ("admin", "flower-flat-3a9e")
Inventory = dict[str, tuple[float, int]]  # key -> (seconds to live or -1, bytes)


def inventory(redis_client) -> Inventory:
    out = {}
    for key in redis_client.scan_iter(count=1000):
        ttl = redis_client.pttl(key)
        if ttl != -2:  # not expired in the meantime
            out[key] = (ttl / 1000 if ttl >= 0 else -1, redis_client.memory_usage(key, samples=0))
    return out


def history(keys: Inventory) -> dict[str, tuple[int, int]]:
    return {k: v for k, v in keys.items() if SUMMARY.match(k)}


def lasting(keys: Inventory) -> dict[str, tuple[int, int]]:
    return {k: v for k, v in keys.items() if not SUMMARY.match(k) and not 0 <= v[0] <= SHORT}


def flower(tmp_path: Path) -> Process:
    port = free_port()
    env = {**os.environ, "FLOWER_BASIC_AUTH": ":".join(FLOWER_LOGIN),
           "FLOWER_ADDRESS": "127.0.0.1"}
    proc = Process("flower", [sys.executable, "-m", "celery", "-A", "worker", "flower",
                              f"--port={port}"], env, logs=tmp_path)
    proc.url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return requests.get(f"{proc.url}/healthcheck", timeout=2).ok
        except requests.ConnectionError:
            return False

    wait_for(answers, "Flower to answer", 60, alive=[proc])
    return proc


def flower_tasks(proc: Process) -> dict[str, dict]:
    response = requests.get(f"{proc.url}/api/tasks", auth=FLOWER_LOGIN, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def test_keys_do_not_grow_with_the_number_of_scans(fleet, gis_world, redis_client, fleet_app,
                                                   tmp_path):
    admin = gis_world.admin
    beat = fleet_app.conf.beat_schedule["gis-scan"]
    fleet.ensure()
    watcher = flower(tmp_path)
    seen: list[Inventory] = []
    try:
        for scan_no in range(1, 6):
            if scan_no > 1:
                admin.advance(share=0.1, people_share=0.05, seed=40 + scan_no)
            if scan_no == 4:  # a person's scan: the CLI reads its result, then forgets it
                code, summary = syncfleet_json("gis", "scan", "--follow", "--timeout", "90")
                assert code in (0, 1), summary
            else:  # beat's: nobody reads its result
                summary = wait_run(fleet.send_task(beat["task"], **beat["options"]).id, 90)
            assert summary["events_sent"] > 0 or scan_no == 1 or summary["people_updated"]
            fleet.drain()
            keys = inventory(redis_client)
            seen.append(keys)
            assert [k for k in keys if k.startswith("celery-task-meta-")] == []
            assert [k for k in keys if k.startswith("sf:gis:run:") and not SUMMARY.match(k)] \
                == []
            assert len(history(keys)) == scan_no
            assert all(ttl > 13 * 86400 for ttl, _ in history(keys).values())
        tasks = flower_tasks(watcher)
    finally:
        watcher.stop()

    names = {t["name"] for t in tasks.values() if t["state"] == "SUCCESS"}
    assert {"gis.scan", "gis.walk", "gis.part_done", "gis.sync_person",
            "gis.sync_application"} <= names, names
    assert all(t.get("result") is not None for t in tasks.values() if t["state"] == "SUCCESS")

    second, last = lasting(seen[1]), lasting(seen[-1])
    assert sorted(second) == sorted(last) == sorted(lasting(seen[2])) == \
        sorted(lasting(seen[3]))
    short = {k: v for k, v in seen[-1].items() if 0 <= v[0] <= SHORT}
    assert all(k.startswith(("celery-taskset-meta-", "sf:limits:", "sf:pace:")) for k in short), \
        short
    per_run = [b for _, b in history(seen[-1]).values()]
    print(f"\nkeys after each scan: {[len(k) for k in seen]}; lasting: "
          f"{[len(lasting(k)) for k in seen]} keys, "
          f"{[sum(b for _, b in lasting(k).values()) for k in seen]} B; "
          f"short-lived after the last: {len(short)} keys, "
          f"{sum(b for _, b in short.values())} B; run summaries: {len(per_run)}, "
          f"{min(per_run)}-{max(per_run)} B each")
