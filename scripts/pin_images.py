"""Move the base images' digests to what their tags name today (`make lock` runs this).

The Dockerfile and docker-compose.yml name every image they pull as `name:tag@sha256:...`:
the tag says what it is, the digest is what is pulled, so a build is the same on every
machine until the pin is moved here. Each digest is resolved on this machine with
`docker buildx imagetools inspect`, or else asked of the registry (Docker Hub's API, no
Docker needed); with neither (no network), the pins stay as they are and this says so.

    python scripts/pin_images.py            # move every pin to its tag's current digest
    python scripts/pin_images.py --check    # only list the pins; exit 1 if one is missing
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FILES = ("Dockerfile", "docker-compose.yml")
# FROM name:tag[@sha256:...] / image: name:tag[@sha256:...] (our own images have no tag
# but `latest` and are built here, not pulled: they are left alone).
PINNED = re.compile(r"(?m)^(?P<lead>\s*(?:FROM|image:)\s+)(?P<ref>[a-z0-9./_-]+:[\w.-]+)"
                    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?")
OWN = ("syncfleet:", "syncfleet-sandbox:")
INDEX_TYPES = ("application/vnd.oci.image.index.v1+json,"
               "application/vnd.docker.distribution.manifest.list.v2+json,"
               "application/vnd.docker.distribution.manifest.v2+json")


def pins(text: str) -> list[tuple[str, str | None]]:
    """(image:tag, digest or None) of every pulled image a file names."""
    return [(m["ref"], m["digest"]) for m in PINNED.finditer(text)
            if not m["ref"].startswith(OWN)]


def repin(text: str, resolve: Callable[[str], str]) -> str:
    """The text with each pulled image's digest set to `resolve(image:tag)`."""
    def pin(m: re.Match[str]) -> str:
        if m["ref"].startswith(OWN):
            return m[0]
        return f"{m['lead']}{m['ref']}@{resolve(m['ref'])}"

    return PINNED.sub(pin, text)


def resolve(ref: str) -> str:
    """The digest (of the multi-platform index) that `ref` names now."""
    if shutil.which("docker"):
        done = subprocess.run(["docker", "buildx", "imagetools", "inspect", ref, "--format",
                               "{{json .Manifest}}"], capture_output=True, text=True,
                              timeout=120)
        if done.returncode == 0:
            return json.loads(done.stdout)["digest"]
    return _from_docker_hub(ref)


def _from_docker_hub(ref: str) -> str:
    name, tag = ref.rsplit(":", 1)
    repository = name if "/" in name else f"library/{name}"
    token_url = ("https://auth.docker.io/token?service=registry.docker.io&scope="
                 f"repository:{repository}:pull")
    with urllib.request.urlopen(token_url, timeout=30) as answer:
        token = json.load(answer)["token"]
    request = urllib.request.Request(
        f"https://registry-1.docker.io/v2/{repository}/manifests/{tag}", method="HEAD",
        headers={"Authorization": f"Bearer {token}", "Accept": INDEX_TYPES})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return answer.headers["Docker-Content-Digest"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="list the pins, change nothing")
    args = parser.parse_args()
    missing = 0
    for name in FILES:
        path = ROOT / name
        text = path.read_text()
        for ref, digest in pins(text):
            print(f"{name}: {ref}@{digest or 'NOT PINNED'}")
            missing += digest is None
        if args.check:
            continue
        try:
            moved = repin(text, resolve)
        except OSError as exc:  # no docker and no network: keep what is pinned
            print(f"{name}: pins kept, the registry could not be asked ({exc})",
                  file=sys.stderr)
            continue
        if moved != text:
            path.write_text(moved)
            print(f"{name}: moved to " + ", ".join(f"{r}@{d}" for r, d in pins(moved)))
    return 1 if args.check and missing else 0


if __name__ == "__main__":
    sys.exit(main())
