"""Starting a migration, or the next attempt of one (no Celery here).

A run is created for the Segment space and Voucherify project the fleet is configured
for. Resuming it (the same run id) starts its next attempt: the slices that completed
are kept, every other planned slice is handed over again, and an unfinished walk goes
on from its checkpoint. A run is never resumed under another space or project: its
slices and checkpoints belong to its own.
"""

from __future__ import annotations

import logging

from ulid import ULID

from worker.segment_migration import state
from worker.settings import Settings

log = logging.getLogger(__name__)


def new_run_id() -> str:
    return str(ULID()).lower()


def start_or_resume(run_id: str, slice_size: int | None, settings: Settings) -> None:
    settings.require("SEGMENT_ACCESS_TOKEN", "SEGMENT_SPACE_ID")
    if not settings.dry_run:
        settings.require("VOUCHERIFY_APPLICATION_ID", "VOUCHERIFY_SECRET_KEY")
    size = int(slice_size or settings.segment_slice_size)
    space = str(settings.segment_space_id)
    project = str(settings.voucherify_application_id or "dry-run")
    if state.create_run(run_id, size, settings.dry_run, space, project):
        log.info("segment.migrate run=%s started slice_size=%d dry_run=%s", run_id, size,
                 settings.dry_run)
        return
    run = state.get_run(run_id) or {}
    if (run.get("space"), run.get("project")) != (space, project):
        raise ValueError(
            f"run {run_id} migrates Segment space {run.get('space')} into Voucherify "
            f"project {run.get('project')}; the fleet is configured for space {space}, "
            f"project {project}: start a new run instead of resuming this one")
    redo = state.begin_resume(run_id)
    log.info("segment.migrate run=%s resumed: %d slice(s) to redo", run_id, len(redo))
