"""What the benchmarks share: the shipped worker command and the memory of its processes."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def procfile_command(process: str) -> list[str]:
    """A Procfile line's command, as shipped (${VAR:-default} left for the caller)."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith(process + ":"):
            return shlex.split(line.split(":", 1)[1])
    raise SystemExit(f"no {process} line in the Procfile")


def worker_command(name: str) -> list[str]:
    """The Procfile's worker line (= compose's: prefork, its concurrency), run by this
    interpreter, with a node name."""
    command = procfile_command("worker")
    assert command[0] == "celery", command
    return [sys.executable, "-m", *command, "-n", f"{name}@%h"]


def beat_command(schedule_file: str) -> list[str]:
    """The Procfile's beat line, run by this interpreter, with its schedule file."""
    command = procfile_command("beat")
    assert command[0] == "celery", command
    return [sys.executable, "-m", *command, "--schedule", schedule_file]


def sandbox_command(port: int) -> list[str]:
    """The Procfile's sandbox line (its world: seed and sizes) on loopback at `port`."""
    command = procfile_command("sandbox")
    assert command[:3] == ["python", "-m", "sandbox"], command
    for flag, value in (("--host", "127.0.0.1"), ("--port", str(port))):
        command[command.index(flag) + 1] = value
    return [sys.executable, *command[1:]]


def status_kb(pid: int, field: str) -> int:
    """A /proc/<pid>/status figure in kB (VmRSS: resident now; VmHWM: peak resident)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def family(pid: int) -> list[int]:
    """A process and its children (a prefork worker's pool)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    kids = [int(p) for p in children.read_text().split()] if children.exists() else []
    return [pid, *kids]


def rss_mb(pids: list[int]) -> float:
    """The resident memory (VmRSS) of these processes and their children, in MB."""
    return sum(status_kb(p, "VmRSS") for pid in pids for p in family(pid)) / 1024


def peak_rss_mb_per_process(pids: list[int]) -> float:
    """The largest peak resident memory (VmHWM) of these workers' processes, children
    included, in MB."""
    return max((status_kb(p, "VmHWM") for pid in pids for p in family(pid)), default=0) / 1024
