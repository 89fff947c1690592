"""The fleet's worker as it ships, for end-to-end tests: the Procfile's (= compose's)
worker command, prefork pool and concurrency included, run as a process with the
test's environment.

A test configures the fleet the way a user does, through the environment
(`monkeypatch.setenv`), and sends work through `Fleet.send_task`: the worker is
(re)started whenever the settings it would read have changed, and reused otherwise.
Between tests the fleet drains: a test starts only once the previous test's tasks are
done, so nothing of it writes into the next one's state.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from celery import Celery
from celery.result import AsyncResult

from tests.support import wait_for
from tests.support.compose import procfile_command
from tests.support.processes import Process
from worker.settings import Settings

QUEUES = ("default", "gis", "segment")
SETTING_NAMES = {name.upper() for name in Settings.model_fields} | {"SYNCFLEET_ENV_FILE"}


def settings_env() -> dict[str, str]:
    """The part of this process's environment the fleet's settings read."""
    return {k: v for k, v in os.environ.items() if k in SETTING_NAMES}


def worker_args(name: str) -> list[str]:
    """The Procfile's worker command, run by this interpreter, with a node name."""
    command = procfile_command("worker")
    assert command[0] == "celery", command
    return [sys.executable, "-m", *command, "-n", f"{name}@%h"]


class Fleet:
    def __init__(self, app: Celery) -> None:
        self.app = app
        self.worker: Process | None = None
        self.env: dict[str, str] | None = None
        self.starts = 0

    def ensure(self) -> None:
        """A worker with the current settings, answering ping."""
        env = settings_env()
        if self.worker is not None and env == self.env and self.worker.died() is None:
            return
        self.stop()
        self.starts += 1
        name = f"fleet{self.starts}"
        self.worker = Process(name, worker_args(name), {**os.environ, **env})
        self.env = env
        node = f"{name}@"
        wait_for(lambda: any(node in n for reply in self.app.control.ping(timeout=0.5) or []
                             for n in reply),
                 f"{name} to answer ping", 60, alive=[self.worker])

    def send_task(self, name: str, *args: Any, **kwargs: Any) -> AsyncResult:
        self.ensure()
        return self.app.send_task(name, *args, **kwargs)

    def log(self) -> str:
        return self.worker.log() if self.worker is not None else ""

    def drain(self, timeout: float = 120) -> None:
        """Wait until the worker has nothing to do (queues empty, nothing running,
        reserved or scheduled); stop it if it does not get there."""
        if self.worker is None or self.worker.died():
            return
        try:
            wait_for(self._idle, "the fleet to finish the test's tasks", timeout,
                     alive=[self.worker], interval=0.3)
        except AssertionError:
            self.stop()

    def _idle(self) -> bool:
        r = self.app.backend.client
        if any(r.llen(q) for q in QUEUES):
            return False
        node = f"fleet{self.starts}@"
        inspect = self.app.control.inspect(timeout=2.0, limit=1,
                                           pattern=f"{node}*", matcher="glob")
        for probe in (inspect.active, inspect.reserved, inspect.scheduled):
            replies = probe() or {}
            if not replies or any(replies.values()):
                return False
        return True

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop(timeout=30)
            self.worker = None
            self.env = None
