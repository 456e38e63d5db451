"""Commands to a 4G MQTT gateway through the real Mosquitto: queued while it is away, each applied exactly once."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass

import aiomqtt
import pytest
from sqlalchemy import func, select

from billing.money import Money
from devices.errors import MeterRejected, MeterTimeout
from devices.mqtt import QOS, Topics
from devices.mqtt_driver import MqttDriver
from devices.profiles import ACREL_DDSY1352
from devices.sim.meter import SimClock, SimMeter
from devices.sim.mqtt_gateway import SimMqttGateway
from devices.sim.mqtt_ops import apply_command
from services import ledger, meter_credit, relay
from services.meter_mqtt import broker_address
from services.meter_mqtt_commands import MqttCommandOptions, MqttCommandRuntime
from services.uow import in_transaction
from services.wallets import balance
from store.models import AuditEntry, LedgerTransaction, Meter, MeterCommand
from tests.conftest import need_service
from tests.integration.conftest import build_site, eventually

MQTT_URL = os.environ.get("TEST_MQTT_URL", "mqtt://127.0.0.1:1883")
HOST, PORT, _, _ = broker_address(MQTT_URL)
FAST = MqttCommandOptions(interval_s=0.05, request_timeout_s=0.5, backoff_s=0.1, backoff_max_s=0.3)
pytestmark = pytest.mark.mqtt


@dataclass
class LossyGateway(SimMqttGateway):
    """The simulated DTU; the acks of its first `lose_write_acks` writes vanish after the meter applied them."""

    lose_write_acks: int = 0
    acks_lost: int = 0

    async def _commands(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            cmd = json.loads(bytes(message.payload))  # type: ignore[arg-type]
            ack = apply_command(self.code, self.meters, cmd)
            if cmd["op"] in ("set_relay", "push_credit") and self.acks_lost < self.lose_write_acks:
                self.acks_lost += 1
                continue
            await client.publish(self.topics.ack(self.code), json.dumps(ack).encode(), qos=QOS)


@pytest.fixture
async def broker_up() -> None:
    try:
        async with aiomqtt.Client(HOST, PORT, identifier=f"probe-{uuid.uuid4().hex[:8]}"):
            pass
    except aiomqtt.MqttError as ex:
        need_service("Mosquitto", str(ex))


async def _commands(sessions) -> list[MeterCommand]:
    async with sessions() as s:
        return list(await s.scalars(select(MeterCommand).order_by(MeterCommand.id)))


async def test_a_relay_command_and_a_credit_queued_while_the_mqtt_gateway_is_offline_each_land_exactly_once(
        sessions, broker_up):
    run = uuid.uuid4().hex[:10]
    topics = Topics(f"test-{run}")
    site = await build_site(sessions, {"1": {}, "2": {"billing_side": "meter", "meter_balance_fen": 500}},
                            gateway_protocol="mqtt", gateway_code=f"4g-{run}")
    clock = SimClock()
    meters = {"1": SimMeter("1", "acrel_ddsy1352", clock, meter_billing=False),
              "2": SimMeter("2", "acrel_ddsy1352", clock, balance_fen=500)}
    gateway = LossyGateway(site.gateway, meters, topics, HOST, PORT, interval_s=0.2, online=False, lose_write_acks=2)
    runtime = MqttCommandRuntime(sessions, MQTT_URL, topics, FAST, identifier=f"cmd-{run}")
    gateway.start()
    runtime.start()
    try:
        async def queue(s):
            await relay.queue_command(s, site.meters["1"], "relay_open", "staff-off:1", reason="unpaid fees",
                                      actor="staff:alice")
            await meter_credit.sell_credit(s, site.accounts["2"], site.meters["2"], Money(30_00), "pay-2-1")

        await in_transaction(sessions, queue)
        await eventually(lambda: _all_tried(sessions, 2))
        assert {c.state for c in await _commands(sessions)} == {"queued"}  # nothing confirmed while away
        assert meters["1"].writes == meters["2"].writes == 0

        gateway.set_online(True)  # each write lands, but its ack is lost: the retry must read back, not re-send
        await eventually(lambda: _all_in(sessions, "confirmed"))
        assert gateway.acks_lost == 2
        assert (meters["1"].relay_closed, meters["1"].relay_writes, meters["1"].writes) == (False, 1, 1)
        assert meters["2"].credits_applied == [(1, 30_00)] and meters["2"].writes == 1

        again = await in_transaction(sessions, lambda s: meter_credit.sell_credit(  # the same payment, notified twice
            s, site.accounts["2"], site.meters["2"], Money(30_00), "pay-2-1"))
        assert await runtime.run_due() == [] and again.state == "confirmed"
    finally:
        await runtime.stop()
        await gateway.stop()

    assert (meters["1"].writes, meters["2"].writes) == (1, 1)
    for c in await _commands(sessions):
        assert c.sent_at is not None and c.confirmed_at is not None and c.attempts >= 3
    async with sessions() as s:
        m1, m2 = await s.get(Meter, site.meters["1"]), await s.get(Meter, site.meters["2"])
        assert (m1.relay_closed, m2.purchase_count) == (False, 1)
        credits = list(await s.scalars(select(LedgerTransaction).where(LedgerTransaction.kind == "meter_credit")))
        assert len(credits) == 1
        assert await ledger.balance_of(s, site.site_id, meter_credit.pending_code(site.meters["2"])) == Money(0)
        assert (await balance(s, site.accounts["2"])).total == Money(100_00)  # the 30.00 went into the meter
        audits = await s.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "meter_command.confirmed"))
        assert audits == 2
        assert (await ledger.verify(s)).ok


async def test_reads_and_price_and_clock_travel_as_request_and_reply_over_mqtt(sessions, broker_up):
    run = uuid.uuid4().hex[:10]
    topics = Topics(f"test-{run}")
    site = await build_site(sessions, {"1": {}}, gateway_protocol="mqtt", gateway_code=f"4g-{run}", credit_fen=0)
    meter = SimMeter("1", "acrel_ddsy1352", SimClock(), meter_billing=False, clock_offset_s=-600)
    gateway = SimMqttGateway(site.gateway, {"1": meter}, topics, HOST, PORT, interval_s=5)
    runtime = MqttCommandRuntime(sessions, MQTT_URL, topics, FAST, identifier=f"cmd-{run}")
    gateway.start()
    runtime.start()
    try:
        async def queue(s):
            await relay.queue_command(s, site.meters["1"], "set_price", "price-1", params={"price_e4": 8500})
            await relay.queue_command(s, site.meters["1"], "time_sync", "clock-1")

        await in_transaction(sessions, queue)
        await eventually(lambda: _all_in(sessions, "confirmed"))
        driver = MqttDriver(runtime.link, site.gateway, timeout_s=2.0)
        sample = await driver.read("1", ACREL_DDSY1352)
        assert (sample.gateway, sample.address, sample.relay_closed, sample.purchase_count) == (site.gateway, "1", True, 0)
        assert (await driver.read_price("1"), await driver.read_relay("1")) == (8500, True)
        with pytest.raises(MeterRejected):
            await driver.push_credit("1", 10_00, 5)  # a skipped purchase counter is refused by the meter
        with pytest.raises(MeterTimeout):
            await driver.read_relay("9")  # no such meter behind the gateway: worth retrying, not a refusal
    finally:
        await runtime.stop()
        await gateway.stop()
    assert meter.price_e4 == 8500 and abs(meter.clock_offset_s) < 5


async def _all_tried(sessions, attempts: int) -> bool:
    return all(c.attempts >= attempts for c in await _commands(sessions))


async def _all_in(sessions, state: str) -> bool:
    return {c.state for c in await _commands(sessions)} == {state}
