"""Structured, secret-free logs: `key=value` lines, every configured credential masked."""

from __future__ import annotations

import logging

from worker.settings import get_settings

MASK = "***"


class RedactSecrets(logging.Filter):
    """Masks every configured credential wherever it appears in a record."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if len(s) >= 4]

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            for secret in self.secrets:
                message = message.replace(secret, MASK)
            record.msg, record.args = message, None
        return True


FORMAT = "ts=%(asctime)s level=%(levelname)s logger=%(name)s %(processName)s msg=%(message)s"


def configure(logger: logging.Logger | None = None) -> None:
    """Attach the redaction filter and the key=value format to every handler."""
    settings = get_settings()
    target = logger or logging.getLogger()
    redact = RedactSecrets(settings.secret_values())
    for handler in target.handlers or logging.getLogger().handlers:
        handler.addFilter(redact)
        handler.setFormatter(logging.Formatter(FORMAT))
