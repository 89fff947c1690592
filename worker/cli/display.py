"""What the CLI shows: JSON for scripts, tables and progress bars for people."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

from worker import runs

if TYPE_CHECKING:  # rich loads only when a command shows something to a person
    from rich.console import Console

# Exit statuses (`syncfleet --help` and the README list them).
EXIT_OK = 0
EXIT_FAILED = 1  # unhealthy, a check failed, a run finished with errors, not found, declined,
#                 a run not running (cancel) or not ended (forget)
EXIT_USAGE = 2  # bad flags or a bad configuration (a malformed or missing setting); a
#                 question with no terminal to ask on and no --yes
EXIT_HALTED = 3  # a run halted: an API refused a credential
EXIT_UNAVAILABLE = 69  # Redis unreachable, no worker, an API not answering (EX_UNAVAILABLE)
EXIT_TIMEOUT = 75  # --timeout ran out; the work goes on (EX_TEMPFAIL)
EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_CODES = (
    (EXIT_OK, "ok"),
    (EXIT_FAILED, "unhealthy, failed, finished with errors, not found, declined, not running"),
    (EXIT_USAGE, "bad usage or configuration; no terminal to confirm on and no --yes"),
    (EXIT_HALTED, "a run halted (credential refused)"),
    (EXIT_UNAVAILABLE, "Redis unreachable, no worker consumes the queue, or an API did "
                       "not answer"),
    (EXIT_TIMEOUT, "--timeout ran out"), (EXIT_INTERRUPTED, "interrupted"))
POLL = 0.5  # seconds between two looks at a followed run


class CliError(Exception):
    """A failure the CLI reports as one line (or JSON): `code` is its machine name."""

    def __init__(self, message: str, code: str = "failed", exit_code: int = EXIT_FAILED
                 ) -> None:
        super().__init__(message)
        self.code, self.exit_code = code, exit_code

    def as_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": str(self),
                          "exit_code": self.exit_code}}


def fail_line(message: str, code: str = "failed", exit_code: int = EXIT_FAILED) -> NoReturn:
    raise CliError(message, code, exit_code)


def show_error(error: CliError, as_json: bool) -> None:
    """The one line (stderr), or the error as JSON on stdout for a script."""
    if as_json:
        emit_json(error.as_dict())
    else:
        lines = str(error).splitlines()
        print(f"syncfleet: {lines[0] if lines else error.code}", file=sys.stderr)


class Parser(argparse.ArgumentParser):
    """argparse, with bad input as one line (no usage block) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        fail_line(f"{message} (see `{self.prog} --help`)", "usage", EXIT_USAGE)


def release(result: Any) -> None:
    """Stop waiting on a task's result now: left to its `__del__` at the interpreter's
    exit, Celery's clean-up can no longer import and prints a traceback."""
    backend, result.backend = result.backend, None
    if backend is not None:
        backend.remove_pending_result(result)


def emit_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def console(for_json: bool = False) -> Console:
    """Where people read: stdout, or stderr when stdout is a script's JSON."""
    from rich.console import Console

    return Console(stderr=for_json)


def exit_code(summary: dict[str, Any]) -> int:
    """0 finished, 1 finished with errors (or incomplete), 3 halted."""
    return {runs.FINISHED: EXIT_OK, runs.HALTED: EXIT_HALTED}.get(summary.get("status", ""),
                                                                  EXIT_FAILED)


def table(title: str, columns: Iterable[str], rows: Iterable[Iterable[Any]],
          out: Console | None = None) -> None:
    from rich.table import Table

    shown = Table(title=title)
    for column in columns:
        shown.add_column(column, overflow="fold")
    for row in rows:
        shown.add_row(*(str(v) if v is not None else "" for v in row))
    (out or console()).print(shown)


def key_values(title: str, rows: Iterable[tuple[str, Any]], out: Console) -> None:
    from rich.table import Table

    shown = Table(title=title, show_header=False)
    shown.add_column("what", style="bold")
    shown.add_column("value", overflow="fold")
    for name, value in rows:
        shown.add_row(name, str(value))
    out.print(shown)


def runs_table(latest: list[dict[str, Any]], out: Console | None = None) -> None:
    table("Runs, newest first", ("job", "kind", "run id", "started", "status", "error"),
          ([r.get("job"), r.get("kind"), r.get("run_id"), r.get("started_at"),
            r.get("status"), (r.get("error") or "")[:80]] for r in latest), out)


def follow(out: Console, read: Callable[[], tuple[dict[str, Any], dict[str, Any] | None]],
           bars: tuple[str, ...], timeout: float | None) -> dict[str, Any] | None:
    """Progress that moves while a run works, until `read()` gives its summary (None
    once `timeout` seconds have passed): bars on a terminal, else one plain line each
    time the figures change (logs, CI, scripts).
    `read()` returns ({bar name: (done, total or None)}, summary or None)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    show = _bars(out, bars) if out.is_terminal else _lines(out, bars)
    with show as update:
        while deadline is None or time.monotonic() < deadline:
            figures, summary = read()
            update(figures)
            if summary is not None:
                return summary
            time.sleep(POLL)
    return None


@contextmanager
def _bars(out: Console, bars: tuple[str, ...]) -> Iterator[Callable[[dict[str, Any]], None]]:
    from rich import progress as rp

    columns = (rp.TextColumn("{task.description:<22}"), rp.BarColumn(),
               rp.MofNCompleteColumn(), rp.TimeElapsedColumn())
    with rp.Progress(*columns, console=out, transient=False) as shown:
        tasks = {name: shown.add_task(name, total=None) for name in bars}

        def update(figures: dict[str, Any]) -> None:
            for name, task in tasks.items():
                done, total = figures.get(name, (0, None))
                shown.update(task, completed=done, total=total)

        yield update


@contextmanager
def _lines(out: Console, bars: tuple[str, ...]) -> Iterator[Callable[[dict[str, Any]], None]]:
    last: list[str] = []

    def update(figures: dict[str, Any]) -> None:
        parts = []
        for name in bars:
            done, total = figures.get(name, (0, None))
            parts.append(f"{name} {done}/{total if total is not None else '?'}")
        line = "  ".join(parts)
        if line != (last[-1] if last else None):
            last.append(line)
            out.print(line, highlight=False)

    yield update
