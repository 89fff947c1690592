"""One patch of kombu's Redis transport, so a worker survives a Redis restart or a
Sentinel failover instead of exiting with
`Unrecoverable error: AttributeError("'NoneType' object has no attribute 'hostname'")`.

The bug (kombu 5.7.0, Celery 5.7.0; no newer release fixes it): when the broker connection
breaks while a worker holds messages (running, prefetched or waiting for a countdown)
and waits for more (a BRPOP in flight), Celery's consumer cleans up twice:

1. `Connection.collect()` closes the channel. `Channel.close()` first reads the reply
   of the BRPOP in flight; on the dead connection that read raises a ConnectionError,
   which aborts the close half-way (the channel stays open) and is swallowed. `collect()`
   then detaches the transport from the connection (`transport.client = None`).
2. `Connection.close()` closes the same channel again; now the close goes through and
   puts the held messages back into Redis (`restore_unacked`), which needs a new
   connection pool, built from `transport.client`: None, hence the AttributeError. It is
   no connection error, so nothing catches it and the worker exits.

The patch lets step 1 finish the close when the BRPOP's reply can never come (its
connection is gone): the held messages are put back then (or, with Redis still away,
left in Redis's `unacked` hash for the sweep, as after any dead worker), step 2 finds
the channel closed and does nothing, and the consumer reconnects as it does for a
connection lost at any other moment. tests/fleet/test_redis_restart.py restarts Redis
under a shipped worker that holds messages, with and without this patch.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from kombu.transport import redis as kombu_redis

_PATCHED = "_syncfleet_lost_brpop_patch"


def apply() -> None:
    """Patch kombu's Redis channels (plain and Sentinel) once per process."""
    channel = kombu_redis.Channel
    if getattr(channel.close, _PATCHED, False):
        return
    channel.close = _close_despite_a_lost_brpop(channel.close)


def _close_despite_a_lost_brpop(close: Callable[[Any], None]) -> Callable[[Any], None]:
    @functools.wraps(close)
    def patched(self: Any) -> None:
        if self._in_poll:
            try:
                self._brpop_read()
            except kombu_redis.Empty:
                pass
            except self.connection_errors:
                pass  # the connection is gone: its reply never comes; close the rest
        close(self)  # `_in_poll` is cleared now: kombu's close does not read again

    setattr(patched, _PATCHED, True)
    return patched
