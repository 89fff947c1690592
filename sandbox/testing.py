"""Run the sandbox in-process (tests, benchmarks): `SandboxServer` and its `SandboxAdmin`."""

from __future__ import annotations

import socket
import threading
import time
from datetime import datetime
from typing import Any

import requests
import uvicorn

from sandbox.app import create_app
from sandbox.config import SandboxConfig, parse_now
from sandbox.credentials import env_for

# SandboxServer(**limits) keywords -> (api, budget field)
LIMIT_KEYWORDS: dict[str, tuple[str, str]] = {
    f"{api}_{kind}": (api, kind)
    for api in ("gis", "customerio", "segment", "voucherify")
    for kind in ("rps", "rpm", "bulk_per_hour")
}


def limits_from_keywords(keywords: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{"segment_rps": 100, "voucherify_rpm": 60} -> {"segment": {"rps": 100}, ...}."""
    limits: dict[str, dict[str, Any]] = {}
    for name, value in keywords.items():
        if name not in LIMIT_KEYWORDS:
            raise TypeError(f"unknown limit {name!r}; one of {sorted(LIMIT_KEYWORDS)}")
        if value is not None:
            api, kind = LIMIT_KEYWORDS[name]
            limits.setdefault(api, {})[kind] = value
    return limits


class SandboxAdmin:
    """One method per admin endpoint, returning the parsed JSON."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/") + "/admin"
        self.session = requests.Session()

    def _do(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.session.request(method, self.url + path, timeout=30, **kwargs)
        response.raise_for_status()
        return response.json()

    def reset(self, world: dict[str, Any] | None = None) -> Any:
        return self._do("POST", "/reset", json={"world": world} if world else {})

    def requests(self, api: str | None = None, method: str | None = None,
                 path_prefix: str | None = None) -> list[dict[str, Any]]:
        params = {k: v for k, v in
                  (("api", api), ("method", method), ("path_prefix", path_prefix)) if v}
        return self._do("GET", "/requests", params=params)["requests"]

    def clear_requests(self) -> Any:
        return self._do("DELETE", "/requests")

    def stats(self) -> dict[str, Any]:
        return self._do("GET", "/stats")

    def faults(self, api: str, **knobs: Any) -> Any:
        return self._do("POST", "/faults", json={"api": api, **knobs})

    def clear_faults(self, api: str) -> Any:
        return self._do("POST", "/faults", json={"api": api, "clear": True})

    def limits(self, api: str, **budget: Any) -> Any:
        return self._do("POST", "/limits", json={"api": api, **budget})

    def advance(self, share: float = 0.1, people_share: float = 0.05,
                seed: int | None = None) -> Any:
        body: dict[str, Any] = {"share": share, "people_share": people_share}
        if seed is not None:
            body["seed"] = seed
        return self._do("POST", "/advance", json=body)

    def world_people(self) -> list[dict[str, Any]]:
        return self._do("GET", "/world/people")["people"]

    def world_applications(self) -> list[dict[str, Any]]:
        return self._do("GET", "/world/applications")["applications"]

    def world_profiles(self) -> list[dict[str, Any]]:
        return self._do("GET", "/world/profiles")["profiles"]

    def add_people(self, people: list[dict[str, Any]]) -> Any:
        """Hand-built GIS people, served as given (docs/sandbox.md, "Adding records")."""
        return self._do("POST", "/world/people", json={"people": people})

    def edit_person(self, person_id: str, **changes: Any) -> dict[str, Any]:
        """Edit a generated GIS person (first_name, last_name, nps_score, status, ...):
        updated_at becomes now."""
        return self._do("POST", f"/world/people/{person_id}", json=changes)["person"]

    def add_applications(self, applications: list[dict[str, Any]]) -> Any:
        return self._do("POST", "/world/applications", json={"applications": applications})

    def add_profiles(self, profiles: list[dict[str, Any]]) -> Any:
        """Hand-built Segment profiles: {"segment_id", "traits", "external_ids"}."""
        return self._do("POST", "/world/profiles", json={"profiles": profiles})

    def customerio_profiles(self, site: str | None = None) -> dict[str, Any]:
        return self._do("GET", "/customerio/profiles", params={"site": site} if site else None)

    def customerio_events(self, site: str | None = None) -> dict[str, Any]:
        return self._do("GET", "/customerio/events", params={"site": site} if site else None)

    def customerio_refuse(self, people: list[str], site: str | None = None) -> Any:
        """customer.io answers 400 to these people's identifies and events."""
        return self._do("POST", "/customerio/refuse", json={"people": people, "site": site})

    def voucherify_customers(self) -> dict[str, Any]:
        return self._do("GET", "/voucherify/customers")

    def gis_expire_token(self) -> Any:
        return self._do("POST", "/gis/expire_token")


class SandboxServer:
    """The whole sandbox on loopback, uvicorn in a background thread.

    `with SandboxServer(seed=1, people=50, segment_rps=100) as sb: sb.url, sb.env(), sb.admin`
    """

    def __init__(self, seed: int = 1, people: int = 200, applications: int = 600,
                 profiles: int = 300, now: datetime | str | None = None, port: int = 0,
                 host: str = "127.0.0.1", faults: dict[str, dict[str, Any]] | None = None,
                 **limits: Any) -> None:
        self.config = SandboxConfig(seed=seed, people=people, applications=applications,
                                    profiles=profiles, now=parse_now(now),
                                    faults=faults or {}, limits=limits_from_keywords(limits))
        self.host = host
        self.port = port
        self.app = create_app(self.config)
        self.ctx = self.app.state.sandbox
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def admin(self) -> SandboxAdmin:
        return SandboxAdmin(self.url)

    def env(self) -> dict[str, str]:
        return env_for(self.url)

    def start(self, timeout: float = 15) -> SandboxServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", access_log=False,
                                timeout_graceful_shutdown=1, lifespan="off",
                                timeout_keep_alive=30, backlog=2048)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name=f"sandbox-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the sandbox server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
