"""`syncfleet` as a person runs it: a subprocess, with this test's environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from tests.support import ROOT


def syncfleet(*args: str, timeout: float = 180, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "worker", *args], cwd=ROOT,
                          env={**os.environ, "COLUMNS": "200", **env}, capture_output=True,
                          text=True, timeout=timeout)


def syncfleet_json(*args: str, **env: str) -> tuple[int, Any]:
    done = syncfleet(*args, "--json", **env)
    try:
        return done.returncode, json.loads(done.stdout)
    except ValueError as exc:
        raise AssertionError(f"not JSON ({done.returncode}): {done.stdout[-2000:]}"
                             f"{done.stderr[-2000:]}") from exc


def syncfleet_tty(*args: str, answer: str, timeout: float = 60, **env: str
                  ) -> subprocess.CompletedProcess[str]:
    """`syncfleet` as a person at a terminal runs it: its stdin is a terminal (a pty) on
    which `answer` is typed (ahead: the terminal keeps it until the command reads)."""
    import pty

    main, terminal = pty.openpty()
    try:
        process = subprocess.Popen([sys.executable, "-m", "worker", *args], cwd=ROOT,
                                   env={**os.environ, "COLUMNS": "200", **env},
                                   stdin=terminal, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        os.close(terminal)
        os.write(main, answer.encode())
        out, err = process.communicate(timeout=timeout)
    finally:
        os.close(main)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)
