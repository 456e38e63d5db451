"""The signed push webhook: the channel, the receiver check, and the local receiver."""

from __future__ import annotations

import json
import time

import pytest

from notifications.sandbox.server import Fault
from notifications.sandbox.webhook import WebhookSandbox
from notifications.webhook import WebhookConfig, WebhookPush, signature, verify_webhook

SECRET = "push-shared-secret"


@pytest.fixture
async def receiver():
    box = WebhookSandbox(secret=SECRET)
    async with box.running():
        yield box


def channel(http, receiver, secret=SECRET, clock=time.time, timeout_s=5.0):
    return WebhookPush(http, WebhookConfig(receiver.url + "/push", secret, timeout_s), clock=clock)


async def test_a_push_is_delivered_signed_with_the_documented_headers(http, receiver, message):
    msg, rendered = message(kind="restored", to="device:abc", params={"account": "A-1", "balance": "30.00"})
    result = await channel(http, receiver).send(msg, rendered)
    assert result.ok and result.provider_id == "push-1"
    (got,) = receiver.delivered
    body = json.loads(got.body)
    assert body["key"] == msg.key and body["kind"] == "restored" and body["to"] == "device:abc"
    assert body["text"] == rendered.text and body["params"] == {"account": "A-1", "balance": "30.00"}
    assert got.headers["X-Meterpay-Idempotency-Key"] == msg.key
    expected = signature(SECRET, got.headers["X-Meterpay-Timestamp"], got.body)
    assert got.headers["X-Meterpay-Signature"] == expected and expected.startswith("v1=")


async def test_a_push_signed_with_a_wrong_secret_is_refused_permanently(http, receiver, message):
    result = await channel(http, receiver, secret="wrong").send(*message())
    assert not result.ok and result.retryable is False and "401" in (result.error or "")
    assert receiver.delivered == []


async def test_a_push_signed_ten_minutes_ago_is_refused(http, receiver, message):
    result = await channel(http, receiver, clock=lambda: time.time() - 600).send(*message())
    assert not result.ok and receiver.rejected[0].error == "bad signature"


async def test_the_same_key_twice_is_acted_on_once_by_the_receiver(http, receiver, message):
    push = channel(http, receiver)
    first, second = await push.send(*message()), await push.send(*message())
    assert first.provider_id == second.provider_id == "push-1"
    assert len(receiver.delivered) == 1


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (503, True), (429, True), (408, True),
                                                    (400, False), (410, False)])
async def test_receiver_statuses_say_whether_a_retry_may_help(http, receiver, message, status, retryable):
    receiver.fail(Fault(status=status))
    result = await channel(http, receiver).send(*message())
    assert not result.ok and result.retryable is retryable


async def test_a_slow_receiver_is_a_retryable_failure(http, receiver, message):
    receiver.fail(Fault(delay_s=5.0))
    result = await channel(http, receiver, timeout_s=0.2).send(*message())
    assert not result.ok and result.retryable


def test_verify_webhook_accepts_a_fresh_correct_signature():
    body = b'{"key":"k"}'
    assert verify_webhook(SECRET, "1700000000", signature(SECRET, "1700000000", body), body, now=1700000100)


def test_verify_webhook_refuses_a_changed_body_a_stale_timestamp_and_junk():
    body = b'{"key":"k"}'
    good = signature(SECRET, "1700000000", body)
    assert not verify_webhook(SECRET, "1700000000", good, b'{"key":"x"}', now=1700000000)
    assert not verify_webhook(SECRET, "1700000000", good, body, now=1700000301)
    assert not verify_webhook(SECRET, "1700000001", good, body, now=1700000000)
    assert not verify_webhook(SECRET, "yesterday", good, body, now=1700000000)
    assert not verify_webhook(SECRET, "1700000000", "", body, now=1700000000)


def test_verify_webhook_accepts_any_listed_signature_during_key_rotation():
    body = b"{}"
    header = f"{signature('old-secret', '1700000000', body)}, {signature(SECRET, '1700000000', body)}"
    assert verify_webhook(SECRET, "1700000000", header, body, now=1700000000)
