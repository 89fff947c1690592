"""Segment Profile API simulator, mounted under /segment (= SEGMENT_PROFILES_URL).

GET /v1/spaces/{space}/collections/users/profiles                       list of segment ids
GET /v1/spaces/{space}/collections/users/profiles/{profile_id}/traits   traits, paged
GET /v1/spaces/{space}/collections/users/profiles/{profile_id}/external_ids

Behaviour kept from the real service (docs/api-contracts.md, section 2):
- Basic auth: the access token is the user name, the password is empty (ignored).
- Cursor paging with `limit` and `next`; `cursor.next` is opaque to clients (here: an
  offset for the list and external ids, the first trait key of the next page for traits).
  Limits: list default 10, max 100; traits default 10, max 200; external ids default 10,
  max 100. Out-of-range `limit` or an unknown `next` -> 400 invalid_request_error.
- Profile ids are lowercase `type:value`. A raw `+` in the path reads as a space (the way
  the real server decodes it), so `email:a+b@x.com` must be sent as `email:a%2Bb@x.com`.
- 100 requests/second per space by default (`/admin/limits`). Over it: 429 with the
  vendor body and NO rate headers (the real API sends none, so clients must back off
  on their own; the pipeline's Retry-After is removed here).
"""

from __future__ import annotations

import base64
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sandbox import credentials
from sandbox.context import Sandbox
from sandbox.pipeline import Call, Endpoint, Handler
from sandbox.worlds.segment import Profile, ProfileWorld

API = "segment"
BASE = "/v1/spaces/{space}/collections/users/profiles"
DEFAULT_RPS = 100
PAGE = {"profiles": (10, 100), "traits": (10, 200), "external_ids": (10, 100)}  # default, max
ID_TYPES = ("segment_id", "user_id", "email", "anonymous_id")
ERROR_CODES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found",
               429: "rate_limit_error"}


class BadRequest(Exception):
    """A query parameter the real API would refuse with 400."""


def error(status: int, message: str, code: str | None = None) -> JSONResponse:
    code = code or ERROR_CODES.get(status, "server_error")
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def error_body(status: int, message: str) -> dict[str, Any]:
    code = ERROR_CODES.get(status, "server_error")
    if status == 429:
        message = "Too many requests for this space: slow down and retry with backoff."
    return {"error": {"code": code, "message": message}}


def authenticate(request: Request) -> str | Response:
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    token = ""
    if scheme.lower() == "basic":
        try:
            token = base64.b64decode(encoded, validate=True).decode().partition(":")[0]
        except ValueError:
            token = ""
    if token != credentials.SEGMENT_ACCESS_TOKEN:
        return error(401, "Unauthorized: a valid access token is required (Basic auth, "
                          "token as user name, empty password).")
    return token


def world(ctx: Sandbox) -> ProfileWorld:
    return ctx.data[API]


# --- paging --------------------------------------------------------------------------
def page_limit(request: Request, kind: str) -> int:
    default, maximum = PAGE[kind]
    raw = request.query_params.get("limit")
    if raw in (None, ""):
        return default
    try:
        limit = int(raw)
    except ValueError:
        raise BadRequest(f"limit must be an integer, got {raw!r}") from None
    if not 1 <= limit <= maximum:
        raise BadRequest(f"limit must be between 1 and {maximum}, got {limit}")
    return limit


def offset(request: Request, total: int) -> int:
    raw = request.query_params.get("next") or "0"
    if not raw.isdigit() or int(raw) > total:
        raise BadRequest(f"invalid cursor next={raw!r}")
    return int(raw)


def cursor(request: Request, limit: int, next_value: str) -> dict[str, Any]:
    path = request.url.path.removeprefix(request.scope.get("root_path", ""))
    path = path[path.find("/v1/"):] if "/v1/" in path else path
    query = f"?{request.url.query}" if request.url.query else ""
    return {"url": path + query, "has_more": bool(next_value), "next": next_value,
            "limit": limit}


def find_profile(request: Request, ctx: Sandbox) -> Profile | None:
    profile_id: str = request.path_params["profile_id"]
    if b"+" in request.scope.get("raw_path", b""):
        profile_id = profile_id.replace("+", " ")  # a raw '+' decodes as a space
    kind, sep, value = profile_id.partition(":")
    if not sep or kind not in ID_TYPES or not value:
        return None
    return world(ctx).find(kind, value)


# --- handlers ------------------------------------------------------------------------
async def list_profiles(request: Request, call: Call) -> Response:
    profiles = world(call.ctx).profiles
    limit = page_limit(request, "profiles")
    start = offset(request, len(profiles))
    chunk = profiles[start:start + limit]
    end = start + len(chunk)
    next_value = str(end) if end < len(profiles) else ""
    return JSONResponse({"data": [{"segment_id": p.segment_id} for p in chunk],
                         "cursor": cursor(request, limit, next_value)})


async def traits(request: Request, call: Call) -> Response:
    profile = find_profile(request, call.ctx)
    if profile is None:
        return error(404, "Profile was not found.")
    limit = page_limit(request, "traits")
    include = request.query_params.get("include")
    all_traits = profile.traits  # loaded from its compact form on each read
    keys = list(all_traits)
    if include:
        wanted = {k.strip() for k in include.split(",")}
        keys = [k for k in keys if k in wanted]
    start = 0
    if request.query_params.get("next"):
        try:
            start = keys.index(request.query_params["next"])
        except ValueError:
            raise BadRequest(f"invalid cursor next={request.query_params['next']!r}") from None
    page = keys[start:start + limit]
    rest = keys[start + limit:]
    return JSONResponse({"traits": {k: all_traits[k] for k in page},
                         "cursor": cursor(request, limit, rest[0] if rest else "")})


async def external_ids(request: Request, call: Call) -> Response:
    profile = find_profile(request, call.ctx)
    if profile is None:
        return error(404, "Profile was not found.")
    ids = profile.external_ids
    limit = page_limit(request, "external_ids")
    start = offset(request, len(ids))
    end = min(start + limit, len(ids))
    return JSONResponse({"data": ids[start:end],
                         "cursor": cursor(request, limit, str(end) if end < len(ids) else "")})


def in_space(handler: Handler) -> Handler:
    """Only SEGMENT_SPACE_ID exists; bad query parameters are the vendor's 400."""

    async def wrapped(request: Request, call: Call) -> Response:
        if request.path_params["space"] != credentials.SEGMENT_SPACE_ID:
            return error(404, "Space was not found.")
        try:
            return await handler(request, call)
        except BadRequest as exc:
            return error(400, str(exc))

    return wrapped


def without_rate_headers(endpoint: Endpoint) -> Endpoint:
    """The real API's 429 carries no rate headers: drop the pipeline's Retry-After."""

    async def wrapped(request: Request) -> Response:
        response = await endpoint(request)
        if response.status_code == 429 and "retry-after" in response.headers:
            del response.headers["retry-after"]
        return response

    return wrapped


def route(ctx: Sandbox, path: str, handler: Handler) -> Route:
    endpoint = ctx.guarded(API, f"GET {path}", in_space(handler), authenticate)
    return Route(path, without_rate_headers(endpoint), methods=["GET"])


# --- module interface for sandbox.app ---------------------------------------------------
def routes(ctx: Sandbox) -> list[BaseRoute]:
    ctx.api(API).error_body = error_body
    return [
        route(ctx, BASE, list_profiles),
        route(ctx, BASE + "/{profile_id}/traits", traits),
        route(ctx, BASE + "/{profile_id}/external_ids", external_ids),
    ]


def reset(ctx: Sandbox) -> None:
    """(Re)build the profile world (kept when seed and size are unchanged: it never
    changes) and apply the default budget unless the start config sets one."""
    cfg = ctx.config
    current = ctx.data.get(API)
    if not (isinstance(current, ProfileWorld) and current.seed == cfg.seed
            and current.count == cfg.profiles and not current.added):
        ctx.data[API] = current = None  # the old world goes first (peak memory)
        ctx.data[API] = ProfileWorld(cfg.seed, cfg.profiles)
    state = ctx.api(API)
    if "rps" not in ctx.base.limits.get(API, {}):
        state.limits.rps = DEFAULT_RPS
        state.apply_limits()


def admin_routes(ctx: Sandbox) -> list[BaseRoute]:
    async def profiles(request: Request) -> Response:
        if request.method == "POST":  # {"profiles": [{segment_id, traits, external_ids}]}
            try:
                raw = (await request.json()).get("profiles")
                if not isinstance(raw, list):
                    raise ValueError('expected {"profiles": [profiles]}')
                added = world(ctx).add(raw)
            except (ValueError, AttributeError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            return JSONResponse({"added": len(added), "count": len(world(ctx).profiles)})
        return JSONResponse(world(ctx).to_json())

    return [Route("/world/profiles", profiles, methods=["GET", "POST"])]
