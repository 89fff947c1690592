# The fleet's one image: worker, beat, flower and the sandbox differ only by command.
# No secrets here: they come from the environment (.env via docker compose) at run time.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# An unprivileged user owns nothing but its home and the working directory
# (beat writes its celerybeat-schedule file there); the code stays root-owned.
RUN groupadd --system app && useradd --system --gid app --create-home --home-dir /home/app app

WORKDIR /app
COPY pyproject.toml README.md ./
COPY worker/ worker/
COPY beat/ beat/
COPY sandbox/ sandbox/
COPY scripts/ scripts/
# `sandbox/` carries its own data files (schemas, specs), so copying the package copies them.
RUN pip install . && chown app:app /app

USER app

# Overridden per service in docker-compose.yml; exec form so signals reach Celery.
CMD ["celery", "-A", "worker", "worker", "--loglevel=INFO"]
