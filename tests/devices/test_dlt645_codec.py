"""DL/T 645-2007 codec on hand-checked frames (hex in, decoded values out) and fuzzed garbage."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices import dlt645
from devices.dlt645_items import ENERGY_BLOCK, ITEMS, decode_block
from devices.errors import FrameError, MeterRejected

ADDR = "123456789012"  # on the wire: 12 90 78 56 34 12 (low byte first)
PASSWORD, OPERATOR = bytes.fromhex("02000000"), bytes.fromhex("00000000")


def hx(text: str) -> bytes:
    return bytes.fromhex(text)


def test_broadcast_read_address_frame_matches_the_standard_example():
    # 68 AAAAAAAAAAAA 68 13 00 DF 16: the read-address example every DL/T 645 manual prints
    assert dlt645.encode_frame(dlt645.Frame("aaaaaaaaaaaa", 0x13), preamble=False) == hx("68 aa aa aa aa aa aa 68 13 00 df 16")


def test_read_total_forward_energy_request_encodes_di_low_byte_first_plus_33():
    frame = dlt645.read_request(ADDR, 0x00010000)
    # DI 00 01 00 00 -> 00 00 01 00 -> +33 -> 33 33 34 33; CS = sum(68..33) mod 256 = 68
    assert dlt645.encode_frame(frame) == hx("fe fe fe fe 68 12 90 78 56 34 12 68 11 04 33 33 34 33 68 16")


def test_read_reply_decodes_to_1234_56_kwh():
    reply = dlt645.decode_frame(hx("68 12 90 78 56 34 12 68 91 08 33 33 34 33 89 67 45 33 54 16"))
    assert (reply.address, reply.control, reply.is_reply, reply.is_abnormal) == (ADDR, 0x91, True, False)
    assert reply.data[:4] == hx("00 00 01 00")
    assert ITEMS[0x00010000].decode(reply.data[4:]) == Decimal("1234.56")


def test_voltage_and_signed_current_replies_decode():
    volts = dlt645.decode_frame(hx("68 12 90 78 56 34 12 68 91 06 33 34 34 35 34 55 76 16"))
    amps = dlt645.decode_frame(hx("68 12 90 78 56 34 12 68 91 07 33 34 35 35 33 48 b3 1d 16"))
    assert ITEMS[0x02010100].decode(volts.data[4:]) == Decimal("220.1")
    assert ITEMS[0x02020100].decode(amps.data[4:]) == Decimal("-1.500")  # sign bit of the top byte


def test_abnormal_reply_raises_meter_rejected_with_its_error_byte():
    request = dlt645.read_request(ADDR, 0x00010000)
    reply = dlt645.decode_frame(hx("68 12 90 78 56 34 12 68 d1 01 35 8d 16"))  # D1 = 91 | bit 6, ERR 02
    with pytest.raises(MeterRejected, match="no data requested") as info:
        dlt645.check_reply(reply, request)
    assert info.value.code == 0x02


def test_broadcast_time_sync_frame_carries_ssmmhhddmmyy():
    frame = dlt645.time_sync_request(datetime(2024, 3, 15, 14, 30, 5))
    assert dlt645.encode_frame(frame, preamble=False) == hx("68 99 99 99 99 99 99 68 08 06 38 63 47 48 36 57 2b 16")


def test_relay_trip_frame_carries_password_operator_1a_and_validity():
    frame = dlt645.relay_request(ADDR, dlt645.RELAY_TRIP, datetime(2024, 3, 15, 15, 0, 0), PASSWORD, OPERATOR)
    wire = hx("68 12 90 78 56 34 12 68 1c 10 35 33 33 33 33 33 33 33 4d 33 33 33 48 48 36 57 4f 16")
    assert dlt645.encode_frame(frame, preamble=False) == wire
    decoded = dlt645.decode_frame(wire)
    assert decoded.data[8] == 0x1A and dlt645.decode_datetime(decoded.data[10:]) == datetime(2024, 3, 15, 15)


def test_write_price_frame_round_trips():
    wire = hx("68 12 90 78 56 34 12 68 14 10 34 34 38 37 35 33 33 33 33 33 33 33 b3 8b 33 33 bf 16")
    frame = dlt645.decode_frame(wire)
    assert frame.function == dlt645.WRITE_DATA and frame.data[:4] == (0x04050101).to_bytes(4, "little")
    assert ITEMS[0x04050101].decode(frame.data[12:]) == Decimal("0.5880")


def test_energy_block_splits_into_total_and_four_rates():
    raw = b"".join(ITEMS[0x00010000].encode(Decimal(v)) for v in ("100.00", "10.00", "40.00", "30.00", "20.00"))
    values = decode_block(raw)
    assert list(values.values()) == [Decimal("100.00"), Decimal("10.00"), Decimal("40.00"), Decimal("30.00"), Decimal("20.00")]
    assert ENERGY_BLOCK == 0x0001FF00


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        ("68 12 90 78 56 34 12 68 11 04 33 33 34 33 69 16", "checksum"),
        ("68 12 90 78 56 34 12 68 11 05 33 33 34 33 68 16", "length"),
        ("68 12 90 78 56 34 12 68 11 04 33 33 34 33 68 17", "end byte"),
        ("68 12 90 78 56 34", "too short"),
        ("00 11 22 33 44 55 66 77 88 99 aa bb", "start"),
    ],
)
def test_decoder_rejects_bad_frames_with_a_clear_error(wire, reason):
    with pytest.raises(FrameError, match=reason):
        dlt645.decode_frame(hx(wire))


def test_stream_decoder_resynchronises_after_garbage_and_a_broken_frame():
    good = dlt645.encode_frame(dlt645.read_request(ADDR, 0x00010000))
    broken = bytearray(good)
    broken[-2] ^= 0xFF
    decoder = dlt645.StreamDecoder()
    items = decoder.feed(b"\x00\x68\x01garbage" + bytes(broken) + good[:7]) + decoder.feed(good[7:])
    frames = [i for i in items if isinstance(i, dlt645.Frame)]
    assert frames == [dlt645.read_request(ADDR, 0x00010000)]
    assert any(isinstance(i, FrameError) for i in items)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzzed_bytes_never_raise_anything_but_frame_error(garbage):
    try:
        dlt645.decode_frame(garbage)
    except FrameError:
        pass
    items = dlt645.StreamDecoder().feed(garbage)
    assert all(isinstance(i, (dlt645.Frame, FrameError)) for i in items)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120), st.integers(0, 0xFFFFFFFF))
def test_a_valid_frame_after_garbage_is_always_found(garbage, di):
    request = dlt645.read_request(ADDR, di)
    items = dlt645.StreamDecoder().feed(garbage + dlt645.encode_frame(request))
    assert request in items
