"""DL/T 645-2007 frame codec: pure functions over bytes, no I/O.

Frame: [FE..] 68 A0..A5 68 C L D0..Dn CS 16 — address 6 BCD bytes low byte first, every data
byte sent +0x33, CS = sum of bytes from the first 68 to the last data byte, mod 256.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from devices.errors import FrameError, MeterRejected

START, END, PREAMBLE = 0x68, 0x16, b"\xfe\xfe\xfe\xfe"
BROADCAST = "999999999999"
MAX_DATA_LEN = 200  # the standard caps L at 200 bytes for replies

# control code function bits (D4..D0); D7 = reply, D6 = abnormal, D5 = more frames follow
TIME_SYNC, READ_DATA, READ_ADDRESS, WRITE_DATA, RELAY_CONTROL = 0x08, 0x11, 0x13, 0x14, 0x1C
REPLY, ABNORMAL, FOLLOWS = 0x80, 0x40, 0x20

# relay control (1C) N1 values, table in clause 7.9 of the standard
RELAY_TRIP, RELAY_ALLOW_CLOSE, RELAY_DIRECT_CLOSE = 0x1A, 0x1B, 0x1C
ALARM_ON, ALARM_OFF, KEEP_POWER, KEEP_POWER_RELEASE = 0x2A, 0x2B, 0x3A, 0x3B

# error byte (ERR) bits of an abnormal reply
ERROR_BITS = {
    0x01: "other error",
    0x02: "no data requested",
    0x04: "password error / unauthorised",
    0x08: "baud rate cannot be changed",
    0x10: "too many year time zones",
    0x20: "too many day periods",
    0x40: "too many rates",
}


@dataclass(frozen=True, slots=True)
class Frame:
    """A decoded frame; `data` is already un-scrambled (-0x33)."""

    address: str
    control: int
    data: bytes = b""

    @property
    def is_reply(self) -> bool:
        return bool(self.control & REPLY)

    @property
    def is_abnormal(self) -> bool:
        return bool(self.control & ABNORMAL)

    @property
    def function(self) -> int:
        return self.control & 0x1F


def bcd_encode(value: int, length: int) -> bytes:
    """Non-negative integer -> `length` BCD bytes, low byte first."""
    digits = f"{value:0{length * 2}d}"
    if len(digits) > length * 2 or value < 0:
        raise ValueError(f"{value} does not fit {length} BCD bytes")
    return bytes(int(digits[i : i + 2], 16) for i in range(0, len(digits), 2))[::-1]


def bcd_decode(raw: bytes) -> int:
    """Low-byte-first BCD -> integer; FrameError on a non-decimal nibble."""
    text = raw[::-1].hex()
    if not text.isdigit():
        raise FrameError(f"not BCD: {raw.hex(' ')}")
    return int(text) if text else 0


def signed_bcd_decode(raw: bytes) -> int:
    """BCD whose top bit of the most significant byte is the sign."""
    negative = bool(raw[-1] & 0x80)
    magnitude = bcd_decode(raw[:-1] + bytes([raw[-1] & 0x7F]))
    return -magnitude if negative else magnitude


def signed_bcd_encode(value: int, length: int) -> bytes:
    raw = bytearray(bcd_encode(abs(value), length))
    if value < 0:
        raw[-1] |= 0x80
    return bytes(raw)


def encode_address(address: str) -> bytes:
    if len(address) != 12 or not address.isdigit():
        raise ValueError(f"DL/T 645 address must be 12 digits, got {address!r}")
    return bcd_encode(int(address), 6)


def decode_address(raw: bytes) -> str:
    text = raw[::-1].hex()
    if not (text.isdigit() or set(text) == {"a"}):  # AA..AA is the wildcard address
        raise FrameError(f"bad address bytes {raw.hex(' ')}")
    return text


def scramble(data: bytes) -> bytes:
    return bytes((b + 0x33) & 0xFF for b in data)


def unscramble(data: bytes) -> bytes:
    return bytes((b - 0x33) & 0xFF for b in data)


def checksum(body: bytes) -> int:
    return sum(body) & 0xFF


def encode_frame(frame: Frame, preamble: bool = True) -> bytes:
    """Frame -> wire bytes (with the FE wake-up preamble unless told otherwise)."""
    if len(frame.data) > MAX_DATA_LEN:
        raise ValueError("data longer than 200 bytes")
    addr = bytes.fromhex("aa" * 6) if frame.address == "aaaaaaaaaaaa" else encode_address(frame.address)
    body = bytes([START]) + addr + bytes([START, frame.control, len(frame.data)]) + scramble(frame.data)
    return (PREAMBLE if preamble else b"") + body + bytes([checksum(body), END])


def decode_frame(raw: bytes) -> Frame:
    """Exactly one frame (preamble allowed) -> Frame; anything else raises FrameError."""
    body = raw.lstrip(b"\xfe")
    if len(body) < 12:
        raise FrameError(f"frame too short ({len(body)} bytes)")
    if body[0] != START or body[7] != START:
        raise FrameError("missing 68 start bytes")
    length = body[9]
    if length > MAX_DATA_LEN or len(body) != 12 + length:
        raise FrameError(f"length byte {length} does not match frame size {len(body)}")
    if body[-1] != END:
        raise FrameError("missing 16 end byte")
    if checksum(body[:-2]) != body[-2]:
        raise FrameError(f"bad checksum {body[-2]:02x}, expected {checksum(body[:-2]):02x}")
    return Frame(decode_address(body[1:7]), body[8], unscramble(body[10:-2]))


class StreamDecoder:
    """Cuts frames out of a byte stream; garbage is reported as FrameError and skipped."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Frame | FrameError]:
        """Add bytes; return complete frames and errors for discarded bytes, in stream order."""
        self._buf += data
        out: list[Frame | FrameError] = []
        while True:
            found = self._next_frame()
            if found is None:
                break
            skipped, frame, end = found
            if skipped:
                out.append(FrameError(f"skipped {skipped} bytes of garbage"))
            out.append(frame)
            del self._buf[:end]
        self._drop_leading_garbage(out)
        return out

    def _next_frame(self) -> tuple[int, Frame, int] | None:
        """Earliest position holding a complete valid frame (so one bad 68 cannot stall us)."""
        start = self._buf.find(START)
        while start >= 0:
            if start + 10 <= len(self._buf) and self._buf[start + 7] == START:
                end = start + 12 + self._buf[start + 9]
                if end <= len(self._buf) and self._buf[start + 9] <= MAX_DATA_LEN:
                    try:
                        return start, decode_frame(bytes(self._buf[start:end])), end
                    except FrameError:
                        pass
            start = self._buf.find(START, start + 1)
        return None

    def _drop_leading_garbage(self, out: list[Frame | FrameError]) -> None:
        """Keep only bytes that may still begin a frame."""
        keep = self._buf.find(START)
        while keep >= 0 and not self._may_start_frame(keep):
            keep = self._buf.find(START, keep + 1)
        cut = len(self._buf) if keep < 0 else keep
        garbage = bytes(self._buf[:cut]).strip(b"\xfe") if cut else b""
        if garbage:
            out.append(FrameError(f"discarded {len(garbage)} bytes of garbage: {garbage[:16].hex(' ')}"))
        del self._buf[:cut]

    def _may_start_frame(self, i: int) -> bool:
        tail = self._buf[i:]
        if len(tail) >= 8 and tail[7] != START:
            return False
        if len(tail) >= 10 and tail[9] > MAX_DATA_LEN:
            return False
        return len(tail) < 12 + (tail[9] if len(tail) >= 10 else 0)


# -- request builders ---------------------------------------------------------------------
def read_request(address: str, di: int) -> Frame:
    """Read one data identifier (DI sent low byte first)."""
    return Frame(address, READ_DATA, di.to_bytes(4, "little"))


def write_request(address: str, di: int, value: bytes, password: bytes, operator: bytes) -> Frame:
    """Write data: DI, password (level + 3 bytes), operator code, value."""
    return Frame(address, WRITE_DATA, di.to_bytes(4, "little") + password + operator + value)


def relay_request(address: str, op: int, valid_until: datetime, password: bytes, operator: bytes) -> Frame:
    """Relay control 1C: N1 = op, N2 reserved, N3..N8 = validity end ssmmhhDDMMYY."""
    return Frame(address, RELAY_CONTROL, password + operator + bytes([op, 0]) + encode_datetime(valid_until))


def time_sync_request(now: datetime) -> Frame:
    """Broadcast time sync 08 to 999999999999: ssmmhhDDMMYY; meters do not answer."""
    return Frame(BROADCAST, TIME_SYNC, encode_datetime(now))


def encode_datetime(when: datetime) -> bytes:
    return bytes(bcd_encode(v, 1)[0] for v in (when.second, when.minute, when.hour, when.day, when.month, when.year % 100))


def decode_datetime(raw: bytes) -> datetime:
    ss, mi, hh, dd, mo, yy = (bcd_decode(raw[i : i + 1]) for i in range(6))
    try:
        return datetime(2000 + yy, mo, dd, hh, mi, ss)
    except ValueError as ex:
        raise FrameError(f"bad date-time {raw.hex(' ')}") from ex


def check_reply(frame: Frame, request: Frame) -> Frame:
    """A reply must match its request's address and function; abnormal replies raise MeterRejected."""
    if not frame.is_reply or frame.function != request.function:
        raise FrameError(f"reply control {frame.control:02x} does not answer {request.control:02x}")
    if frame.address != request.address:
        raise FrameError(f"reply from {frame.address}, asked {request.address}")
    if frame.is_abnormal:
        err = frame.data[0] if frame.data else 0
        reasons = ", ".join(text for bit, text in ERROR_BITS.items() if err & bit) or "unspecified"
        raise MeterRejected(f"meter {frame.address} refused: {reasons}", code=err)
    return frame


def reply_for(request: Frame, data: bytes = b"", error: int | None = None) -> Frame:
    """The meter's side: normal (D7 set) or abnormal (D7+D6 set, ERR byte) reply."""
    if error is not None:
        return Frame(request.address, request.function | REPLY | ABNORMAL, bytes([error]))
    return Frame(request.address, request.function | REPLY, data)
