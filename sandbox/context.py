"""The shared context every simulator gets: config, world anchor, clock, per-API state,
the recording of every request and each simulator's data."""

from __future__ import annotations

import gc
import random
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from starlette.routing import Route

from sandbox.config import APIS, REJECT_REASONS, Faults, Limits, SandboxConfig, floor_minute
from sandbox.pipeline import Auth, Endpoint, GuardedEndpoint, Handler
from sandbox.windows import RateBudget, RetryAfters


class ApiState:
    """Counters, faults, budget and hooks of one simulated API."""

    def __init__(self, name: str, rng: random.Random) -> None:
        self.name = name
        self.rng = rng  # the sandbox's: fault randomness follows the world seed
        self.faults = Faults()
        self.limits = Limits()
        self.budget = RateBudget(self.limits)
        self.retry_afters = RetryAfters()
        self.counters: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter({r: 0 for r in REJECT_REASONS})
        self.over_budget = 0
        self.first_at: float | None = None  # wall clock of the first and last request
        self.last_at: float | None = None
        self.error_body: Callable[[int, str], Any] = lambda status, message: {"error": message}
        self.headers_hook: Callable[[ApiState, float], dict[str, str]] | None = None

    def configure(self, faults: dict[str, Any], limits: dict[str, Any]) -> None:
        """Fresh faults and budget from these values; hooks stay (a reset keeps them)."""
        self.faults = Faults()
        self.faults.update(dict(faults))
        self.limits = Limits()
        self.limits.update(limits)
        self.apply_limits()

    def apply_limits(self) -> None:
        """Start a new budget from `limits` (after they changed)."""
        self.budget = RateBudget(self.limits)

    def clear_counts(self) -> None:
        self.counters.clear()
        self.first_at = self.last_at = None
        self.rejected = Counter({r: 0 for r in REJECT_REASONS})
        self.over_budget = 0
        self.retry_afters.clear()

    def roll(self, rate: float) -> bool:
        return rate > 0 and self.rng.random() < rate


class Sandbox:
    """The shared context: config, world anchor, per-API state, recording, module data."""

    def __init__(self, config: SandboxConfig) -> None:
        self.base = config
        self.started = floor_minute(datetime.now(UTC))
        self.config = config
        self.now = config.now or self.started
        self.rng = random.Random(config.seed)
        self.apis = {name: ApiState(name, self.rng) for name in APIS}
        self.recording: deque[dict[str, Any]] = deque(maxlen=config.max_recorded)
        self.data: dict[str, Any] = {}
        self.reset_hooks: list[Callable[[Sandbox], None]] = []
        # The clock of rate windows, Retry-After bookkeeping and Voucherify's async-action
        # phases (monotonic seconds); tests that prove that arithmetic set a manual one.
        self.clock: Callable[[], float] = time.monotonic
        # Bumped by every reset (`resets`) and every clearing of the recording (`epoch`): a
        # request that arrived before one (still in its latency fault when a test moved on)
        # is not recorded after it, and after a reset it is refused, leaving no trace.
        self.resets = 0
        self.epoch = 0
        self.in_flight: Counter[str] = Counter()  # requests being served, per API
        self.reset_config()

    def api(self, name: str) -> ApiState:
        try:
            return self.apis[name]
        except KeyError:
            raise ValueError(f"unknown api {name!r}; one of {list(self.apis)}") from None

    def reset_config(self, world: dict[str, Any] | None = None) -> None:
        """Back to the start config (or a new world): faults, limits, counts, recording."""
        self.config = self.base.with_world(world or {})
        self.now = self.config.now or self.started
        self.rng.seed(self.config.seed)
        for name, state in self.apis.items():
            state.configure(self.base.faults.get(name, {}), self.base.limits.get(name, {}))
            state.clear_counts()
        self.recording.clear()
        self.epoch += 1

    def reset(self, world: dict[str, Any] | None = None) -> None:
        self.resets += 1
        self.reset_config(world)
        for hook in self.reset_hooks:
            hook(self)

    def clear_recording(self) -> None:
        self.recording.clear()
        self.epoch += 1
        for state in self.apis.values():
            state.clear_counts()

    def stats(self) -> dict[str, Any]:
        apis = self.apis.items()
        return {
            "requests": {n: dict(s.counters) for n, s in apis},
            "rejected": {n: dict(s.rejected) for n, s in apis},
            "over_budget": {n: s.over_budget for n, s in apis},
            "early_after_429": {n: s.retry_afters.early for n, s in apis},
            "ignored_retry_after": {n: s.retry_afters.ignored for n, s in apis},
            "in_flight": {n: self.in_flight[n] for n, _ in apis},
            # When each API's first and last recorded request arrived (even once the
            # recording itself has dropped them): a run's sending span.
            "first_at": {n: s.first_at for n, s in apis},
            "last_at": {n: s.last_at for n, s in apis},
            # Objects moved out of the garbage collector's walks (sandbox/pauses.py).
            "gc_frozen": gc.get_freeze_count(),
        }

    def faults_of(self, name: str) -> dict[str, Any]:
        return asdict(self.api(name).faults)

    def limits_of(self, name: str) -> dict[str, Any]:
        return asdict(self.api(name).limits)

    def route(self, api: str, method: str, path: str, handler: Handler,
              auth: Auth | None = None, bulk: bool = False) -> Route:
        """A Starlette Route for `path` (relative to /<api>) running `handler` guarded."""
        endpoint = self.guarded(api, f"{method} {path}", handler, auth, bulk)
        return Route(path, endpoint, methods=[method])

    def guarded(self, api: str, template: str, handler: Handler, auth: Auth | None = None,
                bulk: bool = False) -> Endpoint:
        """`handler` behind the pipeline (sandbox/pipeline.py), counted under `template`."""
        return GuardedEndpoint(self, api, template, handler, auth, bulk).endpoint
