"""A reproducible image: every image pulled is pinned by digest, `make lock` moves the pins
(scripts/pin_images.py), and the project's build requirement is locked and hash-checked
like its dependencies (requirements/build.txt, installed without build isolation)."""

from __future__ import annotations

import re
import sys
import tomllib

from packaging.requirements import Requirement

from tests.fleet.test_packaging import lock
from tests.support import ROOT
from tests.support.compose import dockerfile_stages, load, stage_chain

sys.path.insert(0, str(ROOT / "scripts"))
import pin_images

DIGEST = re.compile(r"[a-z0-9./_-]+:[\w.-]+@sha256:[0-9a-f]{64}")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_image_the_build_and_compose_pull_is_pinned_by_digest():
    stages = dockerfile_stages()
    bases = {s.base for s in stages.values() if s.base not in stages}
    assert bases and all(DIGEST.fullmatch(b) for b in bases), bases
    compose = load()["services"]
    pulled = {s["image"] for s in compose.values() if "build" not in s}
    assert pulled and all(DIGEST.fullmatch(i) for i in pulled), pulled
    # The same pins the script sees (and `make lock` moves).
    found = [p for name in pin_images.FILES for p in pin_images.pins((ROOT / name).read_text())]
    assert {f"{ref}@{digest}" for ref, digest in found} == bases | pulled


def test_repin_moves_each_digest_and_leaves_stages_and_our_own_images_alone():
    text = ("FROM python:3.11-slim@sha256:" + "a" * 64 + " AS base\nFROM base AS fleet\n"
            "    image: redis:7\n    image: syncfleet:latest\n")
    moved = pin_images.repin(text, lambda ref: "sha256:" + ("b" if "python" in ref else "c") * 64)
    assert moved == ("FROM python:3.11-slim@sha256:" + "b" * 64 + " AS base\n"
                     "FROM base AS fleet\n    image: redis:7@sha256:" + "c" * 64 +
                     "\n    image: syncfleet:latest\n")


def test_make_lock_locks_the_build_requirement_and_moves_the_image_pins():
    makefile = (ROOT / "Makefile").read_text()
    assert "-o requirements/build.txt" in makefile and "scripts/pin_images.py" in makefile
    text = (ROOT / "requirements" / "build.txt").read_text()
    assert "make lock" in text[:200]
    pins = lock("build")
    for requirement in map(Requirement, PYPROJECT["build-system"]["requires"]):
        versions = pins[requirement.name]
        assert all(requirement.specifier.contains(v) for v in versions), versions
    for entry in re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2]):
        if re.match(r"[A-Za-z0-9._-]+==", entry):
            assert "--hash=sha256:" in entry, entry.splitlines()[0]


def test_the_project_is_built_with_the_locked_setuptools_and_nothing_unchecked():
    fleet = [i for stage in stage_chain("fleet") for i in stage.instructions]
    runs = [args for op, args in fleet if op == "RUN"]
    build_lock = next(i for i, a in enumerate(runs) if "-r /tmp/requirements/build.txt" in a)
    assert "--require-hashes" in runs[build_lock]
    project = next(i for i, a in enumerate(runs) if "/tmp/syncfleet" in a)
    assert build_lock < project and "--no-build-isolation" in runs[project]
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes -r requirements/dev.txt \\\n\t\t-r requirements/build.txt" in \
        makefile
    assert "--no-build-isolation --no-deps -e ." in makefile
