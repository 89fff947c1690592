"""What the GIS -> customer.io job knows, bound to its configuration (names via
`worker.store.key`, under REDIS_KEY_PREFIX, "sf" by default).

State belongs to the pair it was made for: what customer.io has belongs to the
customer.io workspace (CUSTOMERIO_SITE_ID); how far GIS was read belongs to the pair
(GIS LC, workspace). Point the fleet at another workspace or LC and that pair starts as
a cold start (every person's first identify, the LC's first scan); the old pair's state
stays readable until its keys expire or are deleted.

    sf:gis:ws:{W}:sent                 hash: person id -> what customer.io last accepted,
                                       a digest per attribute (compact, see `encode`),
                                       then ".{when}.{run}" (`run_ref`)
    sf:gis:ws:{W}:steps                hash: application id -> last step accepted, then
                                       ".{when}.{run}" (`run_ref`)
    sf:gis:ws:{W}:failed, :failed:due, :dead   failed records (worker/gis_sync/failed.py)
    sf:gis:lc:{L}:ws:{W}:mark          hash: people / applications / incoming -> the
                                       newest `updated_at` handed over
    sf:gis:lc:{L}:ws:{W}:baseline      set when a cold start's walks ended; absent = first
                                       run or Redis lost its data (they look alike)
    sf:gis:lc:{L}:ws:{W}:last_success  when the last scan finished without a halt
    sf:gis:lc:{L}:ws:{W}:first_seen    when the fleet first started (or was first looked
                                       at) with this pair: "no scan has succeeded yet"
                                       is as old as this
    sf:gis:paused, sf:gis:resumed_at   the schedule paused by an operator (`pause.py`)
    sf:gis:lc:{L}:ws:{W}:incoming_open hash: application id -> person id, the open
                                       applications of people of other LCs to LC L's
                                       opportunities, as the sync last saw them (an
                                       application that ends, withdrawn to completed,
                                       leaves); their people are read again by id
                                       every GIS_INCOMING_PEOPLE_REFRESH seconds
    sf:gis:lc:{L}:ws:{W}:incoming_refreshed  when the last of those refreshes started
    sf:gis:token:{fp}, :refresh        a refreshed GIS access token (clients/gis.py)
    sf:lock:gis-token-refresh          one token refresh at a time, fleet-wide

Runs, walks and the scan lock: `worker/gis_sync/run_state.py`.

The run reference after a value says when customer.io last accepted something for the
record (Unix seconds in base 36) and which run sent it (the run id's last 8
characters; `syncfleet gis explain` finds the run in the run index by them): 16 bytes a
record, where the full id would take 38. A value written before references existed has
none (read as "not known").
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from worker import store
from worker.formats import Record
from worker.gis_sync import pause
from worker.gis_sync.mapping import FIELDS
from worker.settings import Settings


@dataclass(frozen=True)
class Scope:
    """The configuration a piece of GIS state belongs to."""

    lc: int
    workspace: str

    def key(self, *parts: object) -> str:
        return store.key("gis", "lc", self.lc, "ws", self.workspace, *parts)


def workspace(settings: Settings) -> str:
    """The customer.io workspace the fleet writes to (its Site ID), as a key part."""
    site = settings.customerio_site_id or "none"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", site)[:64]


def scopes(settings: Settings) -> list[Scope]:
    return [Scope(lc, workspace(settings)) for lc in settings.gis_lcs]


def ws_key(ws: str, *parts: object) -> str:
    return store.key("gis", "ws", ws, *parts)



# -- marks, baseline, last success: per (LC, workspace) ------------------------------------
def marks(scope: Scope) -> dict[str, str]:
    return store.client().hgetall(scope.key("mark"))


def set_marks(scope: Scope, values: dict[str, str]) -> None:
    if values:
        store.client().hset(scope.key("mark"), mapping=values)


def restore_marks(scope: Scope, values: dict[str, str]) -> None:
    """Put the marks back as they were (a halted run's)."""
    with store.client().pipeline(transaction=True) as pipe:
        pipe.delete(scope.key("mark"))
        if values:
            pipe.hset(scope.key("mark"), mapping=values)
        pipe.execute()


def has_baseline(scope: Scope) -> bool:
    return bool(store.client().exists(scope.key("baseline")))


def set_baseline(scope: Scope, run_id: str) -> None:
    store.client().set(scope.key("baseline"), json.dumps({"run": run_id, "at": int(time.time())}))


def set_last_success(scope: Scope) -> None:
    store.client().set(scope.key("last_success"), time.time())


def last_success(scope: Scope) -> float | None:
    raw = store.client().get(scope.key("last_success"))
    return float(raw) if raw else None


def first_seen(scope: Scope) -> float:
    """When the fleet first started with this pair (recorded now if nobody has yet; read
    first, so that a full Redis, which refuses writes, still answers)."""
    raw = store.client().get(scope.key("first_seen"))
    if raw is None:
        store.client().set(scope.key("first_seen"), time.time(), nx=True)
        raw = store.client().get(scope.key("first_seen"))
    return float(raw or time.time())


SUCCESS, RESUME, START = "success", "resume", "start"  # what staleness counts from


def seconds_since_success(scope: Scope, now: float) -> tuple[float, str]:
    """(seconds since the last successful scan, or since the fleet's first start when
    none has succeeded yet; what it counts from): a fleet that never succeeded turns
    stale after the same bound as one that stopped succeeding. The end of a pause of the
    GIS schedule (`pause.py`) counts as well when it is later: scans come again from then
    on, and a long pause does not turn stale the moment it ends."""
    last = last_success(scope)
    since, counted = (last, SUCCESS) if last is not None else (first_seen(scope), START)
    resumed = pause.resumed_at()
    if resumed is not None and resumed > since:
        since, counted = resumed, RESUME
    return now - since, counted


# -- people: what customer.io last accepted, per workspace ---------------------------------
# A person's digests, one per attribute in FIELDS order, 4 bytes each, base64 in one
# value: about 70 bytes a person. The first characters name the field list, so a changed
# list reads as "nothing known" (a first identify again) rather than as wrong digests.
ATTRIBUTES = tuple(FIELDS)
VERSION = hashlib.sha256(",".join(ATTRIBUTES).encode()).hexdigest()[:2]
ABSENT = b"\0\0\0\0"


def digest(value: Any) -> str:
    raw = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.blake2b(raw, digest_size=4).hexdigest()


def digests(attributes: dict[str, Any]) -> dict[str, str]:
    return {name: digest(value) for name, value in attributes.items()}


def encode(known: dict[str, str], ref: str | None = None) -> str:
    raw = b"".join(bytes.fromhex(known[a]) if a in known else ABSENT for a in ATTRIBUTES)
    body = VERSION + base64.urlsafe_b64encode(raw).decode().rstrip("=")
    return f"{body}.{ref}" if ref else body


def decode(value: str | None) -> dict[str, str] | None:
    if not value or not value.startswith(VERSION):
        return None
    body = value[len(VERSION):].split(".", 1)[0]  # "." is outside base64's url alphabet
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    chunks = [raw[i:i + 4] for i in range(0, len(raw), 4)]
    return {a: c.hex() for a, c in zip(ATTRIBUTES, chunks, strict=False) if c != ABSENT}


def sent(ws: str, person_ids: Iterable[str]) -> dict[str, dict[str, str] | None]:
    ids = list(person_ids)
    if not ids:
        return {}
    raws = store.client().hmget(ws_key(ws, "sent"), ids)
    return {pid: decode(raw) for pid, raw in zip(ids, raws, strict=True)}


def save_sent(ws: str, values: dict[str, dict[str, str]], ref: str | None = None) -> None:
    if values:
        store.client().hset(ws_key(ws, "sent"),
                            mapping={pid: encode(d, ref) for pid, d in values.items()})


def accepted(ws: str, person_id: str) -> tuple[dict[str, str] | None, Ref | None]:
    """One person's digests as customer.io last accepted them, and the run reference."""
    raw = store.client().hget(ws_key(ws, "sent"), person_id)
    return decode(raw), parse_ref(raw)


# -- applications: the last step customer.io accepted, per workspace -----------------------
def steps(ws: str, application_ids: Iterable[str]) -> dict[str, int | None]:
    ids = list(application_ids)
    if not ids:
        return {}
    raws = store.client().hmget(ws_key(ws, "steps"), ids)
    return {aid: _step(raw) for aid, raw in zip(ids, raws, strict=True)}


def _step(raw: str | None) -> int | None:
    return int(raw.split(".", 1)[0]) if raw is not None else None


def save_steps(ws: str, values: dict[str, int], ref: str | None = None) -> None:
    if values:
        tail = f".{ref}" if ref else ""
        store.client().hset(ws_key(ws, "steps"),
                            mapping={aid: f"{step}{tail}" for aid, step in values.items()})


def step_accepted(ws: str, application_id: str) -> tuple[int | None, Ref | None]:
    """One application's last step customer.io accepted, and the run reference."""
    raw = store.client().hget(ws_key(ws, "steps"), application_id)
    return _step(raw), parse_ref(raw)


# -- run references: when, and by which run, a record was last accepted --------------------
RUN_SUFFIX = 8
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class Ref:
    at: int  # Unix seconds
    run: str | None  # the run id's last RUN_SUFFIX characters; None: sent outside a run


def run_ref(run_id: str | None, at: float | None = None) -> str:
    """`{when, base 36}.{the run id's tail}`: what `save_sent` / `save_steps` append."""
    return f"{_base36(int(time.time() if at is None else at))}.{(run_id or '')[-RUN_SUFFIX:]}"


def parse_ref(raw: str | None) -> Ref | None:
    parts = (raw or "").split(".", 2)
    if len(parts) < 3:
        return None
    try:
        return Ref(int(parts[1], 36), parts[2] or None)
    except ValueError:
        return None


def _base36(n: int) -> str:
    out = ""
    while True:
        n, digit = divmod(n, 36)
        out = _DIGITS[digit] + out
        if n == 0:
            return out


# -- incoming applicants: people of other LCs behind open applications to an LC ------------
# An application in one of these statuses has ended: its person is no longer refreshed.
ENDED = frozenset({"completed", "finished", "withdrawn", "rejected", "declined"})


def _office_id(record: Any, *path: str) -> str | None:
    for name in path:
        record = record.get(name) if isinstance(record, dict) else None
    return str(record) if isinstance(record, (str, int)) else None


def note_incoming(ws: str, lcs: list[int], applications: Iterable[Record]) -> None:
    """Remember which applications to the opportunities of `lcs` come from people of
    other LCs and are open (those that ended are forgotten)."""
    synced = {str(lc) for lc in lcs}
    opened: dict[str, dict[str, str]] = {}
    ended: dict[str, list[str]] = {}
    for a in applications:
        lc = _office_id(a, "opportunity", "home_lc", "id")
        pid = _office_id(a, "person", "id")
        if lc not in synced or not pid or \
                _office_id(a, "person", "home_lc", "id") in synced:
            continue
        if str(a.get("status")) in ENDED:
            ended.setdefault(lc, []).append(str(a.get("id")))
        else:
            opened.setdefault(lc, {})[str(a.get("id"))] = pid
    with store.client().pipeline(transaction=False) as pipe:
        for lc, values in opened.items():
            pipe.hset(Scope(int(lc), ws).key("incoming_open"), mapping=values)
        for lc, ids in ended.items():
            pipe.hdel(Scope(int(lc), ws).key("incoming_open"), *ids)
        pipe.execute()


def incoming_people(scope: Scope) -> list[str]:
    """The people behind the LC's open incoming applications, each once, by id."""
    ids = set(store.client().hvals(scope.key("incoming_open")))
    return sorted(ids, key=lambda pid: (len(pid), pid))


def incoming_of(scope: Scope, person_id: str) -> list[str]:
    """The open incoming applications to the LC that the sync has seen from this person
    (for `explain`: a scan of the hash, which holds about 40 bytes an application)."""
    found = store.client().hgetall(scope.key("incoming_open"))
    return sorted(app for app, pid in found.items() if pid == person_id)


def incoming_refreshed_at(scope: Scope) -> float | None:
    raw = store.client().get(scope.key("incoming_refreshed"))
    return None if raw is None else float(raw)


def incoming_refresh_due(scope: Scope, every: int, now: float) -> bool:
    """Whether the LC's incoming applicants are due to be read again (never when
    `every` is 0)."""
    if every <= 0:
        return False
    last = incoming_refreshed_at(scope)
    return last is None or now - last >= every


def set_incoming_refreshed(scope: Scope, now: float) -> None:
    store.client().set(scope.key("incoming_refreshed"), now)
