"""Errors raised by devices/: library exceptions are translated into these at the boundary."""

from __future__ import annotations


class DeviceError(Exception):
    """Base class: something went wrong talking to a meter or gateway."""


class FrameError(DeviceError):
    """Bytes on the wire do not form a valid frame (checksum, length, garbage)."""


class MeterTimeout(DeviceError):
    """The meter did not answer in time (dead meter, dropped reply, gateway offline)."""


class MeterRejected(DeviceError):
    """The meter answered with an exception / abnormal reply: retrying the same will not help."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class NotSupported(DeviceError):
    """The meter's profile has no such register or control point."""
