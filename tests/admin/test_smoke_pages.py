"""Every page renders for a signed-in owner."""

from __future__ import annotations

from tests.admin.conftest import sign_in


async def test_owner_sees_every_page(client, world):
    await sign_in(client, "owner")
    for path in ("/admin/", f"/admin/sites/{world.a.site}/rooms", f"/admin/rooms/{world.a.room}",
                 f"/admin/rooms/{world.a.vacant_room}", "/admin/audit", "/admin/users",
                 f"/admin/sites/{world.a.site}/tariffs", f"/admin/sites/{world.a.site}/orders",
                 f"/admin/orders/{world.a.order}/receipt", f"/admin/meters/{world.a.meter}/relay?action=off"):
        resp = await client.get(path)
        assert resp.status == 200, (path, await resp.text())
