"""Tasks that exist only for the tests, registered on the fleet's app (imported by the
root conftest before the test worker starts)."""

from __future__ import annotations

from worker import app
from worker.http import TransientError
from worker.ratelimit import NoBudget
from worker.tasking import FleetTask


@app.task(name="tests.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="tests.total")
def total(numbers: list[int]) -> int:
    return sum(numbers)


@app.task(name="tests.scripted", base=FleetTask, bind=True, max_retries=2,
          max_budget_waits=5, backoff_base=0.01)
def scripted(self: FleetTask, script: list[str]) -> int:
    """Per attempt: "budget" (no budget now), "5xx" (a transient failure) or "ok"."""
    step = script[self.request.retries]
    if step == "budget":
        raise NoBudget("test", 0.01)
    if step == "5xx":
        raise TransientError("test", "503 on GET /")
    return self.request.retries
