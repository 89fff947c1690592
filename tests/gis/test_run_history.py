"""Run history kept by age (GIS_RUNS_KEPT_DAYS), each ended run as one compact key, and
`syncfleet runs --since`: real scans on the shipped worker; older runs are made old by
moving their start time back in Redis, not by waiting."""

from __future__ import annotations

import json
import time

from tests.support.cli import syncfleet_json
from tests.support.gis import scan
from worker import exporter, store
from worker.formats import iso
from worker.gis_sync.run_state import GIS

DAY = 86400


def age(redis_client, run_id: str, seconds: float) -> None:
    """The run as if it had started `seconds` ago: its place in the index and its summary."""
    started = time.time() - seconds
    redis_client.zadd(store.key("runs"), {f"gis:{run_id}": started})
    summary = json.loads(redis_client.get(GIS.key(run_id, "summary")))
    summary.update(started_at=iso(started))
    redis_client.set(GIS.key(run_id, "summary"), json.dumps(summary), keepttl=True)


def listed(*args: str) -> list[str]:
    code, runs = syncfleet_json(*args)
    assert code == 0, runs
    return [run["run_id"] for run in runs]


def samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in exporter.FleetCollector().collect() for s in family.samples}


def test_runs_are_kept_by_age_as_one_key_each_and_listed_since(fleet, gis_world, redis_client,
                                                               monkeypatch):
    monkeypatch.setenv("GIS_RUNS_KEPT_DAYS", "5")
    old, recent = scan(fleet)["run_id"], scan(fleet)["run_id"]
    for run_id in (old, recent):  # an ended run is its summary alone, kept 5 days
        assert sorted(redis_client.scan_iter(f"{GIS.key(run_id)}*")) == \
            [GIS.key(run_id, "summary")]
        assert 5 * DAY - 600 < redis_client.ttl(GIS.key(run_id, "summary")) <= 5 * DAY
    age(redis_client, old, 6 * DAY)
    age(redis_client, recent, 3 * DAY)
    assert listed("runs") == [recent, old]

    newest = scan(fleet)  # its end unlists the runs older than the kept days
    last = newest["run_id"]
    assert listed("runs") == [last, recent]
    assert listed("gis", "runs") == [last, recent]
    assert listed("runs", "--since", "2d") == [last]
    assert listed("runs", "--since", "4d") == [last, recent]
    assert listed("gis", "runs", "--since", "30m") == [last]
    assert listed("runs", "--since", "7d", "-n", "1") == [last]
    code, shown = syncfleet_json("runs", "--since", "3h")
    assert code == 0 and shown[0]["status"] == newest["status"]
    assert shown[0]["people_seen"] == newest["people_seen"]  # the whole summary

    # The exporter's counters and gauges read the same history.
    got = samples()
    assert sum(v for (name, labels), v in got.items()
               if name == "syncfleet_runs_total" and ("sync", "gis") in labels) == 3
    assert got[("syncfleet_run_halted", (("sync", "gis"),))] == 0
    assert got[("syncfleet_redis_up", ())] == 1
