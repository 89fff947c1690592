"""The machinery every simulated API shares: recording, auth, rate limits, faults.

Interface for API modules (sandbox/gis.py, customerio.py, segment.py, voucherify.py)
-----------------------------------------------------------------------------------
A module `sandbox/<api>.py` exposes, and `sandbox.app.create_app` looks for:

    def routes(ctx: Sandbox) -> list[BaseRoute]          # mounted under /<api>
    def admin_routes(ctx: Sandbox) -> list[BaseRoute]    # optional, mounted under /admin
    def reset(ctx: Sandbox) -> None                      # optional: (re)build the module's
                                                         # data from ctx.config; called at
                                                         # start and on POST /admin/reset

Build each route with `ctx.route(api, method, path, handler, auth=..., bulk=False)`:

    async def handler(request: Request, call: Call) -> Response: ...
    def auth(request: Request) -> str | Response: ...     # identity if accepted, else the
                                                         # vendor's 401 Response

`ctx.route` wraps the handler so that, for every request, in this order:
latency fault -> timeout fault (never answers) -> auth (401 counted as rejected "auth")
-> early_after_429 / ignored_retry_after bookkeeping -> burst_429 fault -> rate budget
(429 + Retry-After, counted in over_budget and rejected "rate") -> html_error / 5xx faults
(the handler does not run) -> handler -> truncated / non_json faults (the handler ran, the
body is spoiled).
Every request is recorded (api, method, path, query, identity, status, body, ts) and
counted under "METHOD /path/template" (the template as given to ctx.route, without the
/<api> prefix).

Inside a handler:
- `call.body` (bytes), `call.json()` (parsed once, cached; raises ValueError if invalid),
  `call.identity`, `call.state` (the ApiState), `call.ctx` (the Sandbox).
- `raise Rejected("schema" | "size" | "auth" | "rate", response)` answers `response` and
  counts the rejection.
- Module data lives in `ctx.data[api]` (set it in `reset`).

Per-API hooks on `ctx.api(name)` (an ApiState), set them in `routes()` or `reset()`:
- `error_body(status, message) -> dict`: the vendor's JSON error body for injected 5xx and
  the sandbox's 429s (default `{"error": message}`).
- `headers_hook(state, now) -> dict[str, str]`: extra headers on EVERY response of the API
  (Voucherify's X-Rate-Limit-*). `state.budget_info(now)` gives (limit, remaining,
  reset_unix, kind) for the tightest configured window.

Fault and limit config: `Faults` / `Limits` dataclasses below; set at start through
`SandboxConfig.faults` / `.limits` ({api: {field: value}}) or at run time with
POST /admin/faults and /admin/limits. All state lives in the one event loop: no locks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

log = logging.getLogger(__name__)

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

    def any_active(self) -> bool:
        return self != Faults()


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


# early_after_429 counts every request inside a Retry-After, including those already in
# flight (or sent by another thread before the 429 reached the client's shared cool-down);
# ignored_retry_after only those that arrived more than this after the last 429: a client
# had time to know.
REACTION_GRACE = 0.1

# Loopback jitter: requests a client spaced exactly at its budget can arrive a few ms
# closer together; the window is this much shorter than its period to absorb that.
WINDOW_GRACE = 0.03


class Window:
    """A moving window of accepted requests: at most `limit` per `period` seconds."""

    def __init__(self, limit: float, period: float, kind: str) -> None:
        self.limit = max(1, int(limit))
        self.period = period
        self.span = period * (1 - WINDOW_GRACE)
        self.kind = kind
        self.hits: deque[float] = deque()

    def _expire(self, now: float) -> None:
        hits, edge = self.hits, now - self.span
        while hits and hits[0] <= edge:
            hits.popleft()

    def try_hit(self, now: float) -> float | None:
        """Record a hit and return None, or return seconds until a slot frees."""
        self._expire(now)
        if len(self.hits) >= self.limit:
            return self.hits[0] + self.span - now
        self.hits.append(now)
        return None

    def remaining(self, now: float) -> int:
        self._expire(now)
        return max(0, self.limit - len(self.hits))

    def reset_at(self, now: float) -> float:
        """Monotonic time when the oldest hit leaves the window."""
        return self.hits[0] + self.span if self.hits else now


class ApiState:
    """Counters, faults, limits and hooks of one simulated API."""

    def __init__(self, name: str, faults: Faults, limits: Limits, rng: random.Random) -> None:
        self.name = name
        self.faults = faults
        self.limits = limits
        self.rng = rng
        self.counters: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter({r: 0 for r in REJECT_REASONS})
        self.over_budget = 0
        self.early_after_429 = 0
        self.ignored_retry_after = 0
        # identity -> (monotonic time of the last 429 sent, end of its Retry-After)
        self.retry_until: dict[str, tuple[float, float]] = {}
        self.error_body: Callable[[int, str], Any] = lambda status, message: {"error": message}
        self.headers_hook: Callable[[ApiState, float], dict[str, str]] | None = None
        self.windows: list[Window] = []
        self.bulk_window: Window | None = None
        self.apply_limits()

    def apply_limits(self) -> None:
        lim = self.limits
        self.windows = []
        if lim.rps:
            self.windows.append(Window(lim.rps, 1.0, "requests-per-second"))
        if lim.rpm:
            self.windows.append(Window(lim.rpm, 60.0, "requests-per-minute"))
        self.bulk_window = Window(lim.bulk_per_hour, 3600.0, "bulk-per-hour") \
            if lim.bulk_per_hour else None

    def clear_counts(self) -> None:
        self.counters.clear()
        self.rejected = Counter({r: 0 for r in REJECT_REASONS})
        self.over_budget = 0
        self.early_after_429 = 0
        self.ignored_retry_after = 0
        self.retry_until.clear()

    def budget_info(self, now: float) -> tuple[int, int, float, str] | None:
        """(limit, remaining, reset as Unix seconds, kind) of the tightest window."""
        if not self.windows:
            return None
        win = min(self.windows, key=lambda w: w.remaining(now))
        reset_unix = time.time() + (win.reset_at(now) - now)
        return win.limit, win.remaining(now), reset_unix, win.kind

    def check_budget(self, now: float, bulk: bool) -> float | None:
        """None if the request fits every window, else seconds to wait. A rejected
        request consumes no budget (only accepted requests are counted)."""
        windows = [*self.windows, self.bulk_window] if bulk and self.bulk_window \
            else self.windows
        for win in windows:
            win._expire(now)
            if len(win.hits) >= win.limit:
                return win.hits[0] + win.span - now
        for win in windows:
            win.hits.append(now)
        return None

    def roll(self, rate: float) -> bool:
        return rate > 0 and self.rng.random() < rate


class Rejected(Exception):  # noqa: N818 - reads as "raise Rejected(reason, response)"
    """Raised by a handler: answer `response` and count a rejection for `reason`."""

    def __init__(self, reason: str, response: Response) -> None:
        super().__init__(reason)
        self.reason = reason
        self.response = response


_NO_JSON = object()


class Call:
    """What a handler gets besides the request."""

    __slots__ = ("ctx", "state", "identity", "body", "_json", "recorded")

    def __init__(self, ctx: Sandbox, state: ApiState, identity: str | None, body: bytes) -> None:
        self.ctx = ctx
        self.state = state
        self.identity = identity
        self.body = body
        self._json: Any = _NO_JSON
        self.recorded = False

    def json(self) -> Any:
        """The body parsed as JSON (once); ValueError if it is not JSON."""
        if self._json is _NO_JSON:
            self._json = json.loads(self.body) if self.body else None
        return self._json

    def recorded_body(self) -> Any:
        if not self.body:
            return None
        try:
            return self.json()
        except ValueError:
            return self.body.decode("utf-8", "replace")


Handler = Callable[[Request, Call], Awaitable[Response]]
Auth = Callable[[Request], "str | Response"]


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


def floor_minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def parse_now(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, int | float):
        moment = datetime.fromtimestamp(value, UTC)
    else:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Sandbox:
    """The shared context: config, world anchor, per-API state, recording, module data."""

    def __init__(self, config: SandboxConfig) -> None:
        self.base = config
        self.started = floor_minute(datetime.now(UTC))
        self.config = config
        self.now = config.now or self.started
        self.rng = random.Random(config.seed)
        self.apis: dict[str, ApiState] = {}
        self.recording: deque[dict[str, Any]] = deque(maxlen=config.max_recorded)
        self.data: dict[str, Any] = {}
        self.reset_hooks: list[Callable[[Sandbox], None]] = []
        # The clock of rate windows and Retry-After bookkeeping (monotonic seconds);
        # tests that prove a window's arithmetic set a manual one.
        self.clock: Callable[[], float] = time.monotonic
        for name in APIS:
            self.apis[name] = ApiState(name, Faults(), Limits(), self.rng)
        self.reset_config()

    # --- state -------------------------------------------------------------------------
    def api(self, name: str) -> ApiState:
        try:
            return self.apis[name]
        except KeyError:
            raise ValueError(f"unknown api {name!r}; one of {list(self.apis)}") from None

    def reset_config(self, world: dict[str, Any] | None = None) -> None:
        """Back to the start config (or a new world): faults, limits, counts, recording."""
        base = self.base
        world = world or {}
        self.config = SandboxConfig(
            seed=int(world.get("seed", base.seed)),
            people=int(world.get("people", base.people)),
            applications=int(world.get("applications", base.applications)),
            profiles=int(world.get("profiles", base.profiles)),
            now=parse_now(world["now"]) if world.get("now") else base.now,
            faults=base.faults, limits=base.limits, max_recorded=base.max_recorded)
        self.now = self.config.now or self.started
        self.rng.seed(self.config.seed)
        for name, state in self.apis.items():
            state.faults = Faults()
            state.faults.update(dict(base.faults.get(name, {})))
            state.limits = Limits()
            state.limits.update(base.limits.get(name, {}))
            state.apply_limits()
            state.clear_counts()  # hooks (error_body, headers_hook) survive a reset
        self.recording.clear()

    def reset(self, world: dict[str, Any] | None = None) -> None:
        self.reset_config(world)
        for hook in self.reset_hooks:
            hook(self)

    def clear_recording(self) -> None:
        self.recording.clear()
        for state in self.apis.values():
            state.clear_counts()

    def stats(self) -> dict[str, Any]:
        return {
            "requests": {n: dict(s.counters) for n, s in self.apis.items()},
            "rejected": {n: dict(s.rejected) for n, s in self.apis.items()},
            "over_budget": {n: s.over_budget for n, s in self.apis.items()},
            "early_after_429": {n: s.early_after_429 for n, s in self.apis.items()},
            "ignored_retry_after": {n: s.ignored_retry_after for n, s in self.apis.items()},
        }

    def faults_of(self, name: str) -> dict[str, Any]:
        return asdict(self.api(name).faults)

    def limits_of(self, name: str) -> dict[str, Any]:
        return asdict(self.api(name).limits)

    # --- the wrapper -------------------------------------------------------------------
    def route(self, api: str, method: str, path: str, handler: Handler,
              auth: Auth | None = None, bulk: bool = False) -> Route:
        """A Starlette Route for `path` (relative to /<api>) running `handler` guarded."""
        endpoint = self.guarded(api, f"{method} {path}", handler, auth, bulk)
        return Route(path, endpoint, methods=[method])

    def guarded(self, api: str, template: str, handler: Handler, auth: Auth | None = None,
                bulk: bool = False) -> Callable[[Request], Awaitable[Response]]:
        state = self.api(api)
        recording = self.recording

        async def endpoint(request: Request) -> Response:
            ts = time.time()
            body = await request.body()
            call = Call(self, state, None, body)
            try:
                response = await self._serve(request, call, state, template, handler,
                                             auth, bulk)
            except Rejected as rej:
                if rej.reason in state.rejected:
                    state.rejected[rej.reason] += 1
                response = rej.response
            except Exception:  # a sandbox bug: still answered, recorded and visible
                log.exception("sandbox %s %s failed", api, template)
                response = JSONResponse({"error": "sandbox internal error"}, status_code=500)
            if state.headers_hook is not None:
                response.headers.update(state.headers_hook(state, self.clock()))
            if call.recorded:
                return response
            state.counters[template] += 1
            recording.append({
                "api": api, "method": request.method, "path": request.scope["path"],
                "query": dict(request.query_params) if request.scope["query_string"] else {},
                "identity": call.identity, "status": response.status_code,
                "body": call.recorded_body(), "ts": ts})
            return response

        return endpoint

    async def _serve(self, request: Request, call: Call, state: ApiState, template: str,
                     handler: Handler, auth: Auth | None, bulk: bool) -> Response:
        faults = state.faults
        if faults.latency_ms or faults.latency_jitter_ms:
            delay = faults.latency_ms + state.rng.uniform(0, faults.latency_jitter_ms)
            await asyncio.sleep(delay / 1000)
        if state.roll(faults.timeout_rate):
            await self._never_answer(request, call, state, template, faults.timeout_s)
        if auth is not None:
            who = auth(request)
            if not isinstance(who, str):
                raise Rejected("auth", who)
            call.identity = who
        now = self.clock()
        identity = call.identity or ""
        window = state.retry_until.get(identity)
        if window is not None:
            if now < window[1]:
                state.early_after_429 += 1
                if now > window[0] + REACTION_GRACE:
                    state.ignored_retry_after += 1
            else:
                del state.retry_until[identity]
        if faults.burst_429 > 0:
            faults.burst_429 -= 1
            raise Rejected("rate", self._too_many(state, identity, now, faults.retry_after))
        if state.windows or (bulk and state.bulk_window):
            wait = state.check_budget(now, bulk)
            if wait is not None:
                state.over_budget += 1
                raise Rejected("rate", self._too_many(state, identity, now, wait))
        if state.roll(faults.html_error_rate):
            return HTMLResponse(GATEWAY_PAGE, status_code=502)
        if state.roll(faults.error_rate):
            status = state.rng.choice(faults.error_statuses or [500])
            return JSONResponse(state.error_body(status, "sandbox: injected server error"),
                                status_code=status)
        response = await handler(request, call)
        if state.roll(faults.truncated_rate):
            cut = response.body[: max(1, len(response.body) // 2)]
            return Response(cut, response.status_code, media_type="application/json")
        if state.roll(faults.non_json_rate):
            return Response("OK - upstream answered in plain text\n", response.status_code,
                            media_type="text/plain")
        return response

    def _too_many(self, state: ApiState, identity: str, now: float, wait: float) -> Response:
        seconds = max(1, math.ceil(wait))
        state.retry_until[identity] = (now, now + seconds)
        return JSONResponse(state.error_body(429, "API limit reached"), status_code=429,
                            headers={"Retry-After": str(seconds)})

    async def _never_answer(self, request: Request, call: Call, state: ApiState,
                            template: str, seconds: float) -> None:
        # Recorded now with status None: the client gives up long before an answer
        # (a gateway's 504 after `timeout_s`).
        call.recorded = True
        state.counters[template] += 1
        self.recording.append({
            "api": state.name, "method": request.method, "path": request.scope["path"],
            "query": dict(request.query_params), "identity": None, "status": None,
            "body": call.recorded_body(), "ts": time.time()})
        await asyncio.sleep(seconds)
        raise Rejected("timeout", HTMLResponse(GATEWAY_TIMEOUT_PAGE, status_code=504))


GATEWAY_PAGE = """<!DOCTYPE html>
<html><head><title>502 Bad Gateway</title></head>
<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>
"""

GATEWAY_TIMEOUT_PAGE = GATEWAY_PAGE.replace("502 Bad Gateway", "504 Gateway Time-out")
