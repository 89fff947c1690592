"""The fleet's Redis: the one function that connects to it, one naming scheme for every
key, one lock.

`connect(target)` makes every redis-py client the fleet uses (a plain Redis, or the master
Redis Sentinel names, with TLS and passwords: `worker/redis_target.py`); `client()` is the
one the settings describe.

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
from typing import Any

import redis
from redis.backoff import EqualJitterBackoff, NoBackoff
from redis.exceptions import LockError
from redis.lock import Lock
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelManagedConnection

from worker.redis_target import RedisTarget


def key(*parts: object) -> str:
    from worker.settings import get_settings

    return ":".join([get_settings().redis_key_prefix, *(str(p) for p in parts)])


# A call rides out a few seconds of Redis refusing or dropping connections (a restart,
# the last moments of a Sentinel failover: each retry asks the sentinels for the master
# again) before it fails: at most ~4.5 s, so health checks and scrapes still answer
# quickly when Redis is gone. A timeout is not retried: a dead host has cost one
# (CONNECT_TIMEOUT or READ_TIMEOUT, worker/redis_target.py) and would cost it again.
RETRY = Retry(EqualJitterBackoff(cap=1.0, base=0.05), retries=8,
              supported_errors=(redis.ConnectionError,))


class MasterConnection(SentinelManagedConnection):
    """A connection to the master Sentinel names that asks the sentinels again whenever it
    reconnects. redis-py 8 reconnects a dropped connection within a command's retries
    straight to the address it had, which after a failover is the dead master; `connect()`
    is the path that asks the sentinels."""

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if not self._sock:
            self.connect()
        super().send_packed_command(command, check_health)


class MasterSSLConnection(MasterConnection, redis.SSLConnection):
    """The same over TLS."""


@lru_cache(maxsize=8)
def connect(where: RedisTarget | str, decode_responses: bool = True) -> redis.Redis:
    """A client of the Redis `where` describes (a URL: a plain Redis), one per process
    and target: its pool is shared by every caller."""
    target = RedisTarget(where) if isinstance(where, str) else where
    options: dict[str, Any] = {"db": target.db, "decode_responses": decode_responses,
                               "health_check_interval": 30, "retry": RETRY,
                               **target.socket_options(), **target.credentials(),
                               **target.ssl_options()}
    if target.sentinels:
        # Each sentinel is asked once per look for the master: RETRY, around the look,
        # rides out the failover (redis-py's own retries per sentinel, nested in it, made
        # a fleet whose sentinels are all down take ~40 s to say so).
        asked_once = {**target.sentinel_options(), "retry": Retry(NoBackoff(), 0)}
        sentinel = Sentinel(list(target.sentinels), sentinel_kwargs=asked_once, **options)
        return sentinel.master_for(target.master_name, connection_class=MasterSSLConnection
                                   if target.tls else MasterConnection)
    # The URL's own options (?socket_timeout=...) stay; its credentials are in `options`.
    return redis.Redis.from_url(target.address_url, **options)


def target() -> RedisTarget:
    """The fleet's Redis, as the settings describe it."""
    from worker.settings import get_settings

    return RedisTarget.from_settings(get_settings())


def client() -> redis.Redis:
    return connect(target())


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
