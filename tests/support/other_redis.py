"""The fleet against a Redis other than the suite's (one behind Sentinel, one with TLS):
the settings come from the environment the test sets, as a user's would; worker
processes and a client app are configured from it (the package's own app is configured
once per process, from the suite's Redis)."""

from __future__ import annotations

import os
import re
import runpy
from functools import cached_property
from importlib.util import find_spec
from typing import Any

from celery import Celery

from tests.support.processes import WorkerProcess
from worker.settings import get_settings


def client_app() -> Celery:
    """A Celery app configured exactly as worker/celeryconfig.py configures the fleet from
    the current environment: to send tasks and ping workers there."""
    get_settings.cache_clear()
    config = runpy.run_path(find_spec("worker.celeryconfig").origin)
    app = Celery("syncfleet-test-client", set_as_current=False)
    app.conf.update({k: v for k, v in config.items() if k.islower() and not k.startswith("_")})
    return app


class OtherRedisFleet:
    """The shipped worker as processes, against the Redis the environment describes."""

    def __init__(self) -> None:
        self.workers: list[WorkerProcess] = []
        self.restarts: list[str] = []  # why each restarted worker had exited

    @cached_property
    def app(self) -> Celery:
        """Configured on first use: once the test's environment names its Redis."""
        return client_app()

    def worker(self, name: str) -> WorkerProcess:
        proc = WorkerProcess(dict(os.environ), name)
        self.workers.append(proc)
        proc.wait_ready(self.app, timeout=90)
        return proc

    def revive(self) -> None:
        """Start a new worker in place of each that exited, as compose does for the
        fleet's containers (`restart: unless-stopped`), and keep why it exited: a worker
        should ride out a failover (worker/kombu_patch.py), so a test can tell."""
        for i, proc in enumerate(self.workers):
            if proc.died():
                errors = re.findall(r"Unrecoverable error: [^\n]*?(?= exc=|$)", proc.log(), re.M)
                self.restarts.append(errors[-1] if errors else f"exited: {proc.died()}"[:300])
                name = f"{proc.node.split('@')[0]}-r{len(self.restarts)}"
                self.workers[i] = WorkerProcess(dict(os.environ), name)

    def send_task(self, name: str, **kwargs: Any) -> Any:
        return self.app.send_task(name, kwargs=kwargs)

    def stop(self) -> None:
        for proc in self.workers:
            proc.stop()
        if "app" in self.__dict__:
            self.app.close()
