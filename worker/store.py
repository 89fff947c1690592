"""The fleet's Redis: one connection per URL, one naming scheme for every key, one lock.

Every key the fleet writes (besides Celery's own broker and result keys) starts with
REDIS_KEY_PREFIX (`sf` by default), so tests and operators can find, inspect or clear
the fleet's state alone, and two fleets can share one Redis.
Domain state lives beside its domain and lists its keys in its docstring
(`worker/runs.py`, `worker/gis_sync/state.py`, `worker/segment_migration/state.py`).

    sf:lock:{name}      a lock (see `lock`, `hold`): the holder's token, with a timeout
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import lru_cache

import redis
from redis.exceptions import LockError
from redis.lock import Lock


def key(*parts: object) -> str:
    from worker.settings import get_settings

    return ":".join([get_settings().redis_key_prefix, *(str(p) for p in parts)])


@lru_cache(maxsize=4)
def connect(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True, health_check_interval=30)


def client() -> redis.Redis:
    from worker.settings import get_settings

    return connect(get_settings().redis_url)


class LockHeld(Exception):
    """Another holder has the lock."""


@contextmanager
def lock(name: str, timeout: float, *, token: str | None = None, wait: float = 0,
         renew: bool = False) -> Iterator[Lock]:
    """Hold the lock `sf:lock:{name}` while the block runs; raise LockHeld if another
    holder has it (after waiting up to `wait` seconds).

    - `timeout`: the lock dies this long after its last renewal, so a crashed holder
      never leaves it stuck.
    - `token`: the holder's id (a task id). A redelivered task, whose earlier delivery
      died holding the lock, takes its own lock over at once instead of waiting.
    - `renew`: extend the lock every timeout/3 while the block runs; otherwise the
      holder calls `.extend()` itself during long work.
    """
    held = client().lock(key("lock", name), timeout=timeout, blocking=wait > 0,
                         blocking_timeout=wait or None, thread_local=False)
    if not held.acquire(token=token):
        if token is None or client().get(held.name) != token:
            raise LockHeld(name)
        held.local.token = token.encode()  # ours, from a delivery that died holding it
    stop = threading.Event()
    if renew:
        threading.Thread(target=_renew, args=(held, timeout, stop), daemon=True,
                         name=f"lock-{name}").start()
    try:
        yield held
    finally:
        stop.set()
        with suppress(LockError):  # expired or taken over: nothing of ours to release
            held.release()


def _renew(held: Lock, timeout: float, stop: threading.Event) -> None:
    while not stop.wait(timeout / 3):
        with suppress(LockError):
            held.extend(timeout, replace_ttl=True)


def hold(name: str, timeout: float, token: str) -> bool:
    """Take or keep the lock `sf:lock:{name}` for `token` across tasks (a run's lock,
    held by every task of the run in turn): True if `token` holds it now, its timeout
    renewed; False if another holder has it."""
    held = _lock(name, timeout, token)
    if held.acquire(token=token):
        return True
    if client().get(held.name) != token:
        return False
    with suppress(LockError):
        held.extend(timeout, replace_ttl=True)
    return True


def let_go(name: str, token: str) -> None:
    """Release the lock if `token` still holds it."""
    with suppress(LockError):
        _lock(name, 1, token).release()


def _lock(name: str, timeout: float, token: str) -> Lock:
    held = client().lock(key("lock", name), timeout=timeout, blocking=False,
                         thread_local=False)
    held.local.token = token.encode()
    return held
