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

    def mask(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            record.msg, record.args = self.mask(record.getMessage()), None
            # A traceback repeats exception messages (a URL with ?access_token=..., say):
            # format it now, masked; formatters reuse exc_text instead of formatting again.
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = self.mask(record.exc_text)
            if record.stack_info:
                record.stack_info = self.mask(record.stack_info)
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
