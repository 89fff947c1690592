"""The customer.io Track API simulator: identify, track event, v2 batch.

Bodies are validated against the vendor's OpenAPI file (sandbox/customerio-track-api.
openapi.json, an identical copy of ../shared/specs/), loaded by sandbox/specs.py with the
quirks of docs/api-contracts.md ("Reading the vendor files"): no `servers`, no
`discriminator`, `oneOf` read as `anyOf`. openapi-core takes ~2 ms per identify and
Python jsonschema ~0.2 ms, too slow for 2,000 req/s, so each operation's request-body
schema is compiled ONCE with jsonschema-rs (`specs.checker`, ~1 us a body); Python
jsonschema only words the error of a rejected body. Tests check both agree with
openapi-core on sample bodies.

Stricter than the file in one place, on purpose: a batch `identify` item's attribute
values follow the v1 identify rule of the same file (string, integer or boolean, never
null); the v2 schema leaves them untyped, the live service drops nulls.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from jsonschema.exceptions import ValidationError, best_match
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sandbox import credentials as cred
from sandbox import specs
from sandbox.context import Sandbox
from sandbox.pipeline import Call, Rejected
from sandbox.specs import Checker

API = "customerio"
SPEC = specs.CUSTOMERIO_TRACK

# Documented limits (docs/api-contracts.md, section 1)
MAX_ID_BYTES = 150
MAX_ATTRIBUTE_NAME_BYTES = 150
MAX_ATTRIBUTE_VALUE_BYTES = 1000
MAX_ATTRIBUTES = 300
MAX_EVENT_NAME_BYTES = 100
MAX_EVENT_DATA_BYTES = 100 * 1024
MAX_BATCH_BYTES = 500 * 1024
MAX_BATCH_ITEM_BYTES = 32 * 1024

ULID = re.compile(r"^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$")
RESERVED = {"_update", "_timestamp"}

UNAUTHORIZED = {"meta": {"error": "Unauthorized request"}}

IDENTIFY = ("/api/v1/customers/{identifier}", "put")
TRACK = ("/api/v1/customers/{identifier}/events", "post")
BATCH = ("/api/v2/batch", "post")
BODY = ("requestBody", "content", "application/json", "schema")


# --- the spec's schemas ---------------------------------------------------------------
def body_validator(path: str, method: str) -> Checker:
    """The request body schema of one operation."""
    return specs.checker(SPEC, "paths", path, method, *BODY)


def identify_attribute_validator() -> Checker:
    return specs.checker(SPEC, "paths", *IDENTIFY, *BODY, "additionalProperties")


def schema_validator(name: str) -> Checker | None:
    """The validator of components/schemas/<name>, or None if the spec has no such schema."""
    known = specs.load(SPEC)["components"]["schemas"]
    return specs.checker(SPEC, "components", "schemas", name) if name in known else None


def batch_item_validator() -> Checker:
    return specs.checker(SPEC, "paths", *BATCH, *BODY, "properties", "batch", "items")


def schema_problem(valid: Checker, body: Any,
                   explain: Checker | None = None) -> str | None:
    """None when `body` is valid, else the most relevant error as "field: message".
    `explain`, the branch of an anyOf the body meant, words the error better."""
    if valid.is_valid(body):
        return None
    if explain is not None and not explain.is_valid(body):
        valid = explain
    error: ValidationError | None = best_match(valid.iter_errors(body))
    if error is None:  # pragma: no cover - is_valid said otherwise
        return "invalid body"
    where = ".".join(str(p) for p in error.absolute_path)
    return f"{where}: {error.message}" if where else error.message


# --- limits --------------------------------------------------------------------------------
def _size(value: Any) -> int:
    return len(value.encode()) if isinstance(value, str) else len(json.dumps(value))


def _over(text: str, limit: int) -> bool:
    # A UTF-8 character takes at most 4 bytes: most strings need no encoding to decide.
    return len(text) * 4 > limit and len(text.encode()) > limit


def attribute_problems(attributes: dict[str, Any]) -> tuple[str, str] | None:
    """(reason, message) for the first attribute over a documented limit, else None."""
    if len(attributes) > MAX_ATTRIBUTES:
        return "size", f"too many attributes: {len(attributes)} > {MAX_ATTRIBUTES}"
    for name, value in attributes.items():
        if _over(name, MAX_ATTRIBUTE_NAME_BYTES):
            return "size", f"attribute name {name[:40]!r} exceeds {MAX_ATTRIBUTE_NAME_BYTES} bytes"
        if isinstance(value, str):
            too_long = _over(value, MAX_ATTRIBUTE_VALUE_BYTES)
        else:
            too_long = isinstance(value, dict | list) and _size(value) > MAX_ATTRIBUTE_VALUE_BYTES
        if too_long:
            return "size", f"attribute {name!r} value exceeds {MAX_ATTRIBUTE_VALUE_BYTES} bytes"
    return None


def event_problems(event: dict[str, Any], data_key: str) -> tuple[str, str] | None:
    event_id = event.get("id")
    if event_id is not None and not (isinstance(event_id, str) and ULID.match(event_id)):
        return "schema", f"id: {event_id!r} is not a valid ULID"
    name = event.get("name")
    if isinstance(name, str) and len(name.encode()) > MAX_EVENT_NAME_BYTES:
        return "size", f"name: event name exceeds {MAX_EVENT_NAME_BYTES} bytes"
    data = event.get(data_key)
    if data is not None and _size(data) > MAX_EVENT_DATA_BYTES:
        return "size", f"{data_key}: event data exceeds {MAX_EVENT_DATA_BYTES} bytes"
    return None


# --- the simulator -------------------------------------------------------------------------
@dataclass
class Site:
    """One customer.io workspace's data: profiles (merged attributes), events per person
    (dedup by event id), and the people it refuses (a test knob)."""

    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    identifies: Counter[str] = field(default_factory=Counter)
    events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    seen_ids: set[str] = field(default_factory=set)
    duplicates: int = 0
    refused: set[str] = field(default_factory=set)


class TrackWorkspace:
    """The customer.io Track API: the workspaces it writes to (one per Site ID of
    `credentials.CUSTOMERIO_WORKSPACES`), each with its own people and events."""

    def __init__(self) -> None:
        self.identify_body = body_validator(*IDENTIFY)
        self.attribute_value = identify_attribute_validator()
        self.track_body = body_validator(*TRACK)
        self.standard_event = specs.checker(SPEC, "components", "schemas", "eventsRequest",
                                            "anyOf", "0")
        self.batch_item = batch_item_validator()
        self.reset()

    def reset(self) -> None:
        self.sites = {site: Site() for site in cred.CUSTOMERIO_WORKSPACES}

    def site(self, call_or_site: Call | str | None) -> Site:
        name = call_or_site.identity if isinstance(call_or_site, Call) else call_or_site
        return self.sites[name or cred.CUSTOMERIO_SITE_ID]

    # --- auth ----------------------------------------------------------------------
    def auth(self, request: Request) -> str | Response:
        header = request.headers.get("authorization", "")
        if header[:6].lower() == "basic ":
            try:
                site, _, key = base64.b64decode(header[6:]).decode().partition(":")
            except ValueError:
                site, key = "", ""
            if site in cred.CUSTOMERIO_WORKSPACES and cred.CUSTOMERIO_WORKSPACES[site] == key:
                return site
        return JSONResponse(UNAUTHORIZED, status_code=401,
                            headers={"WWW-Authenticate": 'Basic realm="Customer.io Track API"'})

    # --- storage -------------------------------------------------------------------
    def store_identify(self, site: Site, person: str, attributes: dict[str, Any]) -> None:
        if attributes.get("_update") is True and person not in site.profiles:
            return  # "_update": never create
        profile = site.profiles.setdefault(person, {})
        profile.update({k: v for k, v in attributes.items() if k not in RESERVED})
        site.identifies[person] += 1

    def store_event(self, site: Site, person: str, event: dict[str, Any],
                    data_key: str) -> None:
        event_id = event.get("id")
        if event_id is not None:
            if event_id in site.seen_ids:
                site.duplicates += 1  # customer.io ignores an id it has already received
                return
            site.seen_ids.add(event_id)
        site.events.setdefault(person, []).append({
            "id": event_id, "name": event.get("name"), "timestamp": event.get("timestamp"),
            "data": event.get(data_key) or {}, "received_at": time.time()})

    # --- handlers ------------------------------------------------------------------
    @staticmethod
    def _bad(reason: str, message: str, status: int = 400) -> Rejected:
        return Rejected(reason, JSONResponse({"meta": {"errors": [message]}}, status_code=status))

    def _json_object(self, call: Call) -> dict[str, Any]:
        try:
            body = call.json()
        except ValueError:
            raise self._bad("schema", "request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise self._bad("schema", "request body must be a JSON object")
        return body

    def _identifier(self, request: Request) -> str:
        identifier = request.path_params["identifier"]
        if not identifier or len(identifier.encode()) > MAX_ID_BYTES:
            raise self._bad("size" if identifier else "schema",
                            f"identifier must be 1 to {MAX_ID_BYTES} bytes")
        return identifier

    def _refused(self, site: Site, person: str) -> None:
        if person in site.refused:
            raise self._bad("refused", f"identifier {person!r}: person refused by the "
                            "workspace (a sandbox knob)")

    async def region(self, request: Request, call: Call) -> Response:
        return JSONResponse({"url": "https://track.customer.io", "data_center": "us",
                             "environment_id": call.identity})

    async def identify(self, request: Request, call: Call) -> Response:
        person = self._identifier(request)
        self._refused(self.site(call), person)
        body = self._json_object(call)
        if (problem := schema_problem(self.identify_body, body)) is not None:
            raise self._bad("schema", problem)
        if (limit := attribute_problems(body)) is not None:
            raise self._bad(*limit)
        self.store_identify(self.site(call), person, body)
        return JSONResponse({})

    async def track(self, request: Request, call: Call) -> Response:
        person = self._identifier(request)
        self._refused(self.site(call), person)
        body = self._json_object(call)
        problem = schema_problem(self.track_body, body, self.standard_event)
        if problem is not None:
            raise self._bad("schema", problem)
        if (limit := event_problems(body, "data")) is not None:
            raise self._bad(*limit)
        self.store_event(self.site(call), person, body, "data")
        return JSONResponse({})

    async def batch(self, request: Request, call: Call) -> Response:
        if len(call.body) > MAX_BATCH_BYTES:
            raise Rejected("size", JSONResponse(
                {"errors": [{"reason": "too_large", "field": "batch",
                             "message": f"batch must be smaller than {MAX_BATCH_BYTES} bytes"}]},
                status_code=413))
        try:
            body = call.json()
        except ValueError:
            body = None
        items = body.get("batch") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise Rejected("schema", JSONResponse(
                {"errors": [{"reason": "invalid", "field": "batch",
                             "message": "body must be an object with a 'batch' array"}]},
                status_code=400))
        site = self.site(call)
        errors = [e for i, item in enumerate(items) if (e := self._batch_item(site, i, item))]
        if errors:
            call.state.rejected["schema"] += sum(e["reason"] == "invalid" for e in errors)
            call.state.rejected["size"] += sum(e["reason"] == "too_large" for e in errors)
            return JSONResponse({"errors": errors}, status_code=207)
        return JSONResponse({})

    def _batch_item(self, site: Site, index: int, item: Any) -> dict[str, Any] | None:
        """Apply one batch item; its 207 error entry if it is invalid."""
        problem = self._batch_problem(site, item)
        if problem is None:
            return None
        reason, message = problem
        field, _, text = message.partition(": ") if ": " in message else ("", "", message)
        return {"batch_index": index, "reason": reason, "field": field, "message": text}

    def _batch_problem(self, site: Site, item: Any) -> tuple[str, str] | None:
        """(reason, message) when the item is refused; a valid person item is applied."""
        if _size(item) > MAX_BATCH_ITEM_BYTES:
            return "too_large", f"item exceeds {MAX_BATCH_ITEM_BYTES} bytes"
        if (problem := schema_problem(self.batch_item, item, _meant(item))) is not None:
            return "invalid", problem
        if item.get("type") != "person":
            return None  # objects and deliveries: accepted, not simulated further
        ids = item.get("identifiers") or {}
        person = str(ids.get("id") or (f"email:{ids['email']}" if ids.get("email")
                                        else f"cio_{ids.get('cio_id')}"))
        if person in site.refused:
            return "invalid", f"identifiers: person {person!r} refused (a sandbox knob)"
        if item.get("action") == "identify":
            return self._batch_identify(site, person, item.get("attributes") or {})
        if item.get("action") == "event":
            if (limit := event_problems(item, "attributes")) is not None:
                return _batch_reason(limit)
            self.store_event(site, person, item, "attributes")
        return None

    def _batch_identify(self, site: Site, person: str, attributes: dict[str, Any]
                        ) -> tuple[str, str] | None:
        for name, value in attributes.items():
            if not self.attribute_value.is_valid(value):
                return "invalid", f"attributes.{name}: {value!r} is not a string, integer or " \
                                  "boolean"
        if (limit := attribute_problems(attributes)) is not None:
            return _batch_reason((limit[0], f"attributes: {limit[1]}"))
        self.store_identify(site, person, attributes)
        return None


def _meant(item: Any) -> Checker | None:
    """The schema of the person action a batch item meant: it words the error better."""
    if not (isinstance(item, dict) and item.get("type") == "person"):
        return None
    action = str(item.get("action"))
    return schema_validator("identify_person" if action == "identify" else f"person_{action}")


def _batch_reason(limit: tuple[str, str]) -> tuple[str, str]:
    """A v1 limit problem in the batch's words: a size breach is "too_large"."""
    reason, message = limit
    return ("too_large" if reason == "size" else "invalid"), message


def workspace(ctx: Sandbox) -> TrackWorkspace:
    return ctx.data[API]


# --- module interface for sandbox.app ---------------------------------------------------
def routes(ctx: Sandbox) -> list[BaseRoute]:
    cio = ctx.data[API] = TrackWorkspace()
    ctx.api(API).error_body = lambda status, message: {"meta": {"errors": [message]}}
    identify = ctx.guarded(API, "PUT /api/v1/customers/{identifier}", cio.identify, cio.auth)
    track = ctx.guarded(API, "POST /api/v1/customers/{identifier}/events", cio.track,
                        cio.auth)
    # {identifier:path}: an id with an encoded "/" still reaches the right operation.
    return [
        Route("/api/v1/customers/{identifier:path}/events", track, methods=["POST"]),
        Route("/api/v1/customers/{identifier:path}", identify, methods=["PUT"]),
        ctx.route(API, "POST", "/api/v2/batch", cio.batch, auth=cio.auth),
        ctx.route(API, "GET", "/api/v1/accounts/region", cio.region, auth=cio.auth),
    ]


def reset(ctx: Sandbox) -> None:
    workspace(ctx).reset()


def admin_routes(ctx: Sandbox) -> list[BaseRoute]:
    """GET /admin/customerio/profiles|events[?site=...] (default: the main workspace);
    POST /admin/customerio/refuse {"people": [...], "site": ...}: those people's
    identifies and events are answered 400 (a 207 item error in a batch)."""

    def site(request: Request) -> Site | JSONResponse:
        name = request.query_params.get("site")
        if name is not None and name not in cred.CUSTOMERIO_WORKSPACES:
            return JSONResponse({"error": f"unknown site {name!r}"}, status_code=400)
        return workspace(ctx).site(name)

    async def profiles(request: Request) -> JSONResponse:
        found = site(request)
        if isinstance(found, JSONResponse):
            return found
        return JSONResponse({"profiles": found.profiles, "identifies": dict(found.identifies)})

    async def events(request: Request) -> JSONResponse:
        found = site(request)
        if isinstance(found, JSONResponse):
            return found
        return JSONResponse({"events": found.events, "duplicates": found.duplicates})

    async def refuse(request: Request) -> JSONResponse:
        body = await request.json()
        target = workspace(ctx).site(body.get("site"))
        target.refused = {str(p) for p in body.get("people") or []}
        return JSONResponse({"refused": sorted(target.refused)})

    return [Route("/customerio/profiles", profiles, methods=["GET"]),
            Route("/customerio/events", events, methods=["GET"]),
            Route("/customerio/refuse", refuse, methods=["POST"])]
