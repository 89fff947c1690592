"""Loading the vendors' OpenAPI files as api-contracts.md's "known quirks" section says."""

from __future__ import annotations

from typing import Any


def strip_spec(node: Any, drop: tuple[str, ...], one_of_as_any_of: bool = False) -> Any:
    """Remove the keys `drop` everywhere in a spec (in place) and, if asked, read every
    `oneOf` as `anyOf`; returns the spec."""
    if isinstance(node, dict):
        for key in drop:
            node.pop(key, None)
        if one_of_as_any_of and "oneOf" in node:
            node["anyOf"] = node.pop("oneOf")
        for value in node.values():
            strip_spec(value, drop, one_of_as_any_of)
    elif isinstance(node, list):
        for value in node:
            strip_spec(value, drop, one_of_as_any_of)
    return node
