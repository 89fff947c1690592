"""Commands under test as real processes: a worker, the compose services, `make run`.

Each runs in its own process group (so a kill takes its children too) with its output in
a log file; `died()` lets `wait_for` stop waiting at once when it exits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from celery import Celery

from tests.support import ROOT, wait_for


class Process:
    def __init__(self, name: str, args: list[str], env: dict[str, str],
                 cwd: Path = ROOT, logs: Path | None = None) -> None:
        self.name = name
        logs = logs or Path(tempfile.gettempdir())
        self.log_path = logs / f"syncfleet-{name}-{time.time_ns()}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def died(self) -> str | None:
        if self.proc.poll() is None:
            return None
        return f"exited with {self.proc.returncode}: {self.log()[-3000:]}"

    def kill(self) -> None:
        """SIGKILL the whole process group: no warm shutdown, no acks."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM (what `docker compose stop` sends), then SIGKILL after `timeout`."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


class WorkerProcess(Process):
    """The shipped worker command (the Procfile's: its pool and concurrency) as a
    separate process with its own node name, for crash tests."""

    def __init__(self, env: dict[str, str], name: str) -> None:
        from tests.support.fleet import worker_args

        self.node = f"{name}@%h"
        super().__init__(f"worker-{name}", worker_args(name), env)

    def wait_ready(self, app: Celery, timeout: float = 60) -> None:
        prefix = self.node.split("@")[0] + "@"
        wait_for(lambda: any(prefix in name for reply in app.control.ping(timeout=0.5) or []
                             for name in reply),
                 f"{self.name} to answer ping", timeout, alive=[self])
