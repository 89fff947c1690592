"""Sending work to the fleet (`gis scan`, `gis backfill`, `migrate`): first check that a
live worker consumes the task's queue, so the command refuses at once ("unavailable")
instead of queueing work nobody takes; `--timeout` bounds every wait of the command."""

from __future__ import annotations

import argparse
import time
from typing import Any

from worker.cli.display import (
    EXIT_FAILED,
    EXIT_HALTED,
    EXIT_TIMEOUT,
    EXIT_UNAVAILABLE,
    CliError,
)

START_WAIT = 60.0  # without --timeout: how long a command waits for a worker to start it
PING_TIMEOUT = 2.0  # how long workers get to say which queues they consume


def add_options(command: argparse.ArgumentParser, follow_help: str) -> None:
    command.add_argument("--follow", action="store_true", help=follow_help)
    command.add_argument("--timeout", type=seconds, default=None, metavar="S",
                         help="give up waiting (for the start, and with --follow for the "
                              f"summary) after S seconds; exit {EXIT_TIMEOUT} (default: "
                              f"{START_WAIT:.0f} s for the start, no limit to follow)")
    command.add_argument("--queue-anyway", action="store_true",
                         help="queue the work even when no worker consumes its queue now")
    command.add_argument("--json", action="store_true", help="print the result as JSON")


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


class Deadline:
    """The command's `--timeout`, shared by its waits."""

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self.at = None if timeout is None else time.monotonic() + timeout

    def start_wait(self) -> float:
        return START_WAIT if self.at is None else max(0.0, self.at - time.monotonic())

    def follow_wait(self) -> float | None:
        return None if self.at is None else max(0.0, self.at - time.monotonic())

    def ran_out(self, what: str) -> CliError:
        waited = START_WAIT if self.timeout is None else self.timeout
        return CliError(f"{what} after {waited:g}s (--timeout); it goes on in the fleet",
                        "timeout", EXIT_TIMEOUT)


def queue_of(task: str) -> str:
    from worker.app import app

    return app.amqp.router.route({}, task)["queue"].name


def require_worker(task: str, anyway: bool) -> None:
    """Refuse (exit 69) unless a live worker consumes `task`'s queue, or `anyway`."""
    if anyway:
        return
    queue = queue_of(task)
    if not consumers(queue):
        raise CliError(f"no worker consumes the {queue} queue, so {task} would wait there: "
                       "start one (`docker compose up -d worker`, or `celery -A worker "
                       "worker`), or pass --queue-anyway", "unavailable", EXIT_UNAVAILABLE)


def consumers(queue: str) -> list[str]:
    """The workers that answer within PING_TIMEOUT and consume `queue`."""
    from worker import heartbeat
    from worker.app import app

    # Stop listening as soon as every worker known alive has answered.
    known = len(heartbeat.alive()) or None
    replies = app.control.inspect(timeout=PING_TIMEOUT, limit=known).active_queues() or {}
    return sorted(node for node, queues in replies.items()
                  if any(q.get("name") == queue for q in queues or []))


def start(task: str, kwargs: dict[str, Any], deadline: Deadline, anyway: bool) -> Any:
    """Send `task` once a worker consumes its queue, and return what it answered when it
    started (its result); a failure in the worker is the command's failure (a refused
    credential: exit 3)."""
    from celery.exceptions import TimeoutError

    from worker.app import app
    from worker.cli import display
    from worker.http import AuthError

    require_worker(task, anyway)
    result = app.send_task(task, kwargs=kwargs)
    try:
        answer = result.get(timeout=deadline.start_wait(), propagate=False)
        failed = result.failed()
    except TimeoutError:
        raise deadline.ran_out(f"{task} was queued but no worker had started it") from None
    finally:
        result.forget()  # read once, here: nobody else looks for it
        display.release(result)
    if failed:
        refused = isinstance(answer, AuthError)
        raise CliError(f"{task} failed in the worker: {type(answer).__name__}: {answer}",
                       "halted" if refused else "failed",
                       EXIT_HALTED if refused else EXIT_FAILED)
    return answer
