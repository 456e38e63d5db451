"""Binding a WeChat user to their rooms: by phone plus an SMS code, or by room plus the phone's last 4 digits."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from services.tenant import DbTenantPort
from services.uow import in_transaction
from store.models import AuditEntry, BindChallenge, Tenant, TenantLink
from tests.tenant.seed import OTHER_PHONE, PHONE, Clock, Seeded, make_port

OPENID = "o-han"


async def test_binding_by_phone_and_code_binds_every_open_account_of_that_phone(port, seeded: Seeded):
    assert await port.start_binding_by_phone(OPENID, "+86 138 0013 8000") == "code_sent"
    assert seeded.sms == [(PHONE, "246810")]
    result = await port.confirm_binding(OPENID, "246810")
    assert result.status == "bound"
    assert {r.account_id for r in result.rooms} == {str(seeded.account_id), str(seeded.other_site_account_id)}
    assert {r.site_name for r in result.rooms} == {"阳光公寓", "学生公寓"}


async def test_the_code_is_stored_only_as_a_hash(sessions, port):
    await port.start_binding_by_phone(OPENID, PHONE)
    [row] = await in_transaction(sessions, lambda s: _all(s, BindChallenge))
    assert "246810" not in row.code_hash and len(row.code_hash) == 64


async def _all(s, model):
    return list(await s.scalars(select(model)))


async def test_a_wrong_code_keeps_the_challenge_open(port):
    await port.start_binding_by_phone(OPENID, PHONE)
    assert (await port.confirm_binding(OPENID, "000000")).status == "bad_code"
    assert (await port.confirm_binding(OPENID, "246810")).status == "bound"


async def test_five_wrong_codes_use_up_the_challenge(port):
    await port.start_binding_by_phone(OPENID, PHONE)
    for _ in range(5):
        assert (await port.confirm_binding(OPENID, "000000")).status == "bad_code"
    assert (await port.confirm_binding(OPENID, "246810")).status == "expired"
    assert (await port.confirm_binding(OPENID, "246810")).status == "no_pending"


async def test_a_code_expires_after_ten_minutes(port, clock: Clock):
    await port.start_binding_by_phone(OPENID, PHONE)
    clock.advance(timedelta(minutes=10, seconds=1))
    assert (await port.confirm_binding(OPENID, "246810")).status == "expired"


async def test_a_code_without_a_request_is_not_pending(port):
    assert (await port.confirm_binding(OPENID, "246810")).status == "no_pending"


async def test_a_code_belongs_to_the_user_who_asked_for_it(port):
    await port.start_binding_by_phone(OPENID, PHONE)
    assert (await port.confirm_binding("o-thief", "246810")).status == "no_pending"


async def test_an_unknown_phone_gets_no_code(port, seeded: Seeded):
    assert await port.start_binding_by_phone(OPENID, "13700000000") == "unknown_phone"
    assert seeded.sms == []


async def test_codes_per_phone_are_throttled(port, seeded: Seeded, clock: Clock):
    for _ in range(5):
        assert await port.start_binding_by_phone(OPENID, PHONE) == "code_sent"
    assert await port.start_binding_by_phone(OPENID, PHONE) == "too_many_requests"
    assert len(seeded.sms) == 5
    clock.advance(timedelta(hours=1, seconds=1))
    assert await port.start_binding_by_phone(OPENID, PHONE) == "code_sent"


async def test_a_new_code_replaces_the_previous_one(sessions, seeded: Seeded, clock: Clock):
    first = make_port(sessions, seeded, clock, code="111111")
    await first.start_binding_by_phone(OPENID, PHONE)
    second = make_port(sessions, seeded, clock, code="222222")
    await second.start_binding_by_phone(OPENID, PHONE)
    assert (await second.confirm_binding(OPENID, "111111")).status == "bad_code"
    assert (await second.confirm_binding(OPENID, "222222")).status == "bound"


async def test_binding_twice_keeps_one_link_and_marks_the_tenant(sessions, port):
    for _ in range(2):
        await port.start_binding_by_phone(OPENID, PHONE)
        await port.confirm_binding(OPENID, "246810")
    links = await in_transaction(sessions, lambda s: _all(s, TenantLink))
    assert len(links) == 2  # two accounts of that phone, each once
    tenants = await in_transaction(sessions, lambda s: _all(s, Tenant))
    assert {t.wechat_openid for t in tenants if t.phone == PHONE} == {OPENID}
    audits = await in_transaction(sessions, lambda s: _all(s, AuditEntry))
    assert sorted(a.action for a in audits if a.action.startswith("tenant.")) == ["tenant.bind", "tenant.bind"]


async def test_binding_by_room_and_last_four_digits_where_the_site_allows_it(port, seeded: Seeded):
    result = await port.bind_by_room(OPENID, "学生公寓", "202", OTHER_PHONE[-4:])
    assert result.status == "bound"
    assert [r.account_id for r in result.rooms] == [str(seeded.room_account_id)]
    assert (await port.bind_by_room("o-2", "s2", "202", OTHER_PHONE[-4:])).status == "bound"  # by site code
    assert (await port.bind_by_room("o-3", "A", "202", OTHER_PHONE[-4:])).status == "bound"  # by building


async def test_binding_by_room_with_wrong_digits_is_no_match(port):
    assert (await port.bind_by_room(OPENID, "学生公寓", "202", "0000")).status == "no_match"
    assert (await port.bind_by_room(OPENID, "学生公寓", "999", OTHER_PHONE[-4:])).status == "no_match"
    assert await port.bindings(OPENID) == []


async def test_binding_by_room_is_refused_where_the_site_does_not_allow_it(port):
    assert (await port.bind_by_room(OPENID, "阳光公寓", "101", PHONE[-4:])).status == "not_allowed"


async def test_guessing_the_last_four_digits_is_throttled(port):
    for guess in range(10):
        assert (await port.bind_by_room(OPENID, "学生公寓", "202", f"{guess:04d}")).status == "no_match"
    assert (await port.bind_by_room(OPENID, "学生公寓", "202", OTHER_PHONE[-4:])).status == "no_match"


async def test_unbinding_clears_the_tenants_openid(sessions, port: DbTenantPort, seeded: Seeded):
    await port.bind_by_room(OPENID, "学生公寓", "202", OTHER_PHONE[-4:])
    assert await port.unbind(OPENID, str(seeded.room_account_id))
    count = await in_transaction(sessions, lambda s: s.scalar(
        select(func.count()).select_from(Tenant).where(Tenant.wechat_openid == OPENID)))
    assert count == 0
