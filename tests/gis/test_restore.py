"""Redis restored from a backup taken mid-run (README, "Backup and restore"), for real: a
Redis with AOF (as compose runs it) serves a worker in the middle of a scan; a copy of
its appendonly directory is taken (the backup); then the worker and that Redis are lost.
A new Redis started on the copy and a new worker finish the run: every person and
transition arrives, no transition under two event ids, and nobody whose identify the
backup remembers is identified again (only those whose digests were not in it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter

import pytest
import redis as redis_py
from celery import Celery

from tests.support import ROOT, wait_for
from tests.support.fleet import worker_args
from tests.support.gis import WINDOW, Truth, assert_clean, flat, now, received, wait_run
from tests.support.processes import Process
from worker.gis_sync import state
from worker.settings import get_settings

sys.path.insert(0, str(ROOT / "scripts"))
from redis_server import free_port, start

MARGIN = 300


def live_worker(name: str, url: str, logs) -> Process:
    """The shipped worker on the Redis at `url`, once it answers ping there."""
    worker = Process(name, worker_args(name), {**os.environ, "REDIS_URL": url}, logs=logs)
    control = Celery(broker=url).control
    wait_for(lambda: any(f"{name}@" in node for reply in control.ping(timeout=0.5) or []
                         for node in reply), f"{name} to answer ping", 60, alive=[worker])
    return worker


def rewrite_done(client: redis_py.Redis) -> bool:
    info = client.info("persistence")
    return not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]


@pytest.mark.slow
def test_a_restored_aof_taken_mid_run_finishes_the_run_without_sending_anything_twice(
        gis_world, worker_process, monkeypatch, tmp_path):
    admin = gis_world.admin
    truth = Truth(admin)
    admin.faults("customerio", latency_ms=60)  # a scan long enough to back up in
    live_dir, backup_dir = tmp_path / "live", tmp_path / "restored"
    live_dir.mkdir()
    backup_dir.mkdir()
    live_port, restored_port = free_port(), free_port()
    live_url = f"redis://127.0.0.1:{live_port}/0"
    restored_url = f"redis://127.0.0.1:{restored_port}/0"
    live = start(live_port, str(live_dir), persist=True)  # --appendonly yes, as compose
    servers, workers = [live], []
    try:
        workers.append(live_worker("before", live_url, tmp_path))
        started = subprocess.run([sys.executable, "-m", "worker", "gis", "scan", "--json"],
                                 env={**os.environ, "REDIS_URL": live_url}, cwd=ROOT,
                                 capture_output=True, text=True, timeout=120)
        assert started.returncode == 0, started.stdout + started.stderr
        run_id = json.loads(started.stdout)["run_id"]
        wait_for(lambda: len(admin.requests(api="customerio")) >= 15, "the sync under way",
                 60, alive=workers)
        # The workers move on a little, and the backup is taken.
        sent = len(admin.requests(api="customerio"))
        wait_for(lambda: len(admin.requests(api="customerio")) >= sent + 8, "more requests",
                 60, alive=workers)
        client = redis_py.Redis.from_url(live_url)
        client.bgrewriteaof()  # the AOF on disk holds everything up to now
        wait_for(lambda: rewrite_done(client), "the AOF rewrite", 60)
        shutil.copytree(live_dir / "appendonlydir", backup_dir / "appendonlydir")
        assert len(admin.requests(api="customerio")) < 200, "backed up too late to matter"

        # The host is lost: its worker and its Redis, with everything after the backup.
        workers[0].kill()
        live.terminate()
        live.wait(10)
        admin.clear_faults("customerio")
        servers.append(start(restored_port, str(backup_dir), persist=True))
        # Whom the backup remembers as identified: a person's digest is written once the
        # task that identified them has sent its events too, so people customer.io had
        # accepted just before the backup may not be in it (they are identified again).
        remembered = set(redis_py.Redis.from_url(restored_url, decode_responses=True).hkeys(
            state.ws_key(state.workspace(get_settings()), "sent")))
        assert remembered, "the backup remembers no identify: taken too early to matter"
        identified = Counter(admin.customerio_profiles()["identifies"])  # before the restore
        workers.append(live_worker("after", restored_url, tmp_path))
        monkeypatch.setenv("REDIS_URL", restored_url)
        get_settings.cache_clear()
        run = wait_run(run_id, timeout=180, alive=workers[1:])
    finally:
        for worker in workers:
            worker.stop()
        for server in servers:
            server.terminate()
            server.wait(10)

    assert run["status"] in ("finished", "finished_with_errors"), run
    profiles = admin.customerio_profiles()
    assert set(profiles["profiles"]) == truth.valid_people()
    # Events: every transition, each under one id (a repeat carries the same id, which
    # customer.io drops).
    got = flat(received(admin))
    history = flat(truth.all_events())
    edge = now() - WINDOW
    assert {e for e in history if e[2] >= edge + MARGIN} <= got
    assert got <= {e for e in history if e[2] >= edge - MARGIN}
    counts = Counter(e for evs in received(admin).values() for e in evs)
    assert [e for e, n in counts.items() if n > 1] == []
    # Identifies: nobody the backup remembers is identified again after the restore.
    again = {pid for pid, n in profiles["identifies"].items() if n > identified[pid]
             and identified[pid]}
    assert not again & remembered, sorted(again & remembered)[:10]
    assert_clean(admin)
    print(f"restored: {len(again)} people identified again, "
          f"{admin.customerio_events()['duplicates']} events repeated (same ids)")
