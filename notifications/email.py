"""E-mail over SMTP with aiosmtplib: one multipart/alternative message, plain text and HTML."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate

import aiosmtplib

from notifications.channel import Message, Rendered, SendResult
from notifications.templates import KINDS


@dataclass(frozen=True)
class SmtpConfig:
    """Where and how to submit mail; the password never appears in repr."""

    host: str
    port: int
    sender: str  # "meterpay <noreply@example.com>"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    use_tls: bool = False  # implicit TLS (port 465)
    start_tls: bool | None = None  # None: STARTTLS when the server offers it
    timeout_s: float = 15.0
    message_id_domain: str = "meterpay.invalid"


def message_id(key: str, domain: str) -> str:
    """A Message-ID derived from the idempotency key, so a retried send carries the same id."""
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"


def _smtp_retryable(ex: aiosmtplib.SMTPException) -> bool:
    """4xx replies and lost connections are transient; 5xx replies are permanent."""
    if isinstance(ex, aiosmtplib.SMTPRecipientsRefused):
        return all(400 <= r.code < 500 for r in ex.recipients)
    if isinstance(ex, aiosmtplib.SMTPResponseException):
        return 400 <= ex.code < 500
    return True


class SmtpEmail:
    """Sends every kind (mail needs no provider-approved template)."""

    name = "email"
    provider = "smtp"
    kinds = KINDS

    def __init__(self, config: SmtpConfig) -> None:
        self._config = config

    def build(self, msg: Message, rendered: Rendered) -> EmailMessage:
        """The MIME message: text/plain first, text/html as the preferred alternative."""
        mail = EmailMessage()
        mail["From"] = self._config.sender
        mail["To"] = msg.to
        mail["Subject"] = rendered.subject
        mail["Date"] = formatdate(localtime=False, usegmt=True)
        mail["Message-ID"] = message_id(msg.key, self._config.message_id_domain)
        mail["X-Meterpay-Key"] = msg.key
        mail.set_content(rendered.text)
        mail.add_alternative(rendered.html, subtype="html")
        mail["Content-Language"] = rendered.locale  # after set_content, which drops Content-*
        return mail

    async def send(self, msg: Message, rendered: Rendered) -> SendResult:
        """Submit one message; the provider id is its Message-ID."""
        cfg = self._config
        mail = self.build(msg, rendered)
        try:
            await aiosmtplib.send(
                mail, hostname=cfg.host, port=cfg.port, username=cfg.username,
                password=cfg.password, use_tls=cfg.use_tls, start_tls=cfg.start_tls,
                timeout=cfg.timeout_s,
            )
        except aiosmtplib.SMTPException as ex:
            detail = f"SMTP: {type(ex).__name__}: {ex}"
            return SendResult.failed(detail, retryable=_smtp_retryable(ex))
        except OSError as ex:
            return SendResult.failed(f"SMTP: {type(ex).__name__}: {ex}", retryable=True)
        return SendResult.sent(str(mail["Message-ID"]))
