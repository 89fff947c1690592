"""The one ASGI app: a path prefix per simulated API, plus /admin (no auth)."""

from __future__ import annotations

import importlib
import logging
from types import ModuleType
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Mount, Route

from sandbox.core import APIS, Faults, Sandbox, SandboxConfig

log = logging.getLogger(__name__)


def _module(api: str) -> ModuleType | None:
    """The API's simulator module, or None while it is not written yet."""
    try:
        return importlib.import_module(f"sandbox.{api}")
    except ModuleNotFoundError as exc:
        if exc.name != f"sandbox.{api}":
            raise
        log.warning("sandbox.%s is missing: /%s is not served", api, api)
        return None


def _body_error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _json(request: Request) -> dict[str, Any]:
    body = await request.body()
    if not body:
        return {}
    data = await request.json()
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    return data


def admin_routes(ctx: Sandbox) -> list[BaseRoute]:
    async def reset(request: Request) -> JSONResponse:
        data = await _json(request)
        ctx.reset(data.get("world"))
        return JSONResponse({"ok": True, "world": ctx.config.world()})

    async def requests_(request: Request) -> JSONResponse:
        if request.method == "DELETE":
            ctx.clear_recording()
            return JSONResponse({"ok": True})
        api = request.query_params.get("api")
        method = request.query_params.get("method")
        prefix = request.query_params.get("path_prefix")
        found = [r for r in ctx.recording
                 if (api is None or r["api"] == api) and (method is None or r["method"] == method)
                 and (prefix is None or r["path"].startswith(prefix))]
        return JSONResponse({"requests": found})

    async def stats(request: Request) -> JSONResponse:
        return JSONResponse(ctx.stats())

    async def faults(request: Request) -> JSONResponse:
        if request.method == "GET":
            return JSONResponse({api: ctx.faults_of(api) for api in ctx.apis})
        data = await _json(request)
        try:
            state = ctx.api(data.pop("api", ""))
            if data.pop("clear", False):
                state.faults = Faults()
            state.faults.update(data)
        except ValueError as exc:
            return _body_error(str(exc))
        return JSONResponse({"ok": True, "faults": ctx.faults_of(state.name)})

    async def limits(request: Request) -> JSONResponse:
        if request.method == "GET":
            return JSONResponse({api: ctx.limits_of(api) for api in ctx.apis})
        data = await _json(request)
        try:
            state = ctx.api(data.pop("api", ""))
        except ValueError as exc:
            return _body_error(str(exc))
        state.limits.update(data)
        state.apply_limits()
        return JSONResponse({"ok": True, "limits": ctx.limits_of(state.name)})

    async def config(request: Request) -> JSONResponse:
        return JSONResponse({"world": ctx.config.world(), "started": ctx.started.isoformat(),
                             "apis": [a for a in APIS if ctx.data.get(f"_{a}_served")]})

    return [
        Route("/reset", reset, methods=["POST"]),
        Route("/requests", requests_, methods=["GET", "DELETE"]),
        Route("/stats", stats, methods=["GET"]),
        Route("/faults", faults, methods=["GET", "POST"]),
        Route("/limits", limits, methods=["GET", "POST"]),
        Route("/config", config, methods=["GET"]),
    ]


def create_app(config: SandboxConfig | None = None) -> Starlette:
    """The sandbox app; the Sandbox context is `app.state.sandbox`."""
    ctx = Sandbox(config or SandboxConfig())
    mounts: list[BaseRoute] = []
    admin = admin_routes(ctx)
    for api in APIS:
        module = _module(api)
        if module is None:
            continue
        ctx.data[f"_{api}_served"] = True
        if hasattr(module, "reset"):
            ctx.reset_hooks.append(module.reset)
        mounts.append(Mount(f"/{api}", routes=module.routes(ctx)))
        if hasattr(module, "admin_routes"):
            admin.extend(module.admin_routes(ctx))
    for hook in ctx.reset_hooks:
        hook(ctx)
    app = Starlette(routes=[*mounts, Mount("/admin", routes=admin)])
    app.state.sandbox = ctx
    return app
