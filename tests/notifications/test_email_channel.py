"""The e-mail channel delivering to a real SMTP server (aiosmtpd) on the test's loop."""

from __future__ import annotations

import pytest

from notifications.email import SmtpConfig, SmtpEmail, message_id
from notifications.sandbox.smtp import SmtpSandbox

SENDER = "meterpay <noreply@example.com>"


@pytest.fixture
async def smtp():
    server = SmtpSandbox(credentials={"mailer": "mail-pass"})
    async with server.running():
        yield server


def channel(port, password="mail-pass", timeout_s=5.0):
    return SmtpEmail(SmtpConfig("127.0.0.1", port, SENDER, username="mailer", password=password,
                                start_tls=False, timeout_s=timeout_s, message_id_domain="mp.example"))


async def test_the_server_receives_a_text_part_and_an_html_part(smtp, message):
    msg, rendered = message(to="tenant@example.com")
    result = await channel(smtp.port).send(msg, rendered)
    assert result.ok
    (got,) = smtp.delivered
    assert got.rcpt_tos == ("tenant@example.com",) and "noreply@example.com" in got.mail_from
    mail = got.message
    assert mail.get_content_type() == "multipart/alternative"
    assert mail["Subject"] == "余额不足警告"
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    assert "A-101" in text and "12.30" in text and "<" not in text
    assert html.startswith("<!doctype html>") and "<p>" in html and "12.30" in html
    assert mail["X-Meterpay-Key"] == msg.key


async def test_english_mail_is_labelled_and_worded_in_english(smtp, message):
    msg, rendered = message(to="tenant@example.com", locale="en-US")
    await channel(smtp.port).send(msg, rendered)
    mail = smtp.delivered[0].message
    assert mail["Subject"] == "Low balance warning" and mail["Content-Language"] == "en"
    assert "Top up now" in mail.get_body(("plain",)).get_content()


async def test_a_retried_mail_carries_the_same_message_id(smtp, message):
    msg, rendered = message(to="tenant@example.com")
    first = await channel(smtp.port).send(msg, rendered)
    second = await channel(smtp.port).send(msg, rendered)
    ids = {d.message["Message-ID"] for d in smtp.delivered}
    assert ids == {message_id(msg.key, "mp.example")} == {first.provider_id, second.provider_id}


async def test_a_wrong_password_is_a_permanent_failure(smtp, message):
    result = await channel(smtp.port, password="wrong").send(*message(to="tenant@example.com"))
    assert not result.ok and result.retryable is False and "535" in (result.error or "")
    assert smtp.delivered == []


@pytest.mark.parametrize(("reply", "retryable"), [
    ("451 4.3.0 Mailbox temporarily unavailable", True),
    ("550 5.1.1 No such user", False),
])
async def test_a_refused_recipient_is_retryable_only_for_4xx(smtp, message, reply, retryable):
    smtp.refuse_recipient(reply)
    result = await channel(smtp.port).send(*message(to="tenant@example.com"))
    assert not result.ok and result.retryable is retryable and smtp.delivered == []


async def test_a_server_slower_than_the_timeout_is_a_retryable_failure(smtp, message):
    smtp.stall_data(5.0)
    result = await channel(smtp.port, timeout_s=0.3).send(*message(to="tenant@example.com"))
    assert not result.ok and result.retryable


async def test_no_server_listening_is_a_retryable_failure(unused_tcp_port, message):
    result = await channel(unused_tcp_port, timeout_s=1.0).send(*message(to="tenant@example.com"))
    assert not result.ok and result.retryable
