"""The fleet's Redis: one connection per URL and one naming scheme for every key.

Every key the fleet writes (besides Celery's own broker and result keys) starts with
`sf:`, so tests and operators can find, inspect or clear the fleet's state alone.
Domain state lives beside its domain (`worker/gis_sync/state.py`,
`worker/segment_migration/state.py`) and names its keys through `key()`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import lru_cache
from typing import Any

import redis
from redis.exceptions import LockError

PREFIX = "sf"


def key(*parts: object) -> str:
    return ":".join([PREFIX, *(str(p) for p in parts)])


@lru_cache(maxsize=4)
def connect(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True, health_check_interval=30)


def client() -> redis.Redis:
    from worker.settings import get_settings

    return connect(get_settings().redis_url)


def get_json(name: str, r: redis.Redis | None = None) -> Any:
    raw = (r or client()).get(name)
    return None if raw is None else json.loads(raw)


def set_json(name: str, value: Any, r: redis.Redis | None = None, **kwargs: Any) -> bool:
    return bool((r or client()).set(name, json.dumps(value, separators=(",", ":")), **kwargs))


class LockHeld(Exception):
    """Another holder has the lock."""


@contextmanager
def lock(name: str, timeout: float, token: str | None = None) -> Iterator[redis.lock.Lock]:
    """A non-blocking lock with a timeout (a crash never leaves it stuck); the holder
    calls `.extend()` / `.reacquire()` while it works. Raises LockHeld when taken."""
    held = client().lock(key("lock", name), timeout=timeout, blocking=False,
                         thread_local=False)
    if not held.acquire(token=token):
        raise LockHeld(name)
    try:
        yield held
    finally:
        with suppress(LockError):  # expired or taken over: nothing of ours to release
            held.release()
