"""Voucherify simulator, mounted under /voucherify (= VOUCHERIFY_API_URL).

POST /v1/customers                  upsert one customer by source_id (200, the customer)
GET  /v1/customers/{customerId}     one customer by id or source_id
POST /v1/customers/bulk/async       upsert many: 202 {"async_action_id": "aa_..."}
GET  /v1/async-actions/{id}         ENQUEUED -> IN_PROGRESS -> DONE | FAILED, with result

Behaviour kept from the real service (docs/api-contracts.md, section 3):
- `X-App-Id` / `X-App-Token` auth; wrong -> 401 with the vendor's error body.
- Every request body is checked against the vendor's OpenAPI files (identical copies
  shipped next to this module, loaded by sandbox/specs.py as docs/api-contracts.md
  "Reading the vendor files" says: servers dropped, spec validation off). Single upserts
  and the async-action GET go through openapi-core; the bulk body (up to thousands of
  customers) through a validator derived once from the same spec file
  (`specs.oas30_validator`), because openapi-core takes ~17 ms per 100 customers and the
  derived one ~7 ms. A body breaking the schema -> 400 {"code","key","message","details"}.
- Size limits: body > 10 MB -> 413; more customers than the bulk cap (default 100,
  POST /admin/voucherify/settings {"bulk_cap": n}) -> 413.
- The async action is processed in the background: ENQUEUED for `enqueued_ms`, then
  IN_PROGRESS for `in_progress_ms` (defaults 50 + 100 ms, settable like bulk_cap), then
  DONE with per-customer errors in `result.errors` (an invalid email -> key
  "invalid_customer"; such customers are not stored) or, for the share of actions set by
  the fault knob `fail_async_actions`, FAILED (nothing stored). The project's state
  (customers, actions, settings) lives in sandbox/voucherify_project.py.
- Upserts by source_id never duplicate; `upserts` counts how often each was written.
- Every response carries X-Rate-Limit-Limit / -Remaining / -Retry (Unix seconds) /
  -Type (the tightest budget window); over budget -> 429 "API limit reached" with
  Retry-After. Default budget 2,000 requests/minute (the Organization plan; the Business
  plan's 100 is one `/admin/limits {"api":"voucherify","rpm":100}` away), no bulk cap per
  hour unless `bulk_per_hour` is set.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict
from typing import Any

from openapi_schema_validator import OAS30Validator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sandbox import credentials, specs
from sandbox.context import ApiState, Sandbox
from sandbox.pipeline import Call, Rejected
from sandbox.voucherify_project import Project, customer_problem, request_id

API = "voucherify"
CUSTOMERS_SPEC = specs.VOUCHERIFY_CUSTOMERS
ASYNC_SPEC = specs.VOUCHERIFY_ASYNC_ACTIONS
BULK_PATH = "/v1/customers/bulk/async"
DEFAULT_RPM = 2000
ERROR_KEYS = {400: "invalid_payload", 401: "unauthorized", 404: "not_found",
              413: "request_too_large", 415: "unsupported_media_type",
              429: "too_many_requests", 500: "internal_error", 502: "bad_gateway",
              503: "service_unavailable"}


# --- vendor errors -------------------------------------------------------------------
def error_dict(status: int, message: str, details: str, key: str | None = None,
               **extra: Any) -> dict[str, Any]:
    return {"code": status, "key": key or ERROR_KEYS.get(status, "error"), "message": message,
            "details": details, "request_id": request_id(), **extra}


def error(status: int, message: str, details: str, key: str | None = None,
          **extra: Any) -> JSONResponse:
    return JSONResponse(error_dict(status, message, details, key, **extra), status_code=status)


def error_body(status: int, message: str) -> dict[str, Any]:
    """The pipeline's injected 5xx and its 429s, in Voucherify's shape."""
    if status == 429:
        return error_dict(429, "API limit reached",
                          "You have exceeded the API rate limit of your plan; "
                          "honour Retry-After and the X-Rate-Limit-* headers.")
    return error_dict(status, "Internal Server Error" if status == 500 else message, message)


def rate_headers(state: ApiState, now: float) -> dict[str, str]:
    headroom = state.budget.tightest(now)
    if headroom is None:  # the budget was switched off: nothing to report
        return {}
    limit, remaining, reset_unix, kind = headroom
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


# --- the vendor's schemas (loaded by sandbox/specs.py) ----------------------------------
def bulk_validator() -> OAS30Validator:
    """The bulk request body schema of the customers spec, compiled once."""
    return specs.oas30_validator(CUSTOMERS_SPEC, "paths", BULK_PATH, "post", "requestBody",
                                 "content", "application/json", "schema")


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
    try:
        specs.validate_request(spec, method, path, dict(request.headers),
                               dict(request.query_params), body)
    except Exception as exc:  # openapi-core raises one class per kind of problem
        cause = exc.__cause__
        found = _schema_errors(getattr(cause, "schema_errors", ()) or ())
        return found or [str(cause or exc)]
    return []


def project(ctx: Sandbox) -> Project:
    return ctx.data[API]


# --- handlers ------------------------------------------------------------------------
def read_json(request: Request, call: Call) -> Any:
    """Size, media type and JSON checks shared by the POSTs (raise the vendor's answer)."""
    limit = project(call.ctx).settings.max_body_bytes
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
    customers = project(call.ctx)
    customers.settle()
    return JSONResponse(customer_json(customers.upsert(data)))


def customer_json(customer: dict[str, Any]) -> dict[str, Any]:
    body = {k: v for k, v in customer.items() if k != "upserts"}
    body.setdefault("metadata", {})
    body.setdefault("system_metadata", {})
    body["object"] = "customer"
    return body


async def get_customer(request: Request, call: Call) -> Response:
    customers = project(call.ctx)
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
    customers = project(call.ctx)
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
    customers = project(call.ctx)
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
    ctx.data[API] = Project(clock=lambda: ctx.clock())
    state = ctx.api(API)
    if "rpm" not in ctx.base.limits.get(API, {}):
        state.limits.rpm = DEFAULT_RPM
        state.apply_limits()
    bulk_validator()  # compile now, not on the first bulk request
    specs.openapi(CUSTOMERS_SPEC)
    specs.openapi(ASYNC_SPEC)


def admin_routes(ctx: Sandbox) -> list[BaseRoute]:
    async def customers(request: Request) -> Response:
        current = project(ctx)
        current.settle()
        return JSONResponse({"customers": current.customers})

    async def actions(request: Request) -> Response:
        current = project(ctx)
        now = current.clock()
        current.settle(now)
        return JSONResponse({"actions": [
            {**a.to_json(now), "customers": a.size}
            for a in current.actions.values()]})

    async def settings(request: Request) -> Response:
        current = project(ctx)
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
