"""The one ASGI app: a path prefix per simulated API, plus /admin (no auth)."""

from __future__ import annotations

from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Mount, Route

from sandbox import customerio, gis, segment, voucherify
from sandbox.config import APIS, Faults, SandboxConfig
from sandbox.context import Sandbox


class Simulator(Protocol):
    """What a simulator module provides (sandbox/pipeline.py describes the contract)."""

    def routes(self, ctx: Sandbox) -> list[BaseRoute]: ...

    def admin_routes(self, ctx: Sandbox) -> list[BaseRoute]: ...

    def reset(self, ctx: Sandbox) -> None: ...


SIMULATORS: dict[str, Simulator] = {
    "gis": gis, "customerio": customerio, "segment": segment, "voucherify": voucherify}


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
                             "apis": list(APIS)})

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
        simulator = SIMULATORS[api]
        ctx.reset_hooks.append(simulator.reset)
        mounts.append(Mount(f"/{api}", routes=simulator.routes(ctx)))
        admin.extend(simulator.admin_routes(ctx))
    for hook in ctx.reset_hooks:
        hook(ctx)
    app = Starlette(routes=[*mounts, Mount("/admin", routes=admin)])
    app.state.sandbox = ctx
    return app
