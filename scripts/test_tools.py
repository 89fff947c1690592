"""The programs the tests need besides Python packages, found or fetched without root:

    prometheus, promtool   the alert tests (tests/gis/test_alerts.py) run the real ones
    redis-server           built with TLS (the TLS tests; Sentinel runs on it too)
    openssl                the TLS tests' certificates

Each is taken from PATH; else from `.run/tools/bin` (fetched before); else Debian's
package is fetched there: `apt-get download` and `dpkg-deb -x` into `.run/tools/root`
(no root needed, nothing installed on the machine), with those of its library
dependencies the machine lacks, and a wrapper in `.run/tools/bin` that runs the binary
with them. Only where that cannot work cleanly and we are root does it fall back to
`apt-get install`. `make test` runs this script first; the tests look in
`.run/tools/bin` too (tests/conftest.py).

    python scripts/test_tools.py              # every tool; prints where each is
    python scripts/test_tools.py promtool     # one

Where a tool cannot be had (not Debian, no package lists and not root), the tests that
need it are skipped, saying how to install it; under CI (CI=true) this script and those
tests fail instead, so CI never skips them silently.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOOLS_DIR = ROOT / ".run" / "tools"


@dataclass(frozen=True)
class Tool:
    packages: tuple[str, ...]  # Debian packages that ship it
    path: str  # where the binary lies in them
    version_flag: str = "--version"


TOOLS = {
    "prometheus": Tool(("prometheus",), "usr/bin/prometheus"),
    "promtool": Tool(("prometheus",), "usr/bin/promtool"),
    # redis-server is a link to redis-check-rdb (redis-tools); its name picks the mode.
    "redis-server": Tool(("redis-server", "redis-tools"), "usr/bin/redis-server"),
    "openssl": Tool(("openssl",), "usr/bin/openssl", "version"),
}


class Unavailable(RuntimeError):
    """The tool is not here and cannot be fetched; the message says how to install it."""


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def bin_dir(tools_dir: Path | None = None) -> Path:
    return (tools_dir or TOOLS_DIR) / "bin"


def find(name: str, tools_dir: Path | None = None) -> str | None:
    """The tool on PATH, or fetched before into `tools_dir`; None if neither."""
    found = shutil.which(name)
    if found:
        return found
    cached = bin_dir(tools_dir) / name
    return str(cached) if os.access(cached, os.X_OK) else None


def ensure(name: str, tools_dir: Path | None = None, use_path: bool = True) -> str:
    """The tool's path: found, or fetched now (`use_path=False` ignores PATH: a fetch is
    then tested). Raises Unavailable with how to install it."""
    tools_dir = tools_dir or TOOLS_DIR
    found = find(name, tools_dir) if use_path else None
    if found:
        return found
    tool = TOOLS[name]
    try:
        return fetch(name, tool, tools_dir)
    except Unavailable as exc:
        if os.geteuid() == 0 and shutil.which("apt-get") and use_path:
            _run(["apt-get", "install", "-y", "-qq", *tool.packages],
                 env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
            if shutil.which(name):
                return str(shutil.which(name))
        raise Unavailable(f"{name} is needed ({exc}): install Debian's "
                          f"{' and '.join(tool.packages)} (`apt-get install "
                          f"{' '.join(tool.packages)}`), or put {name} on PATH") from None


def fetch(name: str, tool: Tool, tools_dir: Path) -> str:
    """Debian's package of the tool, unpacked into `tools_dir/root` with the libraries it
    needs that this machine lacks; a wrapper `tools_dir/bin/{name}` runs it."""
    if not (shutil.which("apt-get") and shutil.which("dpkg-deb")):
        raise Unavailable("no apt-get and dpkg-deb here: not Debian")
    root = tools_dir / "root"
    root.mkdir(parents=True, exist_ok=True)
    binary = root / tool.path
    if not binary.exists():  # promtool comes with prometheus
        _unpack(tool, root)
    if not binary.exists():
        raise Unavailable(f"{tool.path} is not in {' '.join(tool.packages)}")
    return _wrap(name, binary, root, tool, tools_dir)


def _unpack(tool: Tool, root: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="syncfleet-debs-") as debs:
        wanted, seen = list(tool.packages), set()
        while wanted:  # the packages, then the libraries they need that are missing
            batch = [p for p in wanted if p not in seen]
            seen.update(batch)
            wanted = []
            for deb in _download(batch, Path(debs)):
                _run(["dpkg-deb", "-x", str(deb), str(root)])
                wanted += [dep for dep in _depends(deb)
                           if dep.startswith("lib") and not _installed(dep)]


def _wrap(name: str, binary: Path, root: Path, tool: Tool, tools_dir: Path) -> str:
    wrapper = bin_dir(tools_dir) / name
    wrapper.parent.mkdir(parents=True, exist_ok=True)
    libs = ":".join(sorted(glob.glob(str(root / "usr/lib/*-linux-gnu"))
                           + glob.glob(str(root / "lib/*-linux-gnu"))))
    # exec keeps the process id (a test that signals the tool signals the tool itself),
    # and the link's name (redis-server's mode).
    wrapper.write_text("#!/bin/sh\n"
                       f'LD_LIBRARY_PATH="{libs}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}" '
                       f'exec "{binary}" "$@"\n')
    wrapper.chmod(0o755)
    done = subprocess.run([str(wrapper), tool.version_flag], capture_output=True, text=True,
                          timeout=60)
    if done.returncode != 0:
        wrapper.unlink()
        raise Unavailable(f"Debian's {name} does not run here: "
                          f"{(done.stderr or done.stdout).strip()[:300]}")
    return str(wrapper)


def _download(packages: list[str], into: Path) -> list[Path]:
    """`apt-get download` (no root); as root, with the package lists updated once if
    they do not know the package."""
    try:
        _run(["apt-get", "download", "-qq", *packages], cwd=into)
    except Unavailable:
        if os.geteuid() != 0:
            raise
        _run(["apt-get", "update", "-qq"])
        _run(["apt-get", "download", "-qq", *packages], cwd=into)
    return [deb for package in packages for deb in into.glob(f"{package}_*.deb")]


def _depends(deb: Path) -> list[str]:
    """The package names a .deb depends on (the first of each alternative)."""
    done = subprocess.run(["dpkg-deb", "-f", str(deb), "Depends", "Pre-Depends"],
                          capture_output=True, text=True, check=True)
    names = []
    for line in done.stdout.splitlines():
        for clause in line.split(":", 1)[-1].split(","):
            first = clause.split("|")[0].strip().split(" ")[0].split(":")[0]
            if first:
                names.append(first)
    return names


def _installed(package: str) -> bool:
    done = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package],
                          capture_output=True, text=True)
    return done.returncode == 0 and done.stdout.endswith("installed")


def _run(args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise Unavailable(f"`{' '.join(args[:3])} …` failed: "
                          f"{(done.stderr or done.stdout).strip()[-300:]}")


def main(names: list[str]) -> int:
    missing = []
    for name in names or list(TOOLS):
        try:
            print(f"{name}: {ensure(name)}")
        except Unavailable as exc:
            missing.append(name)
            print(f"{name}: MISSING: {exc}", file=sys.stderr)
    if missing and in_ci():
        print(f"CI=true: the tests that need {', '.join(missing)} would be skipped; "
              "failing instead", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
