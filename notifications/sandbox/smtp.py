"""A real SMTP server (aiosmtpd) on the test's own event loop that keeps what it receives."""

from __future__ import annotations

import asyncio
import email
import email.policy
import warnings
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass(frozen=True)
class Delivered:
    """One accepted message: the envelope and the parsed MIME message."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage


@dataclass
class SmtpSandbox:
    """aiosmtpd handler; optional AUTH (PLAIN/LOGIN without TLS, loopback only) and faults."""

    credentials: Mapping[str, str] = field(default_factory=dict)  # empty: no AUTH required
    delivered: list[Delivered] = field(default_factory=list, init=False)
    port: int = field(default=0, init=False)
    _rcpt_replies: deque[str] = field(default_factory=deque, init=False)
    _data_delays: deque[float] = field(default_factory=deque, init=False)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event, init=False)

    def refuse_recipient(self, reply: str, times: int = 1) -> None:
        """Answer the next RCPT TO with `reply`, e.g. '451 4.3.0 Try again later'."""
        self._rcpt_replies.extend([reply] * times)

    def stall_data(self, delay_s: float, times: int = 1) -> None:
        """Hold the reply to the next DATA for `delay_s` seconds."""
        self._data_delays.extend([delay_s] * times)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str,
        rcpt_options: list[str],
    ) -> str:
        """aiosmtpd hook: accept the recipient unless a refusal is queued."""
        if self._rcpt_replies:
            return self._rcpt_replies.popleft()
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """aiosmtpd hook: parse and keep the message."""
        if self._data_delays:
            with suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._data_delays.popleft())
        raw = envelope.original_content or b""
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.delivered.append(Delivered(str(envelope.mail_from), tuple(envelope.rcpt_tos), parsed))
        return "250 Message accepted for delivery"

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope,
                      mechanism: str, auth_data: Any) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user, password = auth_data.login.decode(), auth_data.password.decode()
        return AuthResult(success=self.credentials.get(user) == password, handled=False)

    def _protocol(self) -> SMTP:
        if not self.credentials:
            return SMTP(self, hostname="sandbox.invalid")
        with warnings.catch_warnings():
            # AUTH without TLS is what aiosmtpd warns about; acceptable for a loopback sandbox.
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS", UserWarning)
            return SMTP(self, hostname="sandbox.invalid", authenticator=self._authenticate,
                        auth_required=True, auth_require_tls=False)

    @asynccontextmanager
    async def running(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[int]:
        """Serve on host:port (0: a free port); yields the bound port, also kept in `self.port`."""
        loop = asyncio.get_running_loop()
        server = await loop.create_server(self._protocol, host, port)
        self.port = server.sockets[0].getsockname()[1]
        self._stopping.clear()
        try:
            yield self.port
        finally:
            self._stopping.set()
            server.close()
            await server.wait_closed()
