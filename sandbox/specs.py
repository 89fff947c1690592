"""The vendors' OpenAPI files and the validators compiled from them, for every simulator.

The files ship next to this module, identical to the shared copies (tests compare them).
They do not validate cleanly as published, so each is loaded with the quirks that
docs/api-contracts.md ("Reading the vendor files (the quirks)") names: `servers` dropped
everywhere (or loopback paths match no server); customer.io's `discriminator`s dropped
and its `oneOf`s read as `anyOf`; Voucherify's files loaded without validating the spec
itself. Three ways to check a body against a schema of those files:

- `openapi(name)`: openapi-core over the whole file (request paths, parameters, bodies);
  thorough and slow (ms per request).
- `checker(name, *location)`: a JSON Schema 2020-12 schema of an OpenAPI 3.1 file compiled
  with jsonschema-rs (~1 us a body), Python jsonschema to word the errors.
- `oas30_validator(name, *location)`: an OpenAPI 3.0 schema with its `$ref`s inlined and
  plain `allOf`s merged, compiled once with openapi-schema-validator.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jsonschema_rs
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError
from openapi_core import Config as OpenAPIConfig
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest
from openapi_schema_validator import OAS30Validator, oas30_format_checker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_DIR = Path(__file__).resolve().parent  # package data, next to the code
CUSTOMERIO_TRACK = "customerio-track-api.openapi.json"
VOUCHERIFY_CUSTOMERS = "voucherify-customers.openapi.json"
VOUCHERIFY_ASYNC_ACTIONS = "voucherify-async-actions.openapi.json"


@dataclass(frozen=True)
class Quirks:
    """How one vendor's files must be read (docs/api-contracts.md, "the quirks")."""

    drop: tuple[str, ...]  # keys removed wherever they appear
    one_of_as_any_of: bool = False  # overlapping oneOf branches would refuse valid bodies
    validate_spec: bool = True  # False: the file itself breaks the OpenAPI schema


CUSTOMERIO_QUIRKS = Quirks(("servers", "discriminator"), one_of_as_any_of=True)
VOUCHERIFY_QUIRKS = Quirks(("servers",), validate_spec=False)
QUIRKS = {CUSTOMERIO_TRACK: CUSTOMERIO_QUIRKS, VOUCHERIFY_CUSTOMERS: VOUCHERIFY_QUIRKS,
          VOUCHERIFY_ASYNC_ACTIONS: VOUCHERIFY_QUIRKS}


def apply_quirks(node: Any, quirks: Quirks) -> Any:
    """Apply `quirks` to a spec (in place, recursively); returns the spec."""
    if isinstance(node, dict):
        for key in quirks.drop:
            node.pop(key, None)
        if quirks.one_of_as_any_of and "oneOf" in node:
            node["anyOf"] = node.pop("oneOf")
        for value in node.values():
            apply_quirks(value, quirks)
    elif isinstance(node, list):
        for value in node:
            apply_quirks(value, quirks)
    return node


@cache
def load(name: str) -> dict[str, Any]:
    """The vendor file `name` with its quirks applied (shared: never modify it)."""
    return apply_quirks(json.loads((SPEC_DIR / name).read_text()), QUIRKS[name])


@cache
def openapi(name: str) -> OpenAPI:
    config = None if QUIRKS[name].validate_spec else OpenAPIConfig(spec_validator_cls=None)
    return OpenAPI.from_dict(load(name), config=config)


def validate_request(name: str, method: str, path: str, headers: dict[str, str],
                     args: dict[str, str], body: bytes | None) -> None:
    """openapi-core's check of a request against the file `name`; raises what it finds
    (one exception class per kind of problem, the schema errors in its __cause__)."""
    mock = MockRequest("http://sandbox", method.lower(), path, headers=headers, args=args,
                       data=body, content_type="application/json")
    openapi(name).validate_request(mock)


# --- JSON Schema 2020-12 (OpenAPI 3.1 files) ----------------------------------------------
def _pointer(*parts: str) -> str:
    """A URI fragment JSON pointer ("{identifier}" must be percent-encoded in a URI)."""
    return "/".join(quote(p.replace("~", "~0").replace("/", "~1"), safe="~") for p in parts)


class Checker:
    """One schema compiled twice: jsonschema-rs decides (~1 us a body; the Python
    jsonschema takes ~200 us, openapi-core ~2 ms), Python jsonschema words the errors."""

    def __init__(self, name: str, location: tuple[str, ...]) -> None:
        uri = f"urn:{name.removesuffix('.openapi.json')}"
        ref = {"$ref": f"{uri}#/{_pointer(*location)}"}
        self.fast = jsonschema_rs.Draft202012Validator(
            ref, validate_formats=True, registry=jsonschema_rs.Registry([(uri, load(name))]))
        registry = Registry().with_resource(
            uri, Resource.from_contents(load(name), default_specification=DRAFT202012))
        self.slow = Draft202012Validator(ref, registry=registry, format_checker=FormatChecker())

    def is_valid(self, body: Any) -> bool:
        return self.fast.is_valid(body)

    def iter_errors(self, body: Any) -> Iterator[ValidationError]:
        return self.slow.iter_errors(body)


@cache
def checker(name: str, *location: str) -> Checker:
    """The compiled schema at `location` (path parts) inside the file `name`."""
    return Checker(name, location)


# --- OpenAPI 3.0 schemas, inlined --------------------------------------------------------
ANNOTATIONS = ("description", "example", "examples", "title")


def inline(node: Any, root: dict[str, Any]) -> Any:
    """Resolve local $refs into one self-contained schema, without annotations."""
    if isinstance(node, list):
        return [inline(item, root) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target: Any = root
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return inline(target, root)
    out = {}
    for key, value in node.items():
        if key in ANNOTATIONS:
            continue
        if key == "properties":  # property names are data, not keywords
            out[key] = {name: inline(sub, root) for name, sub in value.items()}
        else:
            out[key] = inline(value, root)
    return out


def merge_all_of(node: Any) -> Any:
    """allOf of plain object schemas -> one object schema (same meaning, one pass)."""
    if isinstance(node, list):
        return [merge_all_of(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: merge_all_of(value) for key, value in node.items()}
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


def schema_at(name: str, *location: str) -> Any:
    node: Any = load(name)
    for part in location:
        node = node[part]
    return node


def inlined(name: str, *location: str) -> Any:
    """The schema at `location` of the file `name`, self-contained."""
    return inline(schema_at(name, *location), load(name))


@cache
def oas30_validator(name: str, *location: str) -> OAS30Validator:
    """The OpenAPI 3.0 schema at `location`, inlined, allOfs merged, compiled once."""
    return OAS30Validator(merge_all_of(inlined(name, *location)),
                          format_checker=oas30_format_checker)
