"""Answer one tenant intent by asking the port and rendering a reply; no HTTP, no WeChat XML."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from bot import replies
from bot.intents import Intent, Kind, Lang
from bot.port import PortUnavailable, RoomView, TenantPort

log = logging.getLogger(__name__)

Handler = Callable[[TenantPort, str, Intent], Awaitable[str]]


async def _unbound_or(port: TenantPort, openid: str, lang: Lang, empty_key: str) -> str:
    """Empty results mean either no binding (guide the user) or simply no data yet."""
    if not await port.bindings(openid):
        return replies.text("unbound", lang)
    return replies.text(empty_key, lang)


async def _balance(port: TenantPort, openid: str, intent: Intent) -> str:
    views = await port.balance(openid)
    if not views:
        return await _unbound_or(port, openid, intent.lang, "no_data")
    return replies.balance(views, intent.lang)


async def _usage(port: TenantPort, openid: str, intent: Intent) -> str:
    span = intent.span or "month"
    views = await port.usage(openid, span)
    if not views and not await port.bindings(openid):
        return replies.text("unbound", intent.lang)
    return replies.usage(views, span, intent.lang)


async def _recharge(port: TenantPort, openid: str, intent: Intent) -> str:
    rooms = await port.bindings(openid)
    if not rooms:
        return replies.text("unbound", intent.lang)
    links = [(room, port.pay_link(room.account_id, intent.amount)) for room in rooms]
    return replies.pay_links(links, intent.amount, intent.lang)


async def _bills(port: TenantPort, openid: str, intent: Intent) -> str:
    views = await port.bills(openid)
    if not views:
        return await _unbound_or(port, openid, intent.lang, "no_bills")
    return replies.bills(views, intent.lang)


async def _orders(port: TenantPort, openid: str, intent: Intent) -> str:
    views = await port.recent_orders(openid)
    if not views:
        return await _unbound_or(port, openid, intent.lang, "no_orders")
    return replies.orders(views, intent.lang)


async def _bind_help(port: TenantPort, openid: str, intent: Intent) -> str:
    return replies.text("unbound", intent.lang)


async def _bind_phone(port: TenantPort, openid: str, intent: Intent) -> str:
    phone = intent.phone or ""
    status = await port.start_binding_by_phone(openid, phone)
    return replies.bind_started(status, phone, intent.lang)


async def _bind_room(port: TenantPort, openid: str, intent: Intent) -> str:
    result = await port.bind_by_room(
        openid, intent.site or "", intent.room_no or "", intent.phone_last4 or ""
    )
    return replies.bind_result(result, intent.lang)


async def _code(port: TenantPort, openid: str, intent: Intent) -> str:
    return replies.bind_result(await port.confirm_binding(openid, intent.code or ""), intent.lang)


def _matching(rooms: list[RoomView], target: str) -> list[RoomView]:
    squeeze = "".join(target.split()).casefold()
    exact = [r for r in rooms if "".join(r.label.split()).casefold() == squeeze]
    return exact or [r for r in rooms if r.room_no.casefold() == squeeze]


async def _unbind(port: TenantPort, openid: str, intent: Intent) -> str:
    rooms, lang = await port.bindings(openid), intent.lang
    if not rooms:
        return replies.text("unbound", lang)
    chosen = _matching(rooms, intent.target) if intent.target else rooms
    listing = replies.room_list(rooms, lang)
    if not chosen:
        return replies.text("unbind_unknown", lang, target=intent.target, rooms=listing)
    if len(chosen) > 1:
        return replies.text("unbind_which", lang, example=chosen[0].room_no, rooms=listing)
    await port.unbind(openid, chosen[0].account_id)
    return replies.text("unbound_room", lang, room=chosen[0].label)


async def _help(port: TenantPort, openid: str, intent: Intent) -> str:
    return replies.help_text(intent.lang)


async def _subscribe(port: TenantPort, openid: str, intent: Intent) -> str:
    greeting = replies.text("welcome", intent.lang)
    if not await port.bindings(openid):
        return f"{greeting}\n{replies.text('unbound', intent.lang)}"
    return replies.help_text(intent.lang, greeting)


async def _unknown(port: TenantPort, openid: str, intent: Intent) -> str:
    return replies.help_text(intent.lang, replies.text("unknown", intent.lang))


HANDLERS: dict[Kind, Handler] = {
    Kind.BALANCE: _balance,
    Kind.USAGE: _usage,
    Kind.RECHARGE: _recharge,
    Kind.BILLS: _bills,
    Kind.ORDERS: _orders,
    Kind.BIND_HELP: _bind_help,
    Kind.BIND_PHONE: _bind_phone,
    Kind.BIND_ROOM: _bind_room,
    Kind.CODE: _code,
    Kind.UNBIND: _unbind,
    Kind.HELP: _help,
    Kind.SUBSCRIBE: _subscribe,
    Kind.UNKNOWN: _unknown,
}


async def answer(port: TenantPort, openid: str, intent: Intent) -> str | None:
    """The reply text for an intent; None when nothing should be said (e.g. unsubscribe)."""
    handler = HANDLERS.get(intent.kind)
    if handler is None:
        return None
    try:
        return await handler(port, openid, intent)
    except PortUnavailable as ex:
        log.warning("tenant port unavailable for %s: %s", intent.kind, ex)
        return replies.text("busy", intent.lang)
