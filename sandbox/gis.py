"""The AIESEC GIS (EXPA) simulator: real GraphQL over the sandbox world, OAuth refresh.

Queries are parsed and validated with graphql-core against sandbox/schema.graphql (a copy
of the project's shared schema) and answered over the world (sandbox/gis_graphql.py;
the list queries in sandbox/gis_lists.py); an invalid query gets HTTP 200 with GraphQL
`errors`, as the real server answers. The token goes raw in `Authorization` or as
`?access_token=`.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from graphql import GraphQLNonNull
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sandbox import credentials as cred
from sandbox.context import Sandbox
from sandbox.gis_graphql import GisGraphql
from sandbox.pipeline import Call, Rejected
from sandbox.worlds.added import schema_problems
from sandbox.worlds.gis import World

API = "gis"
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


class Gis:
    """The GIS simulator's state: world, tokens, GraphQL (parsed-query cache)."""

    def __init__(self, ctx: Sandbox) -> None:
        self.ctx = ctx
        self.queries = GisGraphql()
        # Single-record queries find records added by hand (any id) too.
        fields = self.queries.schema.query_type.fields  # type: ignore[union-attr]
        fields["person"].resolve = lambda _, info, id: info.context.find_person(id)
        fields["getApplication"].resolve = \
            lambda _, info, id: info.context.find_application(id)
        self._world: World | None = None  # built by reset(), which create_app calls
        self.tokens: dict[str, bool] = {}  # token -> still valid
        self.issued = 0

    @property
    def world(self) -> World:
        if self._world is None:
            raise RuntimeError("the GIS world is built by reset()")
        return self._world

    def reset(self) -> None:
        cfg = self.ctx.config
        self._world = None  # the old world goes before the new one is built (peak memory)
        self._world = World(cfg.seed, cfg.people, cfg.applications, self.ctx.now)
        self.tokens = {cred.GIS_ACCESS_TOKEN: True}
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

    async def graphql(self, request: Request, call: Call) -> Response:
        query, variables, operation = self._request(request, call)
        answer = self.queries.answer(query, variables, operation, self.world)
        if answer.rejected:
            raise Rejected("schema", JSONResponse(answer.body))
        return JSONResponse(answer.body)

    @staticmethod
    def _request(request: Request, call: Call) -> tuple[str, dict[str, Any] | None, Any]:
        """query, variables, operationName of a GET or POST (the vendor's 400s raised)."""
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
        return query, variables if isinstance(variables, dict) else None, operation

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

    def add(self, people: list[Any], applications: list[Any]) -> list[str]:
        """Add hand-built records to the world (sandbox/worlds/added.py); the problems
        that keep them out (nothing is added then): what the schema cannot serve, a
        record that is not an object or has no valid updated_at."""
        problems = []
        for kind, name, records in (("Person", "people", people),
                                    ("OpportunityApplication", "applications", applications)):
            graphql_type = self.queries.schema.get_type(kind)
            for i, record in enumerate(records):
                problems += schema_problems(record, GraphQLNonNull(graphql_type),
                                            f"{name}[{i}]")
        if not problems:
            try:
                self.world.add(people, applications)
            except ValueError as exc:
                problems.append(str(exc))
        return problems

    def expire_token(self) -> None:
        """Every access token issued so far stops working (401) until a refresh."""
        for token in self.tokens:
            self.tokens[token] = False


def _gis(ctx: Sandbox) -> Gis:
    return ctx.data[API]


# --- module interface for sandbox.app ---------------------------------------------------
def routes(ctx: Sandbox) -> list[BaseRoute]:
    gis = ctx.data[API] = Gis(ctx)
    ctx.api(API).error_body = lambda status, message: {"errors": [{"message": message}]}
    return [
        ctx.route(API, "POST", "/graphql", gis.graphql, auth=gis.auth),
        ctx.route(API, "GET", "/graphql", gis.graphql, auth=gis.auth),
        ctx.route(API, "POST", "/oauth/token", gis.oauth_token),
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

    async def add(request: Request, kind: str) -> JSONResponse:
        """POST /admin/world/people|applications {"people"|"applications": [records]}."""
        try:
            records = (await request.json()).get(kind)
        except (ValueError, AttributeError):
            records = None
        if not isinstance(records, list):
            return JSONResponse({"error": f"expected {{\"{kind}\": [records]}}"},
                                status_code=400)
        gis = _gis(ctx)
        problems = gis.add(records if kind == "people" else [],
                           records if kind == "applications" else [])
        if problems:
            return JSONResponse({"error": "; ".join(problems[:20])}, status_code=400)
        world = gis.world
        return JSONResponse({"added": len(records), "people": len(world.people),
                             "applications": len(world.applications)})

    async def people(request: Request) -> JSONResponse:
        if request.method == "POST":
            return await add(request, "people")
        return JSONResponse({"people": [p.to_json() for p in _gis(ctx).world.people]})

    async def applications(request: Request) -> JSONResponse:
        if request.method == "POST":
            return await add(request, "applications")
        return JSONResponse({"applications": [a.to_json()
                                              for a in _gis(ctx).world.applications]})

    async def edit_person(request: Request) -> JSONResponse:
        """POST /admin/world/people/{id} {"field": value, ...}: edit a generated person
        (sandbox/worlds/gis_records.py EDITABLE), updated_at = now."""
        try:
            changes = await request.json()
        except ValueError:
            changes = None
        if not isinstance(changes, dict) or not changes:
            return JSONResponse({"error": "expected {\"field\": value, ...}"}, status_code=400)
        try:
            person = _gis(ctx).world.edit_person(request.path_params["id"], changes)
        except KeyError:
            return JSONResponse({"error": "no generated person with this id"}, status_code=404)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"person": person.to_json()})

    return [
        Route("/gis/expire_token", expire, methods=["POST"]),
        Route("/world/people/{id}", edit_person, methods=["POST"]),
        Route("/advance", advance, methods=["POST"]),
        Route("/world/people", people, methods=["GET", "POST"]),
        Route("/world/applications", applications, methods=["GET", "POST"]),
    ]
