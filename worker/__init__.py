"""syncfleet's worker package: `celery -A worker ...` finds the app here."""

from worker.app import app

__all__ = ["app"]
