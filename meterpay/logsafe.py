"""A logging filter that masks configured secrets wherever they would appear in a log line."""

from __future__ import annotations

import logging

from meterpay.settings import Settings


class RedactSecrets(logging.Filter):
    """Replace every configured secret value in a record's rendered message with ***."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        masked = message
        for secret in self.secrets:
            masked = masked.replace(secret, "***")
        if masked != message:
            record.msg, record.args = masked, None
        return True


def install(settings: Settings) -> RedactSecrets:
    """Attach the filter to every root handler (call once, after logging is configured)."""
    flt = RedactSecrets(settings.secret_values())
    for handler in logging.getLogger().handlers:
        handler.addFilter(flt)
    return flt
