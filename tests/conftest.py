"""Real parts for every test: a Redis server, the fleet's Celery app, a real worker.

Redis is `REDIS_URL` when it is set, otherwise a private redis-server on a free port
(scripts/redis_server.py), started before the app is imported so every connection
points at it. Each test starts with the fleet's own keys (`sf:*`, the rate-limit
windows) cleared; Celery's queue bindings stay, so the session worker keeps working.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kombu import Connection

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from redis_server import PrivateRedis  # noqa: E402

_redis = PrivateRedis().__enter__()
os.environ["REDIS_URL"] = _redis.url
os.environ["SYNCFLEET_ENV_FILE"] = os.devnull  # never a developer's real .env

# Credentials a test did not set must look missing, whatever the shell exported.
for _name in list(os.environ):
    if _name.startswith(("CUSTOMERIO_", "SEGMENT_", "VOUCHERIFY_", "GIS_")):
        del os.environ[_name]

from celery.backends.redis import ResultConsumer  # noqa: E402
from celery.contrib.testing.worker import start_worker  # noqa: E402

from worker import app as fleet_celery_app  # noqa: E402
from worker.http import TransientError  # noqa: E402
from worker.ratelimit import NoBudget  # noqa: E402
from worker.settings import get_settings  # noqa: E402
from worker.store import connect  # noqa: E402
from worker.tasking import FleetTask  # noqa: E402


@fleet_celery_app.task(name="tests.add")
def add(x: int, y: int) -> int:
    return x + y


@fleet_celery_app.task(name="tests.total")
def total(numbers: list[int]) -> int:
    return sum(numbers)


@fleet_celery_app.task(name="tests.scripted", base=FleetTask, bind=True, max_retries=2,
                       max_budget_waits=5, backoff_base=0.01)
def scripted(self: FleetTask, script: list[str]) -> int:
    """Per attempt: "budget" (no budget now), "5xx" (a transient failure) or "ok"."""
    step = script[self.request.retries]
    if step == "budget":
        raise NoBudget("test", 0.01)
    if step == "5xx":
        raise TransientError("test", "503 on GET /")
    return self.request.retries


def pytest_unconfigure(config: pytest.Config) -> None:
    _redis.__exit__(None, None, None)


@pytest.fixture(scope="session")
def redis_url() -> str:
    return _redis.url


@pytest.fixture(scope="session")
def redis_client(redis_url: str):
    return connect(redis_url)


def clear_fleet_state(redis_client) -> None:
    for pattern in ("sf:*", "LIMITS*"):
        keys = list(redis_client.scan_iter(pattern, count=1000))
        for i in range(0, len(keys), 500):
            redis_client.delete(*keys[i:i + 500])


@pytest.fixture(autouse=True)
def fresh_state(redis_client) -> Iterator[None]:
    """Every test starts from empty fleet state and re-reads settings from the env."""
    clear_fleet_state(redis_client)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="session", autouse=True)
def _unsubscribe_results_before_redis_stops():
    """Starting a chord on Redis subscribes the starting thread's result backend to each
    header result (celery's apply_chord builds a GroupResult with a ready barrier); the
    in-process worker's threads keep those until exit, after the private Redis is gone,
    where each unsubscribe retries for 20 s. Drop them while Redis still runs."""
    yield
    gc.collect()
    for consumer in [o for o in gc.get_objects() if isinstance(o, ResultConsumer)]:
        with consumer._locked():
            if consumer._pubsub is not None and consumer.subscribed_to:
                with contextlib.suppress(Exception):
                    consumer._pubsub.unsubscribe(*consumer.subscribed_to)
            consumer.subscribed_to.clear()


@pytest.fixture(scope="session")
def fleet_app():
    return fleet_celery_app


@pytest.fixture(scope="session")
def fleet_worker(fleet_app):
    """A real Celery worker (threads) consuming the app's queues from the test Redis."""
    with start_worker(fleet_app, pool="threads", concurrency=4, perform_ping_check=False,
                      loglevel="WARNING", shutdown_timeout=30) as worker:
        yield worker


class WorkerProcess:
    """`celery -A worker worker` as a separate process, for crash tests."""

    def __init__(self, env: dict[str, str], name: str, concurrency: int = 2) -> None:
        self.name = f"{name}@%h"
        args = [sys.executable, "-m", "celery", "-A", "worker", "worker", "-n", self.name,
                "--pool", "threads", "-c", str(concurrency), "--loglevel", "INFO",
                "--without-heartbeat", "--without-gossip", "--without-mingle"]
        logs = Path(tempfile.gettempdir())
        self.log_path = logs / f"syncfleet-worker-{name}-{time.time_ns()}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, app, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log_path.read_text()[-2000:]}")
            replies = app.control.ping(timeout=0.5) or []
            if any(self.name.split("@")[0] in next(iter(r)) for r in replies):
                return
        raise RuntimeError(f"worker did not answer ping: {self.log_path.read_text()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL the whole process group: no warm shutdown, no acks."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text()


def sweep_unacked(redis_url: str, visibility_timeout: float) -> None:
    """Run kombu's redelivery sweep once, as a live worker does every 10 s: messages a
    killed worker took and never acknowledged go back to their queue once
    `visibility_timeout` has passed. Crash tests call it so as not to wait for the
    next periodic sweep."""
    options = {"visibility_timeout": visibility_timeout, "unacked_restore_throttle": 1}
    with Connection(redis_url, transport_options=options) as conn:
        conn.default_channel.qos.restore_visible(num=1000, interval=1)


@pytest.fixture
def worker_process(redis_url: str) -> Iterator[Callable[..., WorkerProcess]]:
    """Start worker processes with extra env; all are stopped after the test."""
    started: list[WorkerProcess] = []

    def start(extra_env: dict[str, str] | None = None, name: str = "proc",
              concurrency: int = 2) -> WorkerProcess:
        env = {**os.environ, "REDIS_URL": redis_url, **(extra_env or {})}
        proc = WorkerProcess(env, name, concurrency)
        started.append(proc)
        proc.wait_ready(fleet_celery_app)
        return proc

    yield start
    for proc in started:
        proc.stop()


# --- the sandbox (sandbox/testing.py): local simulators of the four APIs ----------------

@pytest.fixture(scope="session")
def sandbox():
    """One sandbox server for the whole run, with the small default world."""
    from sandbox.testing import SandboxServer

    with SandboxServer() as server:
        yield server


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
def sandbox_env(sandbox, monkeypatch):
    """The sandbox reset to its default world, with the fleet's env pointing at it."""
    sandbox.admin.reset()
    for name, value in sandbox.env().items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield sandbox
    get_settings.cache_clear()
