"""The AIESEC GIS (EXPA) simulator: real GraphQL over the sandbox world, OAuth refresh.

Queries are parsed and validated with graphql-core against sandbox/schema.graphql (a copy
of the project's shared schema); an invalid query gets HTTP 200 with GraphQL `errors`, as
the real server answers. The token goes raw in `Authorization` or as `?access_token=`.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    build_schema,
    execute_sync,
    parse,
    validate,
)
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sandbox import credentials as cred
from sandbox.context import Sandbox
from sandbox.pipeline import Call, Rejected
from sandbox.worlds.gis import Application, Person, World

SCHEMA_PATH = Path(__file__).with_name("schema.graphql")
MAX_PER_PAGE = 500
TOKEN_LIFETIME = 7200  # seconds, what the refresh answer announces

# Doorkeeper (the Rails OAuth server behind auth.aiesec.org) bodies.
INVALID_TOKEN = {"error": "invalid_token", "error_description": "The access token is invalid",
                 "state": "unauthorized"}
EXPIRED_TOKEN = {"error": "invalid_token", "error_description": "The access token expired",
                 "state": "unauthorized"}
INVALID_GRANT = {"error": "invalid_grant", "error_description":
                 "The provided authorization grant is invalid, expired, revoked, does not match "
                 "the redirection URI used in the authorization request, or was issued to "
                 "another client."}
INVALID_CLIENT = {"error": "invalid_client", "error_description":
                  "Client authentication failed due to unknown client, no client authentication "
                  "included, or unsupported authentication method."}
UNSUPPORTED_GRANT = {"error": "unsupported_grant_type", "error_description":
                     "The authorization grant type is not supported by the authorization "
                     "server."}


def load_schema() -> GraphQLSchema:
    schema = build_schema(SCHEMA_PATH.read_text())
    fields = schema.query_type.fields  # type: ignore[union-attr]
    fields["allPeople"].resolve = all_people
    fields["allOpportunityApplication"].resolve = all_applications
    fields["person"].resolve = lambda _, info, id: info.context.people_by_id.get(_int(id))
    fields["getApplication"].resolve = \
        lambda _, info, id: info.context.applications_by_id.get(_int(id))
    fields["currentPerson"].resolve = lambda _, info: next(iter(info.context.people), None)
    return schema


# --- resolvers ---------------------------------------------------------------------------
def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _ts(value: str | None, name: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise GraphQLError(f"Invalid date for {name}: {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def _range_test(rng: dict[str, Any] | None, name: str) -> Callable[[int], bool] | None:
    if not rng:
        return None
    low, high = _ts(rng.get("from"), f"{name}.from"), _ts(rng.get("to"), f"{name}.to")
    low = -math.inf if low is None else low
    high = math.inf if high is None else high
    return lambda ts: low <= ts <= high


def _page(items: list[Any], page: int, per_page: int) -> dict[str, Any]:
    if per_page < 1 or per_page > MAX_PER_PAGE:
        raise GraphQLError(f"per_page must be between 1 and {MAX_PER_PAGE}")
    if page < 1:
        raise GraphQLError("page must be 1 or more")
    start = (page - 1) * per_page
    return {"data": items[start:start + per_page],
            "paging": {"total_items": len(items),
                       "total_pages": math.ceil(len(items) / per_page),
                       "current_page": page}}


SORT_FIELDS = {"updated_at": "updated_ts", "created_at": "created_ts", "id": "id"}


def _sorted(items: list[Any], field: str, descending: bool) -> list[Any]:
    if field not in SORT_FIELDS:
        raise GraphQLError(f"Invalid sort field: {field}")
    attr = SORT_FIELDS[field]
    return sorted(items, key=lambda x: (getattr(x, attr), x.id), reverse=descending)


def _cached(world: World, key: tuple[Any, ...], build: Callable[[], list[Any]]) -> list[Any]:
    """The filtered, sorted list of a query, computed once until the world changes."""
    found = world.query_cache.get(key)
    if found is None:
        if len(world.query_cache) > 64:
            world.query_cache.clear()
        found = world.query_cache[key] = build()
    return found


def all_people(_: Any, info: Any, page: int = 1, per_page: int = 25, sort: str | None = None,
               q: str | None = None, filters: dict[str, Any] | None = None) -> dict[str, Any]:
    world: World = info.context
    key = ("people", json.dumps(filters, sort_keys=True, default=str), sort, q)
    return _page(_cached(world, key, lambda: _people(world, sort, q, filters or {})),
                 page, per_page)


def _people(world: World, sort: str | None, q: str | None,
            filters: dict[str, Any]) -> list[Person]:
    tests: list[Callable[[Person], bool]] = []
    if (committee := filters.get("home_committee")) is not None:
        tests.append(lambda p: p.home_lc.id == committee
                     or (p.home_lc.parent is not None and p.home_lc.parent.id == committee))
    if (status := filters.get("status")) is not None:
        tests.append(lambda p: p.status == status)
    if (last := _range_test(filters.get("last_interaction"), "last_interaction")) is not None:
        tests.append(lambda p: last(p.updated_ts))
    if (reg := _range_test(filters.get("registered"), "registered")) is not None:
        tests.append(lambda p: reg(p.created_ts))
    if q:
        needle = q.lower()
        tests.append(lambda p: needle in p.full_name.lower() or needle in (p.email or ""))
    people = _filtered(world.people, tests)
    if sort:
        field, descending = sort.lstrip("+-"), sort.startswith("-")
        people = _sorted(people, field, descending)
    return people


def all_applications(_: Any, info: Any, page: int = 1, per_page: int = 25,
                     sort: str | None = None,
                     filters: dict[str, Any] | None = None) -> dict[str, Any]:
    world: World = info.context
    key = ("applications", json.dumps(filters, sort_keys=True, default=str), sort)
    return _page(_cached(world, key, lambda: _applications(world, sort, filters or {})),
                 page, per_page)


def _applications(world: World, sort: str | None,
                  filters: dict[str, Any]) -> list[Application]:
    tests: list[Callable[[Application], bool]] = []
    plain: dict[str, Callable[[Application], Any]] = {
        "person_id": lambda a: a.person.id,
        "opportunity_id": lambda a: a.opportunity.id,
        "person_home_lc": lambda a: a.person.home_lc.id,
        "person_home_mc": lambda a: a.person.home_lc.parent and a.person.home_lc.parent.id,
        "opportunity_home_lc": lambda a: a.opportunity.home_lc.id,
        "opportunity_home_mc": lambda a: a.opportunity.home_lc.parent
        and a.opportunity.home_lc.parent.id,
    }
    for name, get in plain.items():
        if (wanted := filters.get(name)) is not None:
            tests.append(lambda a, get=get, wanted=wanted: get(a) == wanted)
    if (last := _range_test(filters.get("last_interaction"), "last_interaction")) is not None:
        tests.append(lambda a: last(a.updated_ts))
    if (created := _range_test(filters.get("created_at"), "created_at")) is not None:
        tests.append(lambda a: created(a.created_ts))
    if (programmes := filters.get("programmes")) is not None:
        ids = set(programmes)
        tests.append(lambda a: a.opportunity.programme.id in ids)
    if (statuses := filters.get("statuses")) is not None:
        wanted_statuses = set(statuses)
        tests.append(lambda a: a.status in wanted_statuses)
    apps = _filtered(world.applications, tests)
    if sort:
        for prefix, descending in (("ASC_", False), ("DESC_", True)):
            if sort.startswith(prefix):
                apps = _sorted(apps, sort[len(prefix):], descending)
                break
        else:
            raise GraphQLError(f"Invalid sort: {sort} (use ASC_<field> or DESC_<field>)")
    return apps


def _filtered(items: Iterable[Any], tests: list[Callable[[Any], bool]]) -> list[Any]:
    if not tests:
        return list(items)
    return [x for x in items if all(t(x) for t in tests)]


# --- HTTP ----------------------------------------------------------------------------------
class Gis:
    """The GIS simulator's state: world, tokens, parsed-query cache."""

    def __init__(self, ctx: Sandbox) -> None:
        self.ctx = ctx
        self.schema = load_schema()
        self.documents: dict[str, DocumentNode | list[GraphQLError]] = {}
        self.world: World | None = None  # built by reset(), which create_app calls
        self.tokens: dict[str, bool] = {}
        self.issued = 0

    def reset(self) -> None:
        cfg = self.ctx.config
        self.world = World(cfg.seed, cfg.people, cfg.applications, self.ctx.now)
        self.tokens: dict[str, bool] = {cred.GIS_ACCESS_TOKEN: True}  # token -> still valid
        self.issued = 0

    def auth(self, request: Request) -> str | Response:
        token = request.headers.get("authorization") or \
            request.query_params.get("access_token", "")
        if token.startswith("Bearer "):
            token = token[7:]
        valid = self.tokens.get(token)
        if valid:
            return token
        body = EXPIRED_TOKEN if valid is False else INVALID_TOKEN
        header = f'Bearer realm="Doorkeeper", error="invalid_token", ' \
                 f'error_description="{body["error_description"]}"'
        return JSONResponse(body, status_code=401, headers={"WWW-Authenticate": header})

    def document(self, query: str) -> DocumentNode | list[GraphQLError]:
        """Parsed and validated once per distinct query text."""
        found = self.documents.get(query)
        if found is None:
            try:
                doc = parse(query)
            except GraphQLError as exc:
                found = [exc]
            else:
                errors = validate(self.schema, doc)
                found = errors if errors else doc
            if len(self.documents) > 1000:
                self.documents.clear()
            self.documents[query] = found
        return found

    async def graphql(self, request: Request, call: Call) -> Response:
        if request.method == "GET":
            params = request.query_params
            query, variables, operation = params.get("query"), None, params.get("operationName")
        else:
            try:
                payload = call.json()
            except ValueError:
                raise Rejected("schema", JSONResponse(
                    {"errors": [{"message": "Invalid JSON in request body"}]},
                    status_code=400)) from None
            payload = payload if isinstance(payload, dict) else {}
            query, variables = payload.get("query"), payload.get("variables")
            operation = payload.get("operationName")
        if not query or not isinstance(query, str):
            raise Rejected("schema", JSONResponse(
                {"errors": [{"message": "No query string was present"}]}))
        doc = self.document(query)
        if isinstance(doc, list):
            raise Rejected("schema", JSONResponse({"errors": [e.formatted for e in doc]}))
        result = execute_sync(self.schema, doc, context_value=self.world,
                              variable_values=variables if isinstance(variables, dict) else None,
                              operation_name=operation)
        if result.errors and result.data is None:
            raise Rejected("schema", JSONResponse(
                {"errors": [e.formatted for e in result.errors]}))
        return JSONResponse(result.formatted)

    async def oauth_token(self, request: Request, call: Call) -> Response:
        form = self._form(request, call.body)
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        basic = request.headers.get("authorization", "")
        if basic.startswith("Basic "):
            try:
                client_id, _, client_secret = \
                    base64.b64decode(basic[6:]).decode().partition(":")
            except ValueError:
                client_id = None
        call.identity = client_id
        if form.get("grant_type") != "refresh_token":
            raise Rejected("schema", JSONResponse(UNSUPPORTED_GRANT, status_code=400))
        if (client_id, client_secret) != (cred.GIS_CLIENT_ID, cred.GIS_CLIENT_SECRET):
            raise Rejected("auth", JSONResponse(INVALID_CLIENT, status_code=401))
        if form.get("refresh_token") != cred.GIS_REFRESH_TOKEN:
            raise Rejected("auth", JSONResponse(INVALID_GRANT, status_code=400))
        self.issued += 1
        token = f"{cred.GIS_ACCESS_TOKEN}-{self.issued}"
        self.tokens[token] = True
        # The refresh token stays the same, so a fleet restarted from its env still works.
        return JSONResponse({"access_token": token, "token_type": "Bearer",
                             "expires_in": TOKEN_LIFETIME,
                             "refresh_token": cred.GIS_REFRESH_TOKEN,
                             "created_at": int(datetime.now(UTC).timestamp())})

    @staticmethod
    def _form(request: Request, body: bytes) -> dict[str, str]:
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                data = json.loads(body)
                return {k: str(v) for k, v in data.items()} if isinstance(data, dict) else {}
            except ValueError:
                return {}
        return dict(parse_qsl(body.decode("utf-8", "replace")))

    def expire_token(self) -> None:
        """Every access token issued so far stops working (401) until a refresh."""
        for token in self.tokens:
            self.tokens[token] = False


def _gis(ctx: Sandbox) -> Gis:
    return ctx.data["gis"]


def routes(ctx: Sandbox) -> list[BaseRoute]:
    gis = ctx.data["gis"] = Gis(ctx)
    ctx.api("gis").error_body = lambda status, message: {"errors": [{"message": message}]}
    return [
        ctx.route("gis", "POST", "/graphql", gis.graphql, auth=gis.auth),
        ctx.route("gis", "GET", "/graphql", gis.graphql, auth=gis.auth),
        ctx.route("gis", "POST", "/oauth/token", gis.oauth_token),
    ]


def reset(ctx: Sandbox) -> None:
    _gis(ctx).reset()


def admin_routes(ctx: Sandbox) -> list[BaseRoute]:
    async def expire(request: Request) -> JSONResponse:
        _gis(ctx).expire_token()
        return JSONResponse({"ok": True})

    async def advance(request: Request) -> JSONResponse:
        body = await request.body()
        data = (await request.json()) if body else {}
        result = _gis(ctx).world.advance(float(data.get("share", 0.1)),
                                         float(data.get("people_share", 0.05)),
                                         data.get("seed"))
        return JSONResponse(result)

    async def people(request: Request) -> JSONResponse:
        return JSONResponse({"people": [p.to_json() for p in _gis(ctx).world.people]})

    async def applications(request: Request) -> JSONResponse:
        return JSONResponse({"applications": [a.to_json()
                                              for a in _gis(ctx).world.applications]})

    return [
        Route("/gis/expire_token", expire, methods=["POST"]),
        Route("/advance", advance, methods=["POST"]),
        Route("/world/people", people, methods=["GET"]),
        Route("/world/applications", applications, methods=["GET"]),
    ]
