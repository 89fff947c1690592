"""Helpers for the GIS -> customer.io tests: the truth a sandbox world implies (computed
here from the world's status histories, independently of worker/gis_sync), and runs."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from tests.support import wait_for
from worker.gis_sync import state
from worker.gis_sync.run_state import GIS
from worker.settings import get_settings

LC = "1340"
WORLD = {"seed": 3, "people": 80, "applications": 240}
WINDOW = 72 * 3600

# The contract's ladder (docs/api-contracts.md, section 4): status -> (step, event type).
TABLE = {"open": (1, "applied"), "applied": (1, "applied"),
         "approved_ep_manager": (1, "applied"), "approved_tn_manager": (1, "applied"),
         "accepted": (2, "accepted"), "matched": (2, "accepted"), "approved": (3, "approved"),
         "realized": (4, "realized"), "completed": (5, "completed"),
         "finished": (5, "completed"), "withdrawn": (-1, "withdrawn"),
         "rejected": (-2, "rejected"), "declined": (-2, "rejected")}
STEP_TYPE = {1: "applied", 2: "accepted", 3: "approved", 4: "realized", 5: "completed"}
OFF_LADDER = {"break_approved", "approval_broken", "realization_broken"}
PROGRAMMES = {"GV", "GTA", "GTE", "GCDP", "GIP", "GE", "TMP", "TLP"}


def scope() -> state.Scope:
    """The (LC, customer.io workspace) the tests' fleet syncs: the sandbox's."""
    return state.scopes(get_settings())[0]


def workspace() -> str:
    return scope().workspace


def unix(value: str) -> int:
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())


def email_ok(person: dict[str, Any]) -> bool:
    email = person.get("email")
    return bool(email) and "@" in email and "." in email.split("@")[-1] and " " not in email


def dob_ok(person: dict[str, Any]) -> bool:
    try:
        return date.fromisoformat((person.get("dob") or "")[:10]).year >= 1900
    except (TypeError, ValueError):
        return False


def dropped_fields(person: dict[str, Any]) -> set[str]:
    """The GIS fields of a person the fleet must drop, with a warning."""
    out = set()
    if person.get("email") and not email_ok(person):
        out.add("email")
    if person.get("dob") and not dob_ok(person):
        out.add("dob")
    return out


class Truth:
    """What the sandbox world says the fleet must send."""

    def __init__(self, admin, lcs: tuple[str, ...] = (LC,)) -> None:
        self.lcs = lcs
        self.people = {p["id"]: p for p in admin.world_people()}
        apps = admin.world_applications()
        self.apps = {a["id"]: a for a in apps if a["person_home_lc"] in lcs
                     or a["opportunity"]["home_lc"]["id"] in lcs}

    def in_scope_people(self) -> set[str]:
        home = {pid for pid, p in self.people.items() if p["home_lc"]["id"] in self.lcs}
        return home | {a["person_id"] for a in self.apps.values()}

    def valid_people(self) -> set[str]:
        """Every person in scope: each has an id, so each is identified (a bad field is
        dropped, the rest sent)."""
        return self.in_scope_people()

    def app_usable(self, app: dict[str, Any]) -> bool:
        return app["opportunity"]["programme"]["short_name"].upper() in PROGRAMMES

    def app_ok(self, app: dict[str, Any]) -> bool:
        """Usable, and on the ladder now (a status outside it emits nothing, however its
        history got there)."""
        return self.app_usable(app) and app["status"] in TABLE

    def history_events(self, app: dict[str, Any]) -> list[tuple[str, str, int]]:
        """(application id, event name, timestamp) of every transition, in order."""
        prefix = app["opportunity"]["programme"]["short_name"].upper()
        out, previous = [], 0
        for entry in app["history"]:
            rung = TABLE.get(entry["status"])
            if rung is None:
                continue
            step, kind = rung
            at = unix(entry["at"])
            if step < 0:
                out.append((app["id"], prefix + kind, at))
            elif step > previous:
                out += [(app["id"], prefix + STEP_TYPE[s], at)
                        for s in range(max(previous, 0) + 1, step + 1)]
            previous = step
        return out

    def all_events(self) -> dict[str, list[tuple[str, str, int]]]:
        """person id -> events of the valid in-scope applications, in order."""
        out: dict[str, list[tuple[str, str, int]]] = {}
        for app in self.apps.values():
            if self.app_ok(app):
                out.setdefault(app["person_id"], []).extend(self.history_events(app))
        return out


def received(admin, site: str | None = None) -> dict[str, list[tuple[str, str, int]]]:
    """person id -> (application id, name, timestamp) as the sandbox recorded them (in
    the default workspace, or `site`)."""
    events = admin.customerio_events(site)["events"]
    return {pid: [(e["data"]["application_id"], e["name"], e["timestamp"]) for e in evs]
            for pid, evs in events.items()}


def flat(events: dict[str, list[tuple[str, str, int]]]) -> set[tuple[str, str, int]]:
    return {e for evs in events.values() for e in evs}


def wait_run(run_id: str, timeout: float = 60, alive: tuple = ()) -> dict[str, Any]:
    """The run's summary, once written (`alive`: processes whose death, or log on a
    timeout, explains a missing one)."""
    return wait_for(lambda: GIS.summary(run_id), f"the summary of run {run_id}",
                    timeout, alive=alive)


def scan(app, timeout: float = 60) -> dict[str, Any]:
    """Run gis.scan on the real worker and wait for its run summary."""
    started = app.send_task("gis.scan").get(timeout=timeout)
    assert started["status"] == "started", started
    return wait_run(started["run_id"], timeout)


def assert_clean(admin) -> dict[str, Any]:
    """Everything the fleet sent validated against the vendor spec; no budget broken."""
    stats = admin.stats()
    assert stats["rejected"].get("customerio", {}).get("schema", 0) == 0, stats["rejected"]
    assert stats["over_budget"].get("customerio", 0) == 0
    assert stats["early_after_429"].get("customerio", 0) == 0
    return stats


def assert_cold_start_arrived(admin, truth: Truth, margin: float = 300) -> None:
    """After a cold start: everyone identified, every transition of the window sent (those
    within `margin` of its edge may fall either way), none under two ids, nothing refused."""
    from collections import Counter

    assert set(admin.customerio_profiles()["profiles"]) == truth.valid_people()
    got = flat(received(admin))
    edge = now() - WINDOW
    history = flat(truth.all_events())
    assert {e for e in history if e[2] >= edge + margin} <= got
    assert got <= {e for e in history if e[2] >= edge - margin}
    counts = Counter(e for evs in received(admin).values() for e in evs)
    assert [e for e, n in counts.items() if n > 1] == []  # a repeat carried the same id
    assert_clean(admin)


def now() -> float:
    return datetime.now(UTC).timestamp()
