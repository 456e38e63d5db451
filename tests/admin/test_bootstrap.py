"""The demo gets one owner over every site, once; its password is hashed like any other."""

from __future__ import annotations

from sqlalchemy import select

from admin.bootstrap import ensure_demo_owner
from services.staff import authenticate
from store.models import User


async def test_the_demo_owner_is_created_once_and_can_sign_in(sessions, world):
    assert await ensure_demo_owner(sessions) is True
    assert await ensure_demo_owner(sessions) is False
    async with sessions() as s, s.begin():
        staff = await authenticate(s, "admin", "admin")
        assert staff.role == "owner" and set(staff.site_ids) == {world.a.site, world.b.site}
        assert (await s.scalar(select(User.password_hash).where(User.username == "admin"))).startswith("$argon2")
