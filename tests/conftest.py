"""The fixtures every part of the suite shares: Redis, the fleet's app and a real worker,
worker processes, the sandbox. Plain helpers live in `tests/support/`.

Redis is `REDIS_URL` when it is set, otherwise a private redis-server on a free port
(scripts/redis_server.py), started the first time a test asks for it: pure-function
tests run without one. The app reads its configuration when it is first used, so the
URL chosen here (before any test runs) is the one every part of the fleet sees. Each
test that uses Redis starts with the fleet's own keys (`sf:*`, the rate-limit windows)
cleared; Celery's queue bindings stay, so the session worker keeps working.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from celery.backends.redis import ResultConsumer
from celery.contrib.testing.worker import start_worker

from tests.support import ROOT, clear_fleet_state
from tests.support import tasks as _test_tasks  # noqa: F401 - registers tests.* tasks
from tests.support.fleet import QUEUES, Fleet
from tests.support.other_redis import OtherRedisFleet
from tests.support.processes import WorkerProcess
from tests.support.tools import require_tls_redis
from worker import app as fleet_celery_app
from worker.settings import get_settings
from worker.store import connect

sys.path.insert(0, str(ROOT / "scripts"))
import redis_tls
import test_tools
from redis_sentinel import SentinelSet
from redis_server import PrivateRedis, free_port, start

# The programs `make test` fetched (scripts/test_tools.py) are found after the machine's own.
os.environ["PATH"] = f"{os.environ.get('PATH', '')}{os.pathsep}{test_tools.bin_dir()}"

# The URL is fixed before anything reads the settings; the server starts on first use.
_OWN_REDIS = not os.environ.get("REDIS_URL")
if _OWN_REDIS:
    os.environ["REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"
os.environ["SYNCFLEET_ENV_FILE"] = os.devnull  # never a developer's real .env

# Credentials a test did not set must look missing, whatever the shell exported; so must
# any other way to Redis than the suite's (a password, sentinels, TLS, REDIS_URL_FILE).
for _name in list(os.environ):
    if _name.startswith(("CUSTOMERIO_", "SEGMENT_", "VOUCHERIFY_", "GIS_", "REDIS_PASSWORD",
                         "REDIS_SENTINEL", "REDIS_MASTER_NAME", "REDIS_TLS_", "REDIS_URL_")):
        del os.environ[_name]


# A test that uses any of these needs a worker process (or the in-process worker) or the
# sandbox server: it is outside `make test-fast` (marker `integration`, set here from the
# fixtures a test really uses, so the lane cannot drift).
INTEGRATION_FIXTURES = {"_fleet_processes", "_threads_worker", "sandbox"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ["REDIS_URL"]
    if not _OWN_REDIS:
        yield url
        return
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    with PrivateRedis(port=port) as server:
        yield server.url


@pytest.fixture(scope="session")
def redis_client(redis_url: str):
    return connect(redis_url)


@pytest.fixture(autouse=True)
def fresh_state(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test re-reads settings from the env; one that uses Redis starts from empty
    fleet state."""
    if "redis_url" in request.fixturenames:
        clear_fleet_state(request.getfixturevalue("redis_client"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def fleet_app(redis_url: str):
    yield fleet_celery_app
    _unsubscribe_results()


def _unsubscribe_results() -> None:
    """Starting a chord on Redis subscribes the starting thread's result backend to each
    header result (celery's apply_chord builds a GroupResult with a ready barrier); the
    in-process worker's threads keep those until exit, after the private Redis is gone,
    where each unsubscribe retries for 20 s. Drop them while Redis still runs."""
    gc.collect()
    for consumer in [o for o in gc.get_objects() if isinstance(o, ResultConsumer)]:
        with consumer._locked():
            if consumer._pubsub is not None and consumer.subscribed_to:
                with contextlib.suppress(Exception):
                    consumer._pubsub.unsubscribe(*consumer.subscribed_to)
            consumer.subscribed_to.clear()


# Two kinds of real worker, never consuming at the same time:
# - `fleet`: the worker as it ships (the Procfile's command: prefork pool, its
#   concurrency), as a process configured by the test's environment; end-to-end tests.
# - `fleet_worker`: an in-process worker (threads) sharing this process's objects, for
#   tests of the plumbing's logic (retry allowances, parking) and test-only tasks.

@pytest.fixture(scope="session")
def _fleet_processes(fleet_app) -> Iterator[Fleet]:
    processes = Fleet(fleet_app)
    yield processes
    processes.stop()


_THREADS: dict[str, Any] = {}


@pytest.fixture(scope="session")
def _threads_worker(fleet_app):
    with start_worker(fleet_app, pool="threads", concurrency=4, perform_ping_check=False,
                      loglevel="WARNING", shutdown_timeout=30) as worker:
        _THREADS["worker"] = worker
        yield worker
        _THREADS.clear()


def _consume_in_process(app, on: bool) -> None:
    worker = _THREADS.get("worker")
    if worker is None or _THREADS.get("consuming", True) == on:
        return
    control = app.control.add_consumer if on else app.control.cancel_consumer
    for queue in QUEUES:
        control(queue, destination=[worker.hostname], reply=True)
    _THREADS["consuming"] = on


@pytest.fixture
def fleet(_fleet_processes: Fleet, fleet_app, sandbox_env) -> Iterator[Fleet]:
    """The shipped worker, (re)started with this test's settings when it sends work."""
    _consume_in_process(fleet_app, on=False)
    yield _fleet_processes
    _fleet_processes.drain()


@pytest.fixture
def fleet_worker(_threads_worker, _fleet_processes: Fleet, fleet_app):
    """The in-process worker (threads), consuming the app's queues from the test Redis."""
    _fleet_processes.stop()
    _consume_in_process(fleet_app, on=True)
    return _threads_worker


@pytest.fixture
def worker_process(redis_url: str, _fleet_processes: Fleet, fleet_app
                   ) -> Iterator[Callable[..., WorkerProcess]]:
    """Start shipped worker processes with the test's environment (plus `extra_env`);
    they alone consume during the test; all are stopped after it."""
    _fleet_processes.stop()
    _consume_in_process(fleet_app, on=False)
    started: list[WorkerProcess] = []

    def start(extra_env: dict[str, str] | None = None, name: str = "proc") -> WorkerProcess:
        env = {**os.environ, "REDIS_URL": redis_url, **(extra_env or {})}
        proc = WorkerProcess(env, name)
        started.append(proc)
        proc.wait_ready(fleet_celery_app)
        return proc

    yield start
    for proc in started:
        proc.stop()


# --- Redis behind Sentinel (scripts/redis_sentinel.py), Redis over TLS (redis_tls.py) ----

@pytest.fixture
def sentinel_redis(tmp_path, monkeypatch) -> Iterator[SentinelSet]:
    """A master, a replica and three sentinels on loopback, with passwords; this
    process's settings (and the workers a test starts from its environment) use them."""
    with SentinelSet(tmp_path / "sentinel", password="failover-pw-1",
                     sentinel_password="sentinel-pw-2") as redis_set:
        for name, value in redis_set.env().items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        yield redis_set
    get_settings.cache_clear()


@pytest.fixture
def other_fleet(sandbox_env) -> Iterator[OtherRedisFleet]:
    """Shipped worker processes and a client app for a Redis other than the suite's
    (`sentinel_redis`, `tls_redis`): configured from the environment when first used."""
    fleet = OtherRedisFleet()
    yield fleet
    fleet.stop()


TLS_PASSWORD = "tls-pw-3"


@pytest.fixture
def tls_redis(tmp_path, monkeypatch) -> Iterator[redis_tls.Certificates]:
    """A redis-server that speaks only TLS and wants a client certificate, with
    certificates made now (scripts/redis_tls.py); this process's settings use it."""
    require_tls_redis()
    certs = redis_tls.make_certificates(tmp_path / "certs")
    port = free_port()
    proc = redis_tls.start(port, str(tmp_path), certs, TLS_PASSWORD)
    env = {"REDIS_URL": f"rediss://127.0.0.1:{port}/0", "REDIS_PASSWORD": TLS_PASSWORD,
           "REDIS_TLS_CA_FILE": str(certs.ca), "REDIS_TLS_CERT_FILE": str(certs.client_cert),
           "REDIS_TLS_KEY_FILE": str(certs.client_key)}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield certs
    get_settings.cache_clear()
    proc.terminate()
    proc.wait(10)


# --- the sandbox (sandbox/testing.py): local simulators of the four APIs ----------------

@pytest.fixture(scope="session")
def sandbox():
    """One sandbox server for the whole run, with the small default world."""
    from sandbox.testing import SandboxServer

    with SandboxServer() as server:
        yield server


@pytest.fixture
def sandbox_env(sandbox, redis_url, monkeypatch):
    """The sandbox reset to its default world, with the fleet's env pointing at it."""
    sandbox.admin.reset()
    for name, value in sandbox.env().items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield sandbox
    get_settings.cache_clear()


class ManualClock:
    """The sandbox's clock (rate windows, Retry-After bookkeeping, async actions), moved
    only by the test: its arithmetic is proved exactly, however slowly a busy machine
    serves the requests."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def sandbox_clock(sandbox_env) -> Iterator[ManualClock]:
    manual = ManualClock()
    sandbox_env.ctx.clock = manual
    yield manual
    sandbox_env.ctx.clock = time.monotonic


@pytest.fixture
def stopped_redis_url(tmp_path) -> str:
    """The URL of a Redis that ran here and was stopped (with a password: no message may
    show it)."""
    port = free_port()
    server = start(port, str(tmp_path), persist=False)
    server.terminate()
    server.wait(10)
    return f"redis://:pw4test@127.0.0.1:{port}/0"
