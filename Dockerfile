# Two images from one file (docker-compose.yml picks the target):
#   fleet    the default (last stage): worker, beat and Flower, which differ only by command
#   sandbox  the local simulators of the four APIs (compose profile "sandbox"); never in fleet
# Dependencies come from the hash-checked locks in requirements/ (`make lock`) and are
# installed before any code is copied: a code change rebuilds only the last layers.
# The base image is pinned by digest (the tag says what it is, the digest is what is pulled):
# `make lock` moves it to the tag's current digest (scripts/pin_images.py).
# No secrets here: they come from the environment (.env via docker compose) at run time.
FROM python:3.11-slim@sha256:db3ff2e1800a8581e2c48a27c3995339d47bdf046da21c7627accd3d51053a93 AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# An unprivileged user owns nothing but its home and the working directory
# (beat writes its celerybeat-schedule file there); the code stays root-owned.
RUN groupadd --system app && useradd --system --gid app --create-home --home-dir /home/app app
WORKDIR /app

# The fleet's dependencies, exactly as locked: rebuilt only when the lock changes.
FROM base AS fleet-deps
COPY requirements/fleet.txt /tmp/requirements/fleet.txt
RUN pip install --no-deps --require-hashes -r /tmp/requirements/fleet.txt

# The sandbox: its own stack on top of the fleet's locked dependencies, and its code, which
# runs from the working directory (`python -m sandbox`); the fleet's package is not needed.
FROM fleet-deps AS sandbox
COPY requirements/sandbox.txt /tmp/requirements/sandbox.txt
RUN pip install --no-deps --require-hashes -r /tmp/requirements/sandbox.txt
COPY sandbox/ sandbox/
USER app
CMD ["python", "-m", "sandbox", "--host", "0.0.0.0", "--port", "8500"]

# The fleet: its package, without dependencies (they are all above), built from a scratch
# copy of the code that is removed again, so what runs is the installed package. Its build
# requirement (setuptools) is locked and hash-checked too, and used as installed: no build
# isolation, so pip fetches nothing unchecked.
FROM fleet-deps AS fleet
COPY requirements/build.txt /tmp/requirements/build.txt
RUN pip install --no-deps --require-hashes -r /tmp/requirements/build.txt
COPY pyproject.toml README.md /tmp/syncfleet/
COPY worker/ /tmp/syncfleet/worker/
COPY beat/ /tmp/syncfleet/beat/
RUN pip install --no-build-isolation --no-deps /tmp/syncfleet && rm -rf /tmp/syncfleet \
    && chown app:app /app
# Flower's configuration (FLOWER_CONF in docker-compose.yml): /metrics behind the login.
COPY deploy/flowerconfig.py /etc/syncfleet/flowerconfig.py

USER app

# Overridden per service in docker-compose.yml; exec form so signals reach Celery.
CMD ["celery", "-A", "worker", "worker", "--pool=prefork", "--concurrency=4"]
