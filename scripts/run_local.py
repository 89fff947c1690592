"""The fleet on this machine, without Docker: `make run`.

1. Redis: the configured one (REDIS_URL, REDIS_URL_FILE or REDIS_SENTINELS, environment
   or .env) when set, else a private redis-server with AOF under .run/redis (requiring
   REDIS_PASSWORD when one is set), found the same way as for the tests
   (scripts/redis_server.py).
2. Flower and metrics logins: generated here and printed once (unless FLOWER_BASIC_AUTH /
   METRICS_BASIC_AUTH are set).
3. No API credentials configured (environment or .env)? Then the sandbox runs too and
   the fleet points at it, so the demo syncs sandbox data end to end.
4. honcho runs the Procfile (worker, beat, flower, metrics[, sandbox]): the commands
   compose runs. Ctrl-C stops them all; then the Redis started here stops too.
5. Once they are up, `syncfleet check` tries Redis and every configured credential and
   prints its table: a wrong key shows at start, not at the first scan.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = Path(os.environ.get("SYNCFLEET_RUN_DIR", ROOT / ".run"))  # state: Redis AOF, beat
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(1, str(ROOT))  # the sandbox runs from the checkout, not the installed package
# pydantic-settings reads .env relative to the working directory; the processes run in
# .run/fleet (beat's schedule file lands there), so name the file explicitly.
os.environ.setdefault("SYNCFLEET_ENV_FILE", str(ROOT / ".env"))
ENV_FILE = os.environ["SYNCFLEET_ENV_FILE"]

from redis_server import free_port, start  # noqa: E402

if TYPE_CHECKING:
    import redis

# Any of these configured means "real APIs": the sandbox is not started.
REAL_CREDENTIALS = ("GIS_ACCESS_TOKEN", "CUSTOMERIO_API_KEY", "SEGMENT_ACCESS_TOKEN",
                    "VOUCHERIFY_SECRET_KEY")


def from_env_file(name: str) -> str | None:
    from dotenv import dotenv_values  # pydantic-settings' own .env reader

    return dotenv_values(ENV_FILE).get(name) or None


def start_redis() -> tuple[str | None, subprocess.Popen | None]:
    """The configured Redis (no URL returned); else a private, persistent redis-server on
    a free port: its URL and process."""
    where = ("REDIS_URL", "REDIS_URL_FILE", "REDIS_SENTINELS")
    if any(os.environ.get(name) or from_env_file(name) for name in where):
        return None, None
    from worker.settings import get_settings

    workdir = RUN_DIR / "redis"
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    password = get_settings().redis_password  # a compose .env has one: the fleet sends it
    # Own session: Ctrl-C reaches the fleet first; Redis stops last, after the workers.
    proc = start(port, str(workdir), persist=True, new_session=True,
                 password=password.get_secret_value() if password else None)
    return f"redis://127.0.0.1:{port}/0", proc


def has_real_credentials() -> bool:
    try:
        # Importing `worker` builds the Celery app, which already reads the settings.
        from worker.settings import get_settings

        settings = get_settings()
    except Exception as exc:
        if not isinstance(exc, sys.modules["worker.settings"].SettingsError):
            raise
        sys.exit(f"run_local: {exc}")
    return any(getattr(settings, name.lower()) for name in REAL_CREDENTIALS)


def port_or_free(preferred: int) -> int:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            return free_port()


def fleet_env(redis_url: str | None, sandbox: bool) -> tuple[dict[str, str], list[str]]:
    """The environment for honcho's processes (`redis_url`: a Redis started here), and the
    lines to print once."""
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if redis_url:
        env["REDIS_URL"] = redis_url
    # The processes run in .run/fleet; the sandbox is not part of the installed package
    # (it runs from the checkout), so the checkout goes on their path.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    # Flower's configuration, as in compose: /metrics behind the login.
    env["FLOWER_CONF"] = str(ROOT / "deploy" / "flowerconfig.py")
    # The login compose uses (environment or .env), else a fresh one for this run.
    env["FLOWER_BASIC_AUTH"] = (os.environ.get("FLOWER_BASIC_AUTH")
                                or from_env_file("FLOWER_BASIC_AUTH")
                                or f"admin:{secrets.token_urlsafe(12)}")
    env["FLOWER_PORT"] = str(port_or_free(int(os.environ.get("FLOWER_PORT", 5555))))
    env["FLOWER_ADDRESS"] = "127.0.0.1"  # flower reads FLOWER_<option> from the environment
    env["METRICS_BASIC_AUTH"] = (os.environ.get("METRICS_BASIC_AUTH")
                                 or from_env_file("METRICS_BASIC_AUTH")
                                 or f"prometheus:{secrets.token_urlsafe(12)}")
    env["METRICS_HOST"] = "127.0.0.1"
    preferred = os.environ.get("METRICS_PORT") or from_env_file("METRICS_PORT") or 9808
    env["METRICS_PORT"] = str(port_or_free(int(preferred)))
    login = env["FLOWER_BASIC_AUTH"]
    lines = [f"Redis:  {redis_url or configured_redis()}",
             f"Flower: http://127.0.0.1:{env['FLOWER_PORT']}  (login {login})",
             f"Metrics: http://127.0.0.1:{env['METRICS_PORT']}/metrics  "
             f"(login {env['METRICS_BASIC_AUTH']})"]
    if sandbox:
        from sandbox.credentials import env_for

        env["SANDBOX_HOST"] = "127.0.0.1"
        env["SANDBOX_PORT"] = str(port_or_free(int(os.environ.get("SANDBOX_PORT", 8500))))
        url = f"http://127.0.0.1:{env['SANDBOX_PORT']}"
        env.update(env_for(url))
        lines.append(f"Sandbox: {url}  (no API credentials configured: the fleet talks to "
                     "the sandbox; put real ones in .env to use the real APIs)")
    else:
        lines.append("APIs:   the real services, credentials from the environment / .env")
    return env, lines


def check_at_start(env: dict[str, str], sandbox: bool) -> None:
    """`syncfleet check` once the fleet's processes are up (the sandbox answering, when it
    runs): its table goes to the terminal with the fleet's output."""
    import requests

    if sandbox:
        url = f"http://127.0.0.1:{env['SANDBOX_PORT']}/admin/config"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                requests.get(url, timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.5)
    cli = Path(sys.executable).with_name("syncfleet")
    done = subprocess.run([str(cli), "check"], env=env, capture_output=True, text=True,
                          timeout=120)
    print(done.stdout + done.stderr, end="", flush=True)
    if done.returncode:
        print("run_local: `syncfleet check` failed (above). The fleet keeps running; fix the "
              "variables it names in .env, then restart `make run`.", flush=True)


def run_honcho(env: dict[str, str], processes: list[str], sandbox: bool) -> int:
    import importlib.util

    if importlib.util.find_spec("honcho") is None:
        sys.exit("run_local: honcho is not installed: pip install -e '.[local]' "
                 "(`make run` installs it)")
    workdir = RUN_DIR / "fleet"
    workdir.mkdir(parents=True, exist_ok=True)
    # `-e /dev/null`: settings read .env themselves, below the variables set here.
    args = [sys.executable, "-m", "honcho", "start", "-f", str(ROOT / "Procfile"),
            "-d", str(ROOT), "-e", os.devnull, *processes]
    honcho = subprocess.Popen(args, cwd=workdir, env=env)
    # Ctrl-C reaches honcho too (same process group); on SIGTERM, pass it on.
    signal.signal(signal.SIGTERM, lambda *_: honcho.terminate())
    # Interrupted: stopping already; timed out: the fleet's own logs say more.
    with contextlib.suppress(KeyboardInterrupt, subprocess.TimeoutExpired):
        check_at_start(env, sandbox)
    while True:
        try:
            code = honcho.wait()
            break
        except KeyboardInterrupt:
            continue  # honcho got the same SIGINT and is stopping the fleet
    # Stopped on purpose (Ctrl-C: 130, SIGTERM: 143) is a clean exit.
    return 0 if code in (130, 143) else code


def configured_redis() -> str:
    from worker import store

    return store.target().describe()


def forget_sandbox_state(client: redis.Redis) -> int:
    """The sandbox starts a new world on every run, so what the fleet remembers of the
    last one (sent attributes, statuses, marks, runs: the `sf:*` keys) would hide it."""
    keys = list(client.scan_iter("sf:*", count=1000))
    for i in range(0, len(keys), 500):
        client.delete(*keys[i:i + 500])
    return len(keys)


def private_client(url: str) -> redis.Redis:
    """The Redis started here, through the fleet's own connection (its password)."""
    from worker import store
    from worker.settings import get_settings

    os.environ["REDIS_URL"] = url
    get_settings.cache_clear()
    return store.client()


def main() -> int:
    parser = argparse.ArgumentParser(description="Run the fleet locally (no Docker).")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--sandbox", action="store_true", help="always run against the sandbox")
    mode.add_argument("--no-sandbox", action="store_true", help="never start the sandbox")
    args = parser.parse_args()

    sandbox = args.sandbox or (not args.no_sandbox and not has_real_credentials())
    redis_url, redis_proc = start_redis()
    try:
        env, lines = fleet_env(redis_url, sandbox)
        if sandbox and redis_url and forget_sandbox_state(private_client(redis_url)):
            lines.append("Cleared the fleet's sync state of the previous sandbox run "
                         "(the sandbox's world is new on every start).")
        print("\n".join(["", "syncfleet, local run (Ctrl-C stops everything)", *lines, ""]),
              flush=True)
        processes = ["worker", "beat", "flower", "metrics"] + (["sandbox"] if sandbox else [])
        return run_honcho(env, processes, sandbox)
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(10)


if __name__ == "__main__":
    sys.exit(main())
