"""Voucherify simulator, mounted under /voucherify (= VOUCHERIFY_API_URL).

POST /v1/customers                  upsert one customer by source_id (200, the customer)
GET  /v1/customers/{customerId}     one customer by id or source_id
POST /v1/customers/bulk/async       upsert many: 202 {"async_action_id": "aa_..."}
GET  /v1/async-actions/{id}         ENQUEUED -> IN_PROGRESS -> DONE | FAILED, with result

Behaviour kept from the real service (api-contracts.md section 3):
- `X-App-Id` / `X-App-Token` auth; wrong -> 401 with the vendor's error body.
- Every request body is checked against the vendor's OpenAPI files (identical copies
  shipped next to this module, loaded as the contracts' "known quirks" say: servers
  dropped, spec validation off). Single upserts and the async-action GET go through
  openapi-core; the bulk body (up to thousands of customers) through a jsonschema
  validator derived once from the same spec file, because openapi-core takes ~17 ms per
  100 customers and the derived one ~7 ms. A body breaking the schema -> 400
  {"code","key","message","details"}.
- Size limits: body > 10 MB -> 413; more customers than the bulk cap (default 100,
  POST /admin/voucherify/settings {"bulk_cap": n}) -> 413.
- The async action is processed in the background: ENQUEUED for `enqueued_ms`, then
  IN_PROGRESS for `in_progress_ms` (defaults 50 + 100 ms, settable like bulk_cap), then
  DONE with per-customer errors in `result.errors` (an invalid email -> key
  "invalid_customer"; such customers are not stored) or, for the share of actions set by
  the fault knob `fail_async_actions`, FAILED (nothing stored).
- Upserts by source_id never duplicate; `upserts` counts how often each was written.
- Every response carries X-Rate-Limit-Limit / -Remaining / -Retry (Unix seconds) /
  -Type (the tightest budget window); over budget -> 429 "API limit reached" with
  Retry-After. Default budget 2,000 requests/minute (the Organization plan; the Business
  plan's 100 is one `/admin/limits {"api":"voucherify","rpm":100}` away), no bulk cap per
  hour unless `bulk_per_hour` is set.
"""

from __future__ import annotations

import json
import math
import random
import re
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from openapi_core import Config as OpenAPIConfig
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest
from openapi_schema_validator import OAS30Validator, oas30_format_checker
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sandbox import credentials
from sandbox.core import ApiState, Call, Rejected, Sandbox
from sandbox.specs import strip_spec

API = "voucherify"
SPEC_DIR = Path(__file__).resolve().parent  # package data, next to the code
CUSTOMERS_SPEC = "voucherify-customers.openapi.json"
ASYNC_SPEC = "voucherify-async-actions.openapi.json"
BULK_PATH = "/v1/customers/bulk/async"
DEFAULT_RPM = 2000
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
ERROR_KEYS = {400: "invalid_payload", 401: "unauthorized", 404: "not_found",
              413: "request_too_large", 415: "unsupported_media_type",
              429: "too_many_requests", 500: "internal_error", 502: "bad_gateway",
              503: "service_unavailable"}


# --- vendor errors -------------------------------------------------------------------
def request_id() -> str:
    return "v-" + secrets.token_hex(9)


def error_dict(status: int, message: str, details: str, key: str | None = None,
               **extra: Any) -> dict[str, Any]:
    return {"code": status, "key": key or ERROR_KEYS.get(status, "error"), "message": message,
            "details": details, "request_id": request_id(), **extra}


def error(status: int, message: str, details: str, key: str | None = None,
          **extra: Any) -> JSONResponse:
    return JSONResponse(error_dict(status, message, details, key, **extra), status_code=status)


def error_body(status: int, message: str) -> dict[str, Any]:
    """The core's injected 5xx and its 429s, in Voucherify's shape."""
    if status == 429:
        return error_dict(429, "API limit reached",
                          "You have exceeded the API rate limit of your plan; "
                          "honour Retry-After and the X-Rate-Limit-* headers.")
    return error_dict(status, "Internal Server Error" if status == 500 else message, message)


def rate_headers(state: ApiState, now: float) -> dict[str, str]:
    info = state.budget_info(now)
    if info is None:  # the budget was switched off: nothing to report
        return {}
    limit, remaining, reset_unix, kind = info
    return {"X-Rate-Limit-Limit": str(limit), "X-Rate-Limit-Remaining": str(remaining),
            "X-Rate-Limit-Retry": str(math.ceil(reset_unix)), "X-Rate-Limit-Type": kind}


def authenticate(request: Request) -> str | Response:
    app_id = request.headers.get("x-app-id")
    token = request.headers.get("x-app-token")
    if app_id == credentials.VOUCHERIFY_APPLICATION_ID \
            and token == credentials.VOUCHERIFY_SECRET_KEY:
        return app_id
    return error(401, "Unauthorized",
                 "Missing or invalid X-App-Id / X-App-Token headers.")


# --- the vendor's schemas ------------------------------------------------------------
@cache
def spec_dict(name: str) -> dict[str, Any]:
    # Servers pin the spec to api.voucherify.io; without them loopback paths match.
    return strip_spec(json.loads((SPEC_DIR / name).read_text()), ("servers",))


@cache
def openapi(name: str) -> OpenAPI:
    # Spec validation off: a `default` in the vendor file has the wrong type.
    return OpenAPI.from_dict(spec_dict(name), config=OpenAPIConfig(spec_validator_cls=None))


ANNOTATIONS = ("description", "example", "examples", "title")


def _inline(node: Any, root: dict[str, Any]) -> Any:
    """Resolve local $refs into one self-contained schema, without annotations."""
    if isinstance(node, list):
        return [_inline(item, root) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target: Any = root
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return _inline(target, root)
    out = {}
    for key, value in node.items():
        if key in ANNOTATIONS:
            continue
        if key == "properties":  # property names are data, not keywords
            out[key] = {name: _inline(sub, root) for name, sub in value.items()}
        else:
            out[key] = _inline(value, root)
    return out


def _merge_all_of(node: Any) -> Any:
    """allOf of plain object schemas -> one object schema (same meaning, one pass)."""
    if isinstance(node, list):
        return [_merge_all_of(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _merge_all_of(value) for key, value in node.items()}
    parts = node.get("allOf")
    simple = {"type", "properties", "required"}
    if parts and all(isinstance(p, dict) and set(p) <= simple for p in parts):
        merged: dict[str, Any] = {"type": "object", "properties": {}}
        required: list[str] = []
        for part in parts:
            merged["properties"].update(part.get("properties", {}))
            required += part.get("required", [])
        if required:
            merged["required"] = required
        node.pop("allOf")
        node.update(merged)
    return node


@cache
def bulk_validator() -> OAS30Validator:
    """The bulk request body schema of the customers spec, compiled once."""
    operation = spec_dict(CUSTOMERS_SPEC)["paths"][BULK_PATH]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    flat = _merge_all_of(_inline(schema, spec_dict(CUSTOMERS_SPEC)))
    return OAS30Validator(flat, format_checker=oas30_format_checker)


def _where(path: Any) -> str:
    dotted = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
    return f"Property {dotted or '(body)'}"


def _schema_errors(errors: Any) -> list[str]:
    return [f"{_where(e.absolute_path)}: {e.message}" for e in errors]


def bulk_errors(body: Any) -> list[str]:
    return _schema_errors(bulk_validator().iter_errors(body))


def openapi_errors(spec: str, method: str, path: str, request: Request,
                   body: bytes | None) -> list[str]:
    """What openapi-core finds wrong with this request (empty when valid)."""
    mock = MockRequest("http://sandbox", method.lower(), path, headers=dict(request.headers),
                       args=dict(request.query_params), data=body,
                       content_type="application/json")
    try:
        openapi(spec).validate_request(mock)
    except Exception as exc:  # openapi-core raises one class per kind of problem
        cause = exc.__cause__
        found = _schema_errors(getattr(cause, "schema_errors", ()) or ())
        return found or [str(cause or exc)]
    return []


# --- state ---------------------------------------------------------------------------
@dataclass
class Settings:
    bulk_cap: int = 100
    max_body_bytes: int = 10 * 1024 * 1024
    enqueued_ms: float = 50
    in_progress_ms: float = 100

    def update(self, values: dict[str, Any]) -> None:
        known = {f.name for f in fields(self)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown settings: {sorted(unknown)}; known: {sorted(known)}")
        for name, value in values.items():
            setattr(self, name, type(getattr(self, name))(value))


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Action:
    id: str
    request_id: str
    customers: list[dict[str, Any]]
    fail: bool
    size: int
    created_at: datetime
    started: float  # monotonic
    enqueued_s: float
    in_progress_s: float
    result: dict[str, Any] | None = None  # set when processed

    def status(self, now: float) -> str:
        if self.result is not None:
            return "FAILED" if self.fail else "DONE"
        return "ENQUEUED" if now < self.started + self.enqueued_s else "IN_PROGRESS"

    def to_json(self, now: float) -> dict[str, Any]:
        status = self.status(now)
        elapsed = max(0.0, now - self.started)
        total = self.enqueued_s + self.in_progress_s
        body: dict[str, Any] = {
            "id": self.id, "type": "CUSTOMERS.BULK_UPDATE", "status": status,
            "operation_status": {"DONE": "SUCCESS", "FAILED": "FAILED"}.get(status, "UNKNOWN"),
            "created_at": iso(self.created_at),
            "updated_at": iso(self.created_at + timedelta(seconds=min(elapsed, total))),
            "request_id": self.request_id,
            "progress": 100 if self.result is not None else
            (0 if status == "ENQUEUED" else min(99, int(100 * elapsed / max(total, 1e-9)))),
            "object": "async_action",
        }
        if self.result is not None:
            body["processing_time"] = round(self.in_progress_s * 1000)
            body["result"] = self.result
        return body


@dataclass
class Store:
    settings: Settings = field(default_factory=Settings)
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    actions: dict[str, Action] = field(default_factory=dict)
    pending: deque[Action] = field(default_factory=deque)
    clock: Callable[[], float] = time.monotonic  # the sandbox's clock (tests step it)

    def upsert(self, data: dict[str, Any]) -> dict[str, Any]:
        now = iso(datetime.now(UTC))
        key = data.get("source_id") or data.get("id") or "cust_" + secrets.token_hex(12)
        customer = self.customers.get(key)
        if customer is None:
            customer = {"id": "cust_" + secrets.token_hex(12), "created_at": now, "upserts": 0}
            self.customers[key] = customer
        customer.update({k: v for k, v in data.items() if k != "id"})
        customer["upserts"] += 1
        customer["updated_at"] = now
        return customer

    def enqueue(self, customers: list[dict[str, Any]], fail: bool) -> Action:
        action = Action("aa_" + secrets.token_hex(9), request_id(), customers, fail,
                        len(customers), datetime.now(UTC), self.clock(),
                        self.settings.enqueued_ms / 1000, self.settings.in_progress_ms / 1000)
        self.actions[action.id] = action
        self.pending.append(action)
        return action

    def settle(self, now: float | None = None) -> None:
        """Process every action whose time has come, in the order they arrived (the
        background worker of the real service; run lazily before anything reads)."""
        now = self.clock() if now is None else now
        while self.pending:
            action = self.pending[0]
            if now < action.started + action.enqueued_s + action.in_progress_s:
                return
            self.pending.popleft()
            action.result = self._process(action)
            action.customers = []  # processed: keep the outcome, not the payload

    def _process(self, action: Action) -> dict[str, Any]:
        till = iso(datetime.now(UTC) + timedelta(days=1))
        base = {"reports": [], "reports_available_till": till}
        if action.fail:
            return {**base, "done_count": 0, "failed_count": len(action.customers),
                    "errors": [], "message": "The async action failed: internal error. "
                                             "Nothing was stored; send the batch again."}
        errors = []
        for data in action.customers:
            problem = customer_problem(data)
            if problem:
                errors.append({"source_id": str(data.get("source_id")),
                               "key": "invalid_customer", "message": "Invalid customer",
                               "details": problem})
            else:
                self.upsert(data)
        return {**base, "done_count": len(action.customers) - len(errors),
                "failed_count": len(errors), "errors": errors}


def customer_problem(data: dict[str, Any]) -> str | None:
    """What Voucherify refuses in a schema-valid customer (checked when processed)."""
    email = data.get("email")
    if email is not None and not EMAIL.match(email):
        return f"email: must be a valid email address (actual value is '{email}')"
    return None


def store(ctx: Sandbox) -> Store:
    return ctx.data[API]


# --- handlers ------------------------------------------------------------------------
def read_json(request: Request, call: Call) -> Any:
    """Size, media type and JSON checks shared by the POSTs (raise the vendor's answer)."""
    limit = store(call.ctx).settings.max_body_bytes
    if len(call.body) > limit:
        raise Rejected("size", error(413, "Request entity too large",
                                     f"The request body exceeds {limit} bytes."))
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        raise Rejected("schema", error(415, "Unsupported media type",
                                       "Send the body as application/json."))
    try:
        return call.json()
    except ValueError:
        raise Rejected("schema", error(400, "Invalid payload",
                                       "The body is not valid JSON.")) from None


def schema_rejection(problems: list[str]) -> Rejected:
    return Rejected("schema", error(400, "Invalid payload", "; ".join(problems[:10])))


async def upsert_one(request: Request, call: Call) -> Response:
    read_json(request, call)
    problems = openapi_errors(CUSTOMERS_SPEC, "POST", "/v1/customers", request, call.body)
    if problems:
        raise schema_rejection(problems)
    data = call.json()
    problem = customer_problem(data)
    if problem:
        raise Rejected("schema", error(400, "Invalid customer", problem, "invalid_customer"))
    customers = store(call.ctx)
    customers.settle()
    return JSONResponse(customer_json(customers.upsert(data)))


def customer_json(customer: dict[str, Any]) -> dict[str, Any]:
    body = {k: v for k, v in customer.items() if k != "upserts"}
    body.setdefault("metadata", {})
    body.setdefault("system_metadata", {})
    body["object"] = "customer"
    return body


async def get_customer(request: Request, call: Call) -> Response:
    customers = store(call.ctx)
    customers.settle()
    wanted = request.path_params["customer_id"]
    found = customers.customers.get(wanted) or next(
        (c for c in customers.customers.values() if c["id"] == wanted), None)
    if found is None:
        return error(404, "Resource not found", f"Cannot find customer with id {wanted}",
                     resource_id=wanted, resource_type="customer")
    return JSONResponse(customer_json(found))


def fails(call: Call, customers: list[dict[str, Any]]) -> bool:
    """Whether this bulk's async action ends FAILED (fault `fail_async_actions`): decided
    by the world's seed and the bulk's first source_id, not by arrival order, so the
    same bulks fail however the fleet's workers interleave."""
    share = call.state.faults.fail_async_actions
    if share <= 0:
        return False
    first = str(customers[0].get("source_id")) if customers else ""
    return random.Random(f"{call.ctx.config.seed}:{first}").random() < share


async def bulk_upsert(request: Request, call: Call) -> Response:
    body = read_json(request, call)
    customers = store(call.ctx)
    cap = customers.settings.bulk_cap
    if isinstance(body, list) and len(body) > cap:
        raise Rejected("size", error(413, "Request entity too large",
                                     f"Too many customers in one request: {len(body)} "
                                     f"(at most {cap})."))
    problems = bulk_errors(body)
    if problems:
        raise schema_rejection(problems)
    customers.settle()
    action = customers.enqueue(body, fails(call, body))
    return JSONResponse({"async_action_id": action.id}, status_code=202)


async def get_action(request: Request, call: Call) -> Response:
    action_id = request.path_params["action_id"]
    problems = openapi_errors(ASYNC_SPEC, "GET", f"/v1/async-actions/{action_id}",
                              request, None)
    if problems:
        raise schema_rejection(problems)
    customers = store(call.ctx)
    now = customers.clock()
    customers.settle(now)
    action = customers.actions.get(action_id)
    if action is None:
        return error(404, "Resource not found", f"Cannot find async_action with id {action_id}",
                     resource_id=action_id, resource_type="async_action")
    return JSONResponse(action.to_json(now))


# --- module interface for sandbox.app ---------------------------------------------------
def routes(ctx: Sandbox) -> list[BaseRoute]:
    state = ctx.api(API)
    state.error_body = error_body
    state.headers_hook = rate_headers
    return [
        ctx.route(API, "POST", "/v1/customers", upsert_one, authenticate),
        ctx.route(API, "POST", BULK_PATH, bulk_upsert, authenticate, bulk=True),
        ctx.route(API, "GET", "/v1/customers/{customer_id}", get_customer, authenticate),
        ctx.route(API, "GET", "/v1/async-actions/{action_id}", get_action, authenticate),
    ]


def reset(ctx: Sandbox) -> None:
    """Empty customer base and default settings; the default budget unless configured."""
    ctx.data[API] = Store(clock=lambda: ctx.clock())
    state = ctx.api(API)
    if "rpm" not in ctx.base.limits.get(API, {}):
        state.limits.rpm = DEFAULT_RPM
        state.apply_limits()
    bulk_validator()  # compile now, not on the first bulk request
    openapi(CUSTOMERS_SPEC)
    openapi(ASYNC_SPEC)


def admin_routes(ctx: Sandbox) -> list[BaseRoute]:
    async def customers(request: Request) -> Response:
        current = store(ctx)
        current.settle()
        return JSONResponse({"customers": current.customers})

    async def actions(request: Request) -> Response:
        current = store(ctx)
        now = current.clock()
        current.settle(now)
        return JSONResponse({"actions": [
            {**a.to_json(now), "customers": a.size}
            for a in current.actions.values()]})

    async def settings(request: Request) -> Response:
        current = store(ctx)
        if request.method == "POST":
            try:
                current.settings.update(await request.json())
            except (ValueError, TypeError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"settings": asdict(current.settings)})

    return [
        Route("/voucherify/customers", customers, methods=["GET"]),
        Route("/voucherify/actions", actions, methods=["GET"]),
        Route("/voucherify/settings", settings, methods=["GET", "POST"]),
    ]
