"""What the benchmarks share: the shipped worker command and the memory of its processes."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def worker_command(name: str) -> list[str]:
    """The Procfile's worker line (= compose's: prefork, its concurrency), run by this
    interpreter, with a node name."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("worker:"):
            command = shlex.split(line.split(":", 1)[1])
            assert command[0] == "celery", command
            return [sys.executable, "-m", *command, "-n", f"{name}@%h"]
    raise SystemExit("no worker line in the Procfile")


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


def peak_rss_mb_per_process(pids: list[int]) -> float:
    """The largest peak resident memory (VmHWM) of these workers' processes, children
    included, in MB."""
    return max((status_kb(p, "VmHWM") for pid in pids for p in family(pid)), default=0) / 1024
