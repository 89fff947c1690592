"""Tasks that exist only for the tests, registered on the fleet's app (imported by the
root conftest before the test worker starts)."""

from __future__ import annotations

from worker import app, retry
from worker.http import RateLimited, TransientError
from worker.ratelimit import NoBudget
from worker.tasking import FleetTask

LONG_WAIT = 3.0  # seconds a "429-long" asks for: more than the tests' MAX_RETRY_COUNTDOWN


@app.task(name="tests.add", ignore_result=False)
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="tests.total", ignore_result=False)
def total(numbers: list[int]) -> int:
    return sum(numbers)


@app.task(name="tests.scripted", base=FleetTask, bind=True, max_retries=2,
          max_budget_waits=5, max_continues=3, backoff_base=0.01, ignore_result=False)
def scripted(self: FleetTask, script: list[str]) -> int:
    """Per attempt: "budget" (no budget now), "5xx" (a transient failure), "continue"
    (checkpointed, go on), "429-long" (a Retry-After of LONG_WAIT s) or "ok"."""
    step = script[self.request.retries]
    if step == "budget":
        raise NoBudget("test", 0.01)
    if step == "5xx":
        raise TransientError("test", "503 on GET /")
    if step == "continue":
        raise retry.Continue()
    if step == "429-long":
        raise RateLimited("test", LONG_WAIT)
    return self.request.retries
