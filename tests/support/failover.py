"""The failover both jobs' tests cause: the master killed mid-run, the replica promoted."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tests.support import wait_for


def kill_master_and_finish(sentinel_redis: Any, admin: Any, fleet: Any, service: str,
                           unreplicated: int, summary: Callable[[], Any], bound: float
                           ) -> tuple[Any, float, float]:
    """SIGKILL the master (losing `unreplicated` bytes of writes), lift `service`'s faults,
    wait for the promotion and then for `summary()`, reviving the fleet's workers as
    they die; returns (summary, seconds to the promotion, seconds to the summary)."""
    old_master = sentinel_redis.kill_master(unreplicated=unreplicated)
    killed_at = time.monotonic()
    admin.clear_faults(service)
    sentinel_redis.wait_promoted(old_master)
    promoted = time.monotonic() - killed_at
    found = wait_for(lambda: fleet.revive() or summary(), "the run's summary", bound)
    return found, promoted, time.monotonic() - killed_at
