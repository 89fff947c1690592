"""Redis restarted under a running shipped worker that holds messages (tasks waiting for
their countdown, as a busy worker holds running and prefetched ones) while it waits for
more: the worker stays up, reconnects and goes on consuming.

kombu 5.7 made such a worker exit (`Unrecoverable error: AttributeError("'NoneType' object
has no attribute 'hostname'")`); worker/kombu_patch.py fixes it. The same worker command
run without the patch shows the exit, so this test fails without it."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery
from kombu.exceptions import OperationalError
from redis import RedisError

from tests.support import ROOT, wait_for
from tests.support.fleet import worker_args
from tests.support.other_redis import client_app
from tests.support.processes import Process
from worker.store import connect

sys.path.insert(0, str(ROOT / "scripts"))
from redis_server import free_port, start

KOMBU_BUG = "no attribute 'hostname'"
# The shipped worker command, run by an interpreter that first undoes worker/kombu_patch.py.
UNPATCHED = ("import runpy, sys, worker.app; from kombu.transport import redis; "
             "redis.Channel.close = redis.Channel.close.__wrapped__; sys.argv[0] = 'celery'; "
             "runpy.run_module('celery', run_name='__main__')")


class RestartableRedis:
    """A private redis-server with its AOF, stopped and started again on its port."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = start(self.port, str(directory), persist=True)

    def restart(self, how: signal.Signals) -> None:
        self.proc.send_signal(how)
        self.proc.wait(30)
        self.proc = start(self.port, str(self.directory), persist=True)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


@pytest.fixture
def restartable(tmp_path, monkeypatch) -> Iterator[tuple[RestartableRedis, Celery]]:
    server = RestartableRedis(tmp_path)
    monkeypatch.setenv("REDIS_URL", server.url)
    app = client_app()
    yield server, app
    app.close()
    server.stop()


def answers(app: Celery, name: str) -> bool:
    try:
        replies = app.control.ping(timeout=0.5) or []
    except (OperationalError, RedisError):  # this client's own connection broke too
        return False
    return any(f"{name}@" in node for reply in replies for node in reply)


def worker(args: list[str], name: str, server: RestartableRedis, app: Celery,
           tmp_path: Path) -> Process:
    proc = Process(name, args, {**os.environ, "REDIS_URL": server.url}, logs=tmp_path)
    wait_for(lambda: answers(app, name), f"{name} to answer ping", 90, alive=[proc])
    return proc


def hold_messages(server: RestartableRedis, app: Celery) -> None:
    """Tasks the worker takes and holds, unacknowledged, until their countdown is due."""
    for _ in range(3):
        app.send_task("gis.runs", countdown=3600)
    held = connect(server.url)
    wait_for(lambda: held.hlen("unacked") >= 3, "the worker to hold the messages", 60)


def consumes(app: Celery) -> bool:
    return isinstance(app.send_task("gis.runs").get(timeout=90), list)


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["killed", "stopped"])
def test_the_worker_survives_redis_restarts_and_goes_on_consuming(restartable, tmp_path, how):
    server, app = restartable
    proc = worker(worker_args("restart"), "restart", server, app, tmp_path)
    try:
        for _ in range(3):
            hold_messages(server, app)
            server.restart(how)
            assert consumes(app), proc.log()[-3000:]  # reconnected, and takes new work
            assert proc.died() is None
        assert KOMBU_BUG not in proc.log()
    finally:
        proc.stop()


@pytest.mark.slow
def test_without_the_patch_kombu_makes_the_worker_exit(restartable, tmp_path):
    """The bug the patch fixes, shown with the same worker command: kombu's race (which
    of the broken connections is read first) decides the round, so it gets a few."""
    server, app = restartable
    name = "unpatched"
    args = [sys.executable, "-c", UNPATCHED, *worker_args(name)[3:]]
    proc = worker(args, name, server, app, tmp_path)
    try:
        for _ in range(6):
            hold_messages(server, app)
            server.restart(signal.SIGKILL)
            wait_for(lambda: proc.died() or answers(app, name),
                     "the worker to reconnect or exit", 90)
            if proc.died():
                break
        assert proc.died() and KOMBU_BUG in proc.log(), proc.log()[-3000:]
    finally:
        proc.stop()
