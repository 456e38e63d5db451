"""The pay page over HTTP: only signed links open it; bad input re-shows the form; status is JSON."""

from __future__ import annotations

from services.tenant import pay_signature
from tests.tenant.conftest import Api
from tests.tenant.seed import SECRET


async def test_only_a_signed_link_opens_the_pay_page_and_its_status(api: Api):
    acc = api.seeded.account_id
    for query in [{"account": str(acc), "sig": "0" * 24}, {"account": "x", "sig": ""}, {}]:
        assert (await api.client.get("/pay/", params=query)).status == 403
    forged = await api.client.get("/pay/status", params={"account": str(acc), "sig": "bad", "order": "R1"})
    assert forged.status == 403 and "error" in await forged.json()
    page = await api.client.get("/pay/", params={"account": str(acc), "sig": pay_signature(SECRET, acc),
                                                 "amount": "50.00"})
    text = await page.text()
    assert page.status == 200 and "阳光公寓 A101" in text and 'value="50.00"' in text


async def test_a_bad_amount_or_method_re_shows_the_form_and_starts_nothing(api: Api):
    acc = api.seeded.account_id
    base = {"account": str(acc), "sig": pay_signature(SECRET, acc)}
    for form in [base | {"amount": "0", "channel": "alipay_wap"}, base | {"amount": "1e9", "channel": "alipay_wap"},
                 base | {"amount": "50", "channel": "paypal"}]:
        resp = await api.client.post("/pay/", data=form, allow_redirects=False)
        assert resp.status == 400 and 'class="error"' in await resp.text()
    assert api.starter.started == []


async def test_paying_redirects_to_alipay_and_the_status_turns_credited(api: Api):
    acc = api.seeded.account_id
    sig = pay_signature(SECRET, acc)
    resp = await api.client.post("/pay/", data={"account": str(acc), "sig": sig, "amount": "30",
                                                "channel": "alipay_wap"}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"].startswith("http://pay.test/pay/result?")
    await api.starter.settle()
    order = resp.headers["Location"].rsplit("out_trade_no=", 1)[1]  # as Alipay appends it
    status = await (await api.client.get("/pay/status", params={"account": str(acc), "sig": sig,
                                                                "order": order})).json()
    assert status == {"state": "credited", "credited": True, "failed": False, "balance": "121.00",
                      "balance_fen": 12100}
