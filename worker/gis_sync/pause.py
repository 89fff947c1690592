"""The GIS schedule paused and resumed by an operator (no Celery here).

While paused, `gis.scan` starts nothing (beat's scans and `syncfleet gis scan` alike: it
answers `skipped` and logs one line); a scan already running goes on (`syncfleet cancel`
stops it), and backfills still run: an operator asks for each one by hand, they move
no marks and take no scan lock. `syncfleet health` shows a paused sync as paused (a
`gis_paused` check, ok) rather than stale, the exporter serves `syncfleet_gis_paused`
and the stale alert holds its fire. Resuming clears the flag and remembers when: the
staleness of every LC then counts from the resume (or a later success), so a long pause
does not turn stale the moment it ends; beat's next scan (or `syncfleet gis scan`)
starts from the marks, catching up with what changed during the pause.

Keys (fleet-wide: every LC of the fleet's prefix):

    sf:gis:paused       hash: by, at (Unix s), reason; absent = not paused
    sf:gis:resumed_at   when the last pause ended (Unix s)
"""

from __future__ import annotations

import time

from worker import store
from worker.formats import Record, iso


def _key() -> str:
    return store.key("gis", "paused")


def _resumed_key() -> str:
    return store.key("gis", "resumed_at")


def paused() -> Record | None:
    """The pause (by, at, since: ISO time, reason), or None when the schedule runs."""
    raw = store.client().hgetall(_key())
    if not raw:
        return None
    at = float(raw.get("at") or 0)
    return {"by": raw.get("by", ""), "at": at, "since": iso(at),
            "reason": raw.get("reason", "")}


def pause(by: str, reason: str = "") -> tuple[Record, bool]:
    """Pause the schedule; returns the pause and whether it is new (an existing pause
    keeps its author and time)."""
    new = bool(store.client().hsetnx(_key(), "at", time.time()))
    if new:
        store.client().hset(_key(), mapping={"by": by, "reason": reason})
    return paused() or {}, new


def resume() -> Record | None:
    """End the pause; returns the pause that ended, or None when there was none."""
    ended = paused()
    if ended is None:
        return None
    with store.client().pipeline(transaction=True) as pipe:
        pipe.delete(_key())
        pipe.set(_resumed_key(), time.time())
        pipe.execute()
    return ended


def resumed_at() -> float | None:
    raw = store.client().get(_resumed_key())
    return float(raw) if raw else None


def describe(pause_: Record) -> str:
    """'paused since 2026-… by alice (reason)' for a line of the CLI or `health`."""
    why = f": {pause_['reason']}" if pause_.get("reason") else ""
    return f"GIS sync paused since {pause_['since']} by {pause_['by'] or 'someone'}{why}"
