"""Bytes a GIS run costs in Redis once it has ended (run history, GIS_RUNS_KEPT_DAYS).

Runs go through the run engine as the fleet's do (`worker.runs`: start, summary written
once, slim, then `run_history.compact` as GIS's end of run does), each with the summary of
a real sandbox scan, into a private redis-server; the cost of a run is the growth of
`used_memory` divided by the runs (the summary key, its expiry, its entry in `sf:runs`).

    .venv/bin/python bench/run_history.py            # 20,160 runs: 14 days at 60 s
    .venv/bin/python bench/run_history.py --runs 4032
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from redis_server import PrivateRedis, free_port  # noqa: E402

DAYS = 14
# The summaries of two scans of the sandbox's world (tests/gis/test_flat_redis.py): one
# after the world moved (46 applications, 7 people; one field dropped), one with nothing
# to send. As the engine builds them, before they are kept.
CHANGED: dict[str, Any] = {
    "dry_run": False, "events_skipped": 4, "people_updated_from_applications": 1,
    "moves_backward": 3, "events_sent": 25, "mode": "scan", "moves_unchanged": 22,
    "fields_dropped": 1, "cold_start": False, "lc": 1340, "moves_rejected": 2, "cio_calls": 29,
    "kind": "scan", "status": "finished", "workspace": "sandbox-site", "people_seen": 7,
    "moves_history": 1, "gis_calls": 4, "records_launched": 53,
    "marks_before": {"people": "2026-12-06T07:08:27Z", "incoming": "2026-12-06T07:08:27Z",
                     "applications": "2026-12-06T07:08:27Z"},
    "moves_withdrawn": 1, "applications_seen": 46, "moves_forward": 17, "people_updated": 4,
    "since_ts": None, "people_unchanged": 4, "errors": [],
    "warnings": [{"field": "dob", "id": "3000049", "kind": "person",
                  "reason": "not a date: 'not a date'"}],
    "warnings_by_field": {"person.dob": 1}, "duration_s": 0.531, "parts": 3}
QUIET: dict[str, Any] = {
    "dry_run": False, "mode": "scan", "cold_start": False, "lc": 1340, "kind": "scan",
    "status": "finished", "workspace": "sandbox-site", "gis_calls": 4, "since_ts": None,
    "marks_before": CHANGED["marks_before"], "errors": [], "warnings": [],
    "warnings_by_field": {}, "duration_s": 0.212, "parts": 0}


def measure(runs: int, sample: dict[str, Any]) -> dict[str, float]:
    from worker import run_history, store
    from worker.formats import iso
    from worker.runs import Runs

    r = store.client()
    r.flushdb()
    engine = Runs("gis", lambda run_id, status: {
        **(engine.get(run_id) or {}), **sample, "finished_at": iso()}, ttl=DAYS * 86400,
        kept=run_history.slim)
    before = r.info("memory")["used_memory"]
    started = time.monotonic()
    ids = []
    for _ in range(runs):
        run_id = str(uuid.uuid4())
        engine.start(run_id, "scan", lc=1340, workspace="sandbox-site")
        engine.finish_if_complete(run_id)
        run_history.compact(engine, run_id, ("errors", "warnings"))
        ids.append(run_id)
    took = time.monotonic() - started
    r.delete(store.key("metrics"))  # the fleet's counters: there anyway
    after = r.info("memory")["used_memory"]
    keys = [engine.key(i, "summary") for i in ids[:200]]
    return {"per_run": (after - before) / runs,
            "summary_key": sum(r.memory_usage(k, samples=0) for k in keys) / len(keys),
            "index": r.memory_usage(store.key("runs"), samples=0) / runs,
            "keys": r.dbsize(), "seconds": took}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=DAYS * 1440)
    args = parser.parse_args()
    with PrivateRedis(port=free_port()) as server:
        os.environ.update(REDIS_URL=server.url, SYNCFLEET_ENV_FILE=os.devnull)
        print(f"{args.runs} runs kept ({DAYS} days at 60 s), per run:")
        for name, sample in (("scan with changes", CHANGED), ("scan with nothing new", QUIET)):
            got = measure(args.runs, sample)
            per_run = got["per_run"]
            print(f"  {name}: {per_run:,.0f} B of used_memory (summary key "
                  f"{got['summary_key']:,.0f} B by MEMORY USAGE, sf:runs entry "
                  f"{got['index']:,.0f} B); {got['keys']} keys in all; "
                  f"{args.runs / got['seconds']:,.0f} runs/s")
            for interval in (300, 60):
                kept = DAYS * 86400 // interval
                print(f"    every {interval:>3} s: {kept:,} runs in {DAYS} days = "
                      f"{kept * per_run / 1e6:,.1f} MB")


if __name__ == "__main__":
    main()
