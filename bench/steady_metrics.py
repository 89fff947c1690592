"""The steady-state benchmark's arithmetic (pure: no Redis, no HTTP, no processes).

- `changes_of`: what one `POST /admin/advance` changed that must reach customer.io (an
  edited person attribute; an application move the ladder turns into an event);
- `latencies`: for each change, the seconds until customer.io first accepted it, read from
  the sandbox's recorded requests (None: it never arrived);
- `percentile`: nearest rank, a change that never arrived counting as infinitely late;
- `footprint`: Little's law over the keys that appeared in Redis during the run;
- `describe`, `beyond_refresh`: a change that never arrived, as `syncfleet gis explain`
  explains its record.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from worker.gis_sync.ladder import DEFAULT_LADDER


@dataclass(frozen=True)
class Change:
    kind: str  # "person" (of the LC), "incoming person" (another LC's), "application"
    id: str
    at: float  # Unix seconds, when the sandbox's GIS changed
    attribute: str | None = None  # the customer.io attribute a person edit changes


def expects_event(before: str, after: str) -> bool:
    """Whether a move from status `before` to `after` emits a customer.io event
    (worker/gis_sync/ladder.py: forward moves and withdrawals or rejections do; backward
    moves, unchanged steps and statuses off the ladder do not). A move from a status off
    the ladder is left out: what the job remembers of it is not known here."""
    old, new = DEFAULT_LADDER.get(before), DEFAULT_LADDER.get(after)
    if old is None or new is None or old[0] == new[0]:
        return False
    return new[0] < 0 or new[0] > old[0]


def changes_of(advance: dict[str, Any], at: float, home_lc: str) -> tuple[list[Change], int]:
    """The changes of one advance that customer.io must see, and how many it must not
    (no-op edits, silent moves)."""
    out: list[Change] = []
    for edit in advance.get("edits", []):
        if edit["from"] != edit["to"]:
            kind = "person" if edit["home_lc"] == home_lc else "incoming person"
            out.append(Change(kind, edit["id"], at, edit["field"]))
    for move in advance.get("moves", []):
        if expects_event(move["from"], move["to"]):
            out.append(Change("application", move["id"], at))
    total = len(advance.get("edits", [])) + len(advance.get("moves", []))
    return out, total - len(out)


def cio_items(request: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(person id, "identify" | "event", attributes or event data) of one recorded
    customer.io request (v1 identify, v1 track, v2 batch)."""
    body, path = request.get("body") or {}, request["path"]
    if not isinstance(body, dict):
        return []
    if path.endswith("/api/v2/batch"):
        return [(str(item.get("identifiers", {}).get("id")), item.get("action", ""),
                 item.get("attributes") or {}) for item in body.get("batch", [])]
    found = re.search(r"/api/v1/customers/(.+?)(/events)?$", path)
    if not found:
        return []
    person = unquote(found.group(1))
    if found.group(2):
        return [(person, "event", body.get("data") or {})]
    return [(person, "identify", body)]


def latencies(changes: list[Change], requests: list[dict[str, Any]]) -> list[float | None]:
    """Per change, seconds from the change to the first accepted customer.io request that
    carries it (the person's identify with that attribute; an event of that
    application), or None."""
    accepted = sorted((r for r in requests if r.get("status") and 200 <= r["status"] < 300),
                      key=lambda r: r["ts"])
    first: dict[tuple[str, str], list[float]] = {}  # (kind, id) -> arrival times
    for request in accepted:
        for person, action, fields in cio_items(request):
            if action == "identify":
                for name in fields:
                    first.setdefault(("identify:" + name, person), []).append(request["ts"])
            elif action == "event" and "application_id" in fields:
                first.setdefault(("event", str(fields["application_id"])), []).append(
                    request["ts"])
    out: list[float | None] = []
    for change in changes:
        key = ("event", change.id) if change.attribute is None else \
            ("identify:" + change.attribute, change.id)
        later = [ts for ts in first.get(key, []) if ts >= change.at]
        out.append(min(later) - change.at if later else None)
    return out


def percentile(values: list[float | None], q: float) -> float:
    """The q-th percentile (0-100, nearest rank); None counts as infinitely late; NaN
    for no values."""
    if not values:
        return math.nan
    ranked = sorted(math.inf if v is None else v for v in values)
    return ranked[max(0, math.ceil(q / 100 * len(ranked)) - 1)]


@dataclass
class KeySeen:
    """A key that appeared during the run, as the periodic snapshots saw it."""

    name: str
    first_seen: float
    size: int = 0  # MEMORY USAGE, the largest seen
    gone_at: float | None = None  # the first snapshot without it
    ttl_at_end: float | None = None  # seconds left at the end; -1: no TTL


@dataclass
class Footprint:
    bytes: float  # equilibrium bytes: sum(size x lifetime) / measured time
    growth_keys: int  # keys made during the run, alive at the end, without a TTL
    growth_bytes: int
    by_family: dict[str, Family]  # per key family, largest equilibrium bytes first


@dataclass
class Family:
    keys: int = 0  # made during the run
    size: int = 0  # their bytes, summed
    bytes: float = 0.0  # their share of the equilibrium bytes


def family(name: str) -> str:
    """A key's family: ids (UUIDs, ULIDs, numbers, hex) replaced by `*`."""
    name = re.sub(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}", "*", name)
    name = re.sub(r"\b[0-9A-HJKMNP-TV-Z]{26}\b", "*", name)
    return re.sub(r"\d{2,}|\b[0-9a-f]{16,}\b", "*", name)


def footprint(keys: list[KeySeen], started: float, ended: float) -> Footprint:
    """Little's law: the bytes new keys hold at equilibrium are their creation rate times
    size times lifetime, i.e. sum(size x lifetime) over the keys made in the measured
    time, divided by it. A key's lifetime: until it went; else its age at the end plus
    the TTL left; a key with no TTL counts its age at the end (a lower bound) and is
    also reported as growth."""
    measured = max(ended - started, 1e-9)
    total, growth_keys, growth_bytes = 0.0, 0, 0
    families: dict[str, Family] = {}
    for key in keys:
        if key.gone_at is not None:
            lifetime = key.gone_at - key.first_seen
        elif key.ttl_at_end is not None and key.ttl_at_end >= 0:
            lifetime = ended - key.first_seen + key.ttl_at_end
        else:
            lifetime = ended - key.first_seen
            growth_keys += 1
            growth_bytes += key.size
        share = key.size * lifetime / measured
        total += share
        group = families.setdefault(family(key.name), Family())
        group.keys, group.size, group.bytes = group.keys + 1, group.size + key.size, \
            group.bytes + share
    ranked = dict(sorted(families.items(), key=lambda kv: -kv[1].bytes))
    return Footprint(total, growth_keys, growth_bytes, ranked)


def describe(change: Change, found: dict[str, Any] | None) -> str:
    """One line: why a change never arrived, from `gis explain`'s JSON of its record."""
    head = f"{change.kind} {change.id} ({change.attribute or 'move'}): "
    if found is None:
        return head + "unknown to GIS and the fleet"
    entry = found.get("failed")
    facts = [f"accepted {found['accepted'].get('at') or 'never'}",
             f"failed: {entry['list']} ({entry['reason']})" if entry else "not failed"]
    if found["kind"] == "person":
        facts.append(f"differs now: {', '.join(found.get('differs') or []) or 'nothing'}")
        if "incoming" in found:
            incoming = found["incoming"]
            facts.append(f"incoming refresh: {'yes' if incoming['refreshed'] else 'no'}, "
                         f"open applications {incoming['open_applications'] or 'none'}")
    else:
        pending = [e["name"] for e in found.get("pending", [])]
        facts.append(f"step accepted {found['accepted'].get('step')}, now "
                     f"{found.get('now')}, pending {pending}")
    return head + "; ".join(facts)


def beyond_refresh(change: Change, found: dict[str, Any] | None) -> bool:
    """An incoming applicant's edit that the refresh does not read by design: none of the
    person's applications to the LC is open (docs/gis-sync.md, Incoming applicants), and
    nothing else held it back (not failed, still a difference to send)."""
    if found is None or change.kind != "incoming person" or "incoming" not in found:
        return False
    return (not found["incoming"]["open_applications"] and not found.get("failed")
            and change.attribute in (found.get("differs") or []))
