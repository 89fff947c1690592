"""The programs the tests need besides Python packages (scripts/test_tools.py): fetched
from Debian's packages without root when they are not on PATH, and on a machine where
they cannot be had, a skip that says how to install them, or under CI a failure."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT
from tests.support.tools import missing, require

sys.path.insert(0, str(ROOT / "scripts"))
import test_tools


@pytest.fixture
def nothing_on_path(tmp_path, monkeypatch):
    """A machine without the tools, apt-get or dpkg-deb (not Debian), nothing fetched."""
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr(test_tools, "TOOLS_DIR", tmp_path / "tools")
    return empty


def test_debians_redis_server_and_openssl_are_fetched_without_root(tmp_path):
    """Ignoring PATH, as on a machine without them: Debian's packages unpacked into a
    folder of ours, run through their wrappers (redis-server with TLS built in)."""
    if not test_tools.find("apt-get"):
        missing("not Debian: nothing to fetch here")
    server = test_tools.ensure("redis-server", tmp_path, use_path=False)
    assert server == str(tmp_path / "bin" / "redis-server")
    assert subprocess.run([server, "--version"], capture_output=True, text=True,
                          timeout=60).stdout.startswith("Redis server v=")
    tls = subprocess.run([server, "--port", "0", "--tls-port", "0"],
                         capture_output=True, text=True, timeout=60)
    assert "Bad directive" not in tls.stdout + tls.stderr  # tls-port is known: TLS built in
    openssl = test_tools.ensure("openssl", tmp_path, use_path=False)
    assert subprocess.run([openssl, "version"], capture_output=True, text=True,
                          timeout=60).stdout.startswith("OpenSSL ")


def test_libraries_the_machine_lacks_come_along(tmp_path, monkeypatch):
    """Pretending this machine lacks redis-server's compression and allocator libraries:
    Debian's packages of them are unpacked beside it, and its wrapper loads them."""
    if not test_tools.find("apt-get"):
        missing("not Debian: nothing to fetch here")
    lacking = {"liblzf1", "libjemalloc2"}
    installed = test_tools._installed
    monkeypatch.setattr(test_tools, "_installed", lambda p: p not in lacking and installed(p))
    server = test_tools.ensure("redis-server", tmp_path, use_path=False)
    libraries = re.search(r'LD_LIBRARY_PATH="([^$"]*)', Path(server).read_text()).group(1)
    assert libraries and all(part.startswith(str(tmp_path)) for part in libraries.split(":"))
    binary = tmp_path / "root" / "usr" / "bin" / "redis-server"
    linked = subprocess.run(["ldd", str(binary)], env={**os.environ, "LD_LIBRARY_PATH": libraries},
                            capture_output=True, text=True, timeout=60).stdout
    for library in ("liblzf.so.1", "libjemalloc.so.2"):
        line = next(x for x in linked.splitlines() if library in x)
        assert str(tmp_path) in line, line  # ours, not the machine's
    assert subprocess.run([server, "--version"], capture_output=True, text=True,
                          timeout=60).stdout.startswith("Redis server v=")


def test_prometheus_and_promtool_are_found_or_fetched():
    for name in ("prometheus", "promtool"):
        done = subprocess.run([require(name), "--version"], capture_output=True, text=True,
                              timeout=60)
        assert f"{name}, version 2." in done.stdout + done.stderr


def test_without_the_tools_a_test_skips_saying_how_to_install(nothing_on_path, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"apt-get install prometheus"):
        require("promtool")


def test_under_ci_it_fails_instead_of_skipping(nothing_on_path, monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"CI=true, so not skipped: promtool"):
        require("promtool")


@pytest.mark.parametrize("ci", ["", "true"])
def test_the_make_step_warns_without_ci_and_fails_under_it(nothing_on_path, tmp_path, ci):
    code = ("import sys, test_tools; from pathlib import Path; "
            f"test_tools.TOOLS_DIR = Path({str(tmp_path / 'tools')!r}); "
            "sys.exit(test_tools.main(['promtool']))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT / "scripts",
                          env={**os.environ, "CI": ci}, capture_output=True, text=True,
                          timeout=60)
    assert "promtool: MISSING" in done.stderr and "apt-get install prometheus" in done.stderr
    assert done.returncode == (1 if ci else 0), done.stderr
