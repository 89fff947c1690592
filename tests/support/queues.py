"""The broker's queues as kombu keeps them in Redis (a list per queue; a message is JSON
whose body is the base64 JSON of [args, kwargs, embed]), for tests that lose a message on
purpose: what a worker killed between popping a message and recording it as held does.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any


def remove_one(redis_client: Any, queue: str, task: str,
               match: Callable[[list[Any], dict[str, Any]], bool]
               ) -> tuple[list[Any], dict[str, Any]] | None:
    """Remove from `queue` (LREM: for real) one waiting message of `task` whose arguments
    `match`; returns its (args, kwargs), or None when no such message is waiting."""
    for raw in redis_client.lrange(queue, 0, -1):
        message = json.loads(raw)
        if message.get("headers", {}).get("task") != task:
            continue
        args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
        if match(args, kwargs) and redis_client.lrem(queue, 1, raw):
            return args, kwargs
    return None
