"""The mobile pay page in headless chromium at phone size: pay, wait for the credit, see the new balance."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.tenant import pay_signature
from tests.tenant.live import live_tenant_server
from tests.tenant.seed import SECRET
from tests.conftest import need_service

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
SHOTS = Path("test-output/screenshots")
WECHAT_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
             "Mobile/15E148 MicroMessenger/8.0.47(0x18002f2f) NetType/WIFI Language/zh_CN")
# WeChat's JS bridge as the pay page meets it inside WeChat: the payment sheet answers "ok".
BRIDGE = """window.WeixinJSBridge = { invoke(name, params, cb) {
  window.__wxpay = {name, params}; setTimeout(() => cb({err_msg: 'get_brand_wcpay_request:ok'}), 50); } };"""


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        need_service("Chromium", "Debian chromium is not installed at /usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


def _phone(browser, **kw):  # type: ignore[no-untyped-def]
    return browser.new_context(viewport={"width": 375, "height": 667}, device_scale_factor=2, is_mobile=True,
                               has_touch=True, locale="zh-CN", **kw)


def test_alipay_on_a_phone_reaches_the_new_balance(browser, tmp_path):
    with live_tenant_server(tmp_path / "pay.db", "o-han", pay_after_s=1.0) as (url, seeded):
        context = _phone(browser)
        page = context.new_page()
        sig = pay_signature(SECRET, seeded.account_id)
        page.goto(f"{url}/pay/?account={seeded.account_id}&sig={sig}")
        assert page.locator("#room").inner_text() == "阳光公寓 A101"
        assert page.locator("#balance").inner_text() == "91.00"
        page.locator("label[data-amount='50.00']").click()
        assert page.locator("#amount").input_value() == "50.00"
        assert page.locator("input[value=alipay_wap]").is_checked()  # not inside WeChat
        assert page.evaluate("document.documentElement.scrollWidth") <= 375  # no sideways scrolling
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "pay_page.png"), full_page=True)
        page.locator("#submit").click()
        page.wait_for_url("**/pay/result?**")
        assert page.locator("#state").inner_text() == "正在确认支付结果…"  # the credit comes 1 s later
        page.wait_for_selector("body[data-done=credited]", timeout=15_000)
        assert page.locator("#state").inner_text() == "充值成功"
        assert page.locator("#balance").inner_text() == "141.00"
        page.screenshot(path=str(SHOTS / "pay_result.png"), full_page=True)
        context.close()


def test_wechat_pay_inside_wechat_logs_in_by_oauth_and_pays_through_the_js_bridge(browser, tmp_path):
    with live_tenant_server(tmp_path / "pay.db", "o-han", pay_after_s=0.5) as (url, seeded):
        context = _phone(browser, user_agent=WECHAT_UA)
        context.add_init_script(BRIDGE)
        page = context.new_page()
        sig = pay_signature(SECRET, seeded.account_id)
        form = f"/pay/?account={seeded.account_id}&sig={sig}&amount=20.00"
        # WeChat's OAuth sends the phone back with a code; the page swaps it for the payer's openid
        page.goto(f"{url}/pay/oauth?code=code-han&state={form.replace('&', '%26').replace('?', '%3F')}")
        assert page.locator("#amount").input_value() == "20.00"
        assert page.locator("input[value=wechatpay_jsapi]").is_checked()
        page.locator("#amount").fill("abc")
        page.locator("#submit").click()
        assert "请输入" in page.locator("#error").inner_text()  # a bad amount re-shows the form
        page.locator("#amount").fill("20")
        page.locator("#submit").click()
        page.wait_for_url("**/pay/result?**")
        page.wait_for_selector("body[data-done=credited]", timeout=15_000)
        assert page.locator("#balance").inner_text() == "111.00"
        context.close()
