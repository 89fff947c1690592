"""What the sandbox is started with: world parameters, fault knobs and budgets per API.

`SandboxConfig` is the start configuration (`python -m sandbox` flags, `SandboxServer`
keywords); `POST /admin/reset` goes back to it. `Faults` and `Limits` are the live knobs
of one API (`POST /admin/faults`, `/admin/limits`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

APIS = ("gis", "customerio", "segment", "voucherify")
REJECT_REASONS = ("auth", "schema", "rate", "size")


@dataclass
class Faults:
    """What goes wrong, per API. Rates are shares of requests in [0, 1]."""

    latency_ms: float = 0
    latency_jitter_ms: float = 0
    error_rate: float = 0
    error_statuses: list[int] = field(default_factory=lambda: [500, 502, 503])
    burst_429: int = 0  # the next N requests get 429
    retry_after: int = 1  # seconds, in the burst's Retry-After
    timeout_rate: float = 0  # never answer (the client times out)
    timeout_s: float = 600
    truncated_rate: float = 0
    non_json_rate: float = 0
    html_error_rate: float = 0
    fail_async_actions: float = 0  # voucherify: share of async actions that end FAILED

    def update(self, values: dict[str, Any]) -> None:
        known = {f.name for f in fields(self)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown fault knobs: {sorted(unknown)}")
        for name, value in values.items():
            setattr(self, name, value)


@dataclass
class Limits:
    """A budget per API; None = unlimited."""

    rps: float | None = None
    rpm: float | None = None
    bulk_per_hour: int | None = None

    def update(self, values: dict[str, Any]) -> None:
        for name in ("rps", "rpm", "bulk_per_hour"):
            if name in values:
                setattr(self, name, values[name])


@dataclass
class SandboxConfig:
    """Everything the sandbox is started with; /admin/reset goes back to it."""

    seed: int = 1
    people: int = 200
    applications: int = 600
    profiles: int = 300
    now: datetime | None = None  # world anchor; default: start time floored to the minute
    faults: dict[str, dict[str, Any]] = field(default_factory=dict)
    limits: dict[str, dict[str, Any]] = field(default_factory=dict)
    max_recorded: int = 200_000

    def world(self) -> dict[str, Any]:
        return {"seed": self.seed, "people": self.people, "applications": self.applications,
                "profiles": self.profiles, "now": self.now.isoformat() if self.now else None}

    def with_world(self, world: dict[str, Any]) -> SandboxConfig:
        """This config with the world parameters of a `POST /admin/reset` body."""
        return SandboxConfig(
            seed=int(world.get("seed", self.seed)),
            people=int(world.get("people", self.people)),
            applications=int(world.get("applications", self.applications)),
            profiles=int(world.get("profiles", self.profiles)),
            now=parse_now(world["now"]) if world.get("now") else self.now,
            faults=self.faults, limits=self.limits, max_recorded=self.max_recorded)


def floor_minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def parse_now(value: Any) -> datetime | None:
    """A world anchor from ISO-8601 text, Unix seconds or a datetime (UTC if naive)."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, int | float):
        moment = datetime.fromtimestamp(value, UTC)
    else:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
