"""The request pipeline every simulated route runs through: recording, auth, budgets, faults.

Interface for simulator modules (sandbox/gis.py, customerio.py, segment.py, voucherify.py)
-----------------------------------------------------------------------------------------
Each module exposes what `sandbox.app.create_app` mounts:

    def routes(ctx: Sandbox) -> list[BaseRoute]          # mounted under /<api>
    def admin_routes(ctx: Sandbox) -> list[BaseRoute]    # mounted under /admin
    def reset(ctx: Sandbox) -> None                      # (re)build the module's data from
                                                         # ctx.config; called at start and
                                                         # on POST /admin/reset

and builds each route with `ctx.route(api, method, path, handler, auth=..., bulk=False)`
(or `ctx.guarded(...)` for the bare endpoint):

    async def handler(request: Request, call: Call) -> Response: ...
    def auth(request: Request) -> str | Response: ...     # identity if accepted, else the
                                                         # vendor's 401 Response

For every request, in this order: latency fault -> timeout fault (never answers) -> auth
(401 counted as rejected "auth") -> early_after_429 / ignored_retry_after bookkeeping ->
burst_429 fault -> rate budget (429 + Retry-After, counted in over_budget and rejected
"rate"; the Retry-After bookkeeping and the budget count the request at its arrival, before
the latency fault) -> html_error / 5xx faults (the handler does not run) -> handler -> truncated /
non_json faults (the handler ran, the body is spoiled). Every request is recorded (api,
method, path, query, identity, status, body, ts) and counted under "METHOD /path/template"
(the template as given to ctx.route, without the /<api> prefix).

Inside a handler:
- `call.body` (bytes), `call.json()` (parsed once, cached; raises ValueError if invalid),
  `call.identity`, `call.state` (the ApiState), `call.ctx` (the Sandbox).
- `raise Rejected("schema" | "size" | "auth" | "rate", response)` answers `response` and
  counts the rejection.
- Module data lives in `ctx.data[api]` (set it in `reset`).

Per-API hooks on `ctx.api(name)` (an ApiState), set in `routes()` or `reset()`:
- `error_body(status, message) -> dict`: the vendor's JSON error body for injected 5xx and
  the sandbox's 429s (default `{"error": message}`).
- `headers_hook(state, now) -> dict[str, str]`: extra headers on EVERY response of the API
  (Voucherify's X-Rate-Limit-*); `state.budget.tightest(now)` describes the budget.

All state lives in the one event loop: no locks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

if TYPE_CHECKING:
    from sandbox.context import ApiState, Sandbox

log = logging.getLogger(__name__)

GATEWAY_PAGE = """<!DOCTYPE html>
<html><head><title>502 Bad Gateway</title></head>
<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>
"""
GATEWAY_TIMEOUT_PAGE = GATEWAY_PAGE.replace("502 Bad Gateway", "504 Gateway Time-out")


class Rejected(Exception):  # reads as "raise Rejected(reason, response)"
    """Raised by a handler: answer `response` and count a rejection for `reason`."""

    def __init__(self, reason: str, response: Response) -> None:
        super().__init__(reason)
        self.reason = reason
        self.response = response


_NO_JSON = object()


class Call:
    """What a handler gets besides the request."""

    __slots__ = ("ctx", "state", "identity", "body", "_json", "recorded", "arrived")

    def __init__(self, ctx: Sandbox, state: ApiState, body: bytes, arrived: float) -> None:
        self.arrived = arrived  # ctx.clock() when the request reached the sandbox
        self.ctx = ctx
        self.state = state
        self.identity: str | None = None
        self.body = body
        self._json: Any = _NO_JSON
        self.recorded = False  # by the timeout fault, before the request ends

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
Endpoint = Callable[[Request], Awaitable[Response]]


class GuardedEndpoint:
    """`handler` behind the pipeline, recorded and counted under `template`."""

    def __init__(self, ctx: Sandbox, api: str, template: str, handler: Handler,
                 auth: Auth | None, bulk: bool) -> None:
        self.ctx = ctx
        self.state = ctx.api(api)
        self.template = template
        self.handler = handler
        self.auth = auth
        self.bulk = bulk

    async def endpoint(self, request: Request) -> Response:
        ts, arrived = time.time(), self.ctx.clock()
        state, epoch = self.state, self.ctx.epoch
        call = Call(self.ctx, state, await request.body(), arrived)
        self.ctx.in_flight[state.name] += 1
        try:
            response = await self._serve(request, call)
        except Rejected as rejected:
            if rejected.reason in state.rejected:
                state.rejected[rejected.reason] += 1
            response = rejected.response
        except Exception:  # a sandbox bug: still answered, recorded and visible
            log.exception("sandbox %s %s failed", state.name, self.template)
            response = JSONResponse({"error": "sandbox internal error"}, status_code=500)
        finally:
            self.ctx.in_flight[state.name] -= 1
        if state.headers_hook is not None:
            response.headers.update(state.headers_hook(state, self.ctx.clock()))
        if not call.recorded and self.ctx.epoch == epoch:
            self._record(request, call, response.status_code, ts)
        return response

    def _record(self, request: Request, call: Call, status: int | None, ts: float) -> None:
        state = self.state
        state.counters[self.template] += 1
        state.first_at = ts if state.first_at is None else min(state.first_at, ts)
        state.last_at = ts if state.last_at is None else max(state.last_at, ts)
        self.ctx.recording.append({
            "api": self.state.name, "method": request.method, "path": request.scope["path"],
            "query": dict(request.query_params) if request.scope["query_string"] else {},
            "identity": call.identity, "status": status, "body": call.recorded_body(),
            "ts": ts})

    async def _serve(self, request: Request, call: Call) -> Response:
        state, faults, resets = self.state, self.state.faults, self.ctx.resets
        if faults.latency_ms or faults.latency_jitter_ms:
            delay = faults.latency_ms + state.rng.uniform(0, faults.latency_jitter_ms)
            await asyncio.sleep(delay / 1000)
            if self.ctx.resets != resets:  # from before a reset: no effect on the new state
                call.recorded = True
                return JSONResponse({"error": "sandbox: reset while this request waited"},
                                    status_code=503)
        if state.roll(faults.timeout_rate):
            await self._never_answer(request, call, faults.timeout_s)
        if self.auth is not None:
            who = self.auth(request)
            if not isinstance(who, str):
                raise Rejected("auth", who)
            call.identity = who
        self._check_rate(call.identity or "", call.arrived)
        if state.roll(faults.html_error_rate):
            return HTMLResponse(GATEWAY_PAGE, status_code=502)
        if state.roll(faults.error_rate):
            status = state.rng.choice(faults.error_statuses or [500])
            return JSONResponse(state.error_body(status, "sandbox: injected server error"),
                                status_code=status)
        response = await self.handler(request, call)
        return self._spoiled(response)

    def _check_rate(self, identity: str, arrived: float) -> None:
        """Retry-After bookkeeping, then the burst_429 fault, then the budget: each as of
        the request's arrival (as a real gateway counts), not of this check, which a
        latency fault or a busy event loop delays by an uneven amount."""
        state, now = self.state, self.ctx.clock()
        state.retry_afters.arrived(identity, arrived)
        if state.faults.burst_429 > 0:
            state.faults.burst_429 -= 1
            raise Rejected("rate", self._too_many(identity, now, state.faults.retry_after))
        wait = state.budget.admit(arrived, self.bulk)
        if wait is not None:
            state.over_budget += 1
            raise Rejected("rate", self._too_many(identity, now, wait))

    def _spoiled(self, response: Response) -> Response:
        """The truncated / non-JSON faults: the handler ran, its answer is damaged."""
        state = self.state
        if state.roll(state.faults.truncated_rate):
            cut = response.body[: max(1, len(response.body) // 2)]
            return Response(cut, response.status_code, media_type="application/json")
        if state.roll(state.faults.non_json_rate):
            return Response("OK - upstream answered in plain text\n", response.status_code,
                            media_type="text/plain")
        return response

    def _too_many(self, identity: str, now: float, wait: float) -> Response:
        seconds = self.state.retry_afters.tell(identity, now, wait)
        return JSONResponse(self.state.error_body(429, "API limit reached"), status_code=429,
                            headers={"Retry-After": str(seconds)})

    async def _never_answer(self, request: Request, call: Call, seconds: float) -> None:
        # Recorded now with status None: the client gives up long before an answer
        # (a gateway's 504 after `timeout_s`).
        call.recorded = True
        self._record(request, call, None, time.time())
        await asyncio.sleep(seconds)
        raise Rejected("timeout", HTMLResponse(GATEWAY_TIMEOUT_PAGE, status_code=504))
