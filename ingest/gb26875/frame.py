"""One GB/T 26875.3-2011 frame: layout, checksum, decoding, encoding and the centre's answers.

Layout (offsets 0-based; the standard counts from 1):

    0  2  start "@@"
    2  2  业务流水号 serial, uint16 little-endian (an answer echoes the two bytes unchanged)
    4  2  protocol version: main (1), user-defined
    6  6  时间标签: second, minute, hour, day, month, year-2000 (plain binary, not BCD)
    12 6  源地址 source, 48-bit little-endian
    18 6  目的地址 destination, 48-bit little-endian
    24 2  应用数据单元长度 L, uint16 little-endian, at most 1024
    26 1  命令字节 command
    27 L  应用数据单元 (ADU)
    27+L 1 校验和: low 8 bits of the sum of every byte between "@@" and itself
    28+L 2 end "##"

The private 赋安 FSCN8001 framing uses the same delimiters; it is recognised and refused
(`FrameErrorReason.lookalike_fscn8001`), never decoded as GB.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from ingest.gb26875.codes import Command

MAX_ADU = 1024
HEADER = 27  # bytes before the ADU: start, the 25-byte control unit
MIN_FRAME = 30  # HEADER + checksum + end
MAX_FRAME = MIN_FRAME + MAX_ADU
START = b"@@"
END = b"##"

# The control unit after "@@": serial, version main/user, time (6), source (low 32 + high 16 bits),
# destination (same), L, command.
_CONTROL = struct.Struct("<2sBB6BIHIHHB")
_FSCN_MARK = b"\x00\x01\x05"  # FSCN8001 bytes 3–5 (a GB frame would have serial high byte 0, version 1.5)


@dataclass(frozen=True, slots=True)
class GbTime:
    """A 6-byte time tag (§8.2.2): local time, no zone; devices in China send Beijing time."""

    second: int
    minute: int
    hour: int
    day: int
    month: int
    year: int  # four digits; the wire carries year - 2000

    @classmethod
    def from_bytes(cls, data: bytes) -> GbTime:
        """Read 6 bytes (second, minute, hour, day, month, yy) as they are, valid or not."""
        second, minute, hour, day, month, yy = data[:6]
        return cls(second, minute, hour, day, month, 2000 + yy)

    @classmethod
    def from_datetime(cls, dt: datetime) -> GbTime:
        return cls(dt.second, dt.minute, dt.hour, dt.day, dt.month, dt.year)

    def to_datetime(self) -> datetime | None:
        """The naive local time, or None when a field is out of range (e.g. a device's zero clock)."""
        try:
            return datetime(self.year, self.month, self.day, self.hour, self.minute, self.second)
        except ValueError:
            return None

    def encode(self) -> bytes:
        """The 6 wire bytes; ValueError when a field does not fit a byte or the year is not 2000–2255."""
        try:
            return bytes((self.second, self.minute, self.hour, self.day, self.month, self.year - 2000))
        except ValueError:
            raise ValueError(f"time {self} does not fit the 6-byte time tag (years 2000–2255)") from None


@dataclass(frozen=True, slots=True)
class Frame:
    serial: int
    version: tuple[int, int]  # (main, user); any version is accepted on input
    time: GbTime  # the sender's time of sending
    source: int
    destination: int
    command: int  # a `Command` value, or a reserved/user-defined byte as received
    adu: bytes  # empty for confirm/deny and for the vendors' heartbeat (command SEND, L = 0)
    serial_bytes: bytes  # the 2 raw serial bytes, echoed unchanged in answers
    raw: bytes  # the whole frame as received


class FrameErrorReason(StrEnum):
    too_short = "too_short"  # fewer bytes than 30, or than 30 + L
    bad_start = "bad_start"  # not "@@" (a framer reports bytes before a "@@" with this reason)
    bad_end = "bad_end"  # no "##" where 30 + L puts it
    bad_checksum = "bad_checksum"
    adu_too_long = "adu_too_long"  # L > 1024
    lookalike_fscn8001 = "lookalike_fscn8001"  # 赋安 FSCN8001 private framing, not GB/T 26875.3


class FrameError(ValueError):
    def __init__(self, reason: FrameErrorReason, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.detail = message


def checksum(data: bytes | bytearray | memoryview) -> int:
    """The 校验和 of `data`, the bytes between "@@" and the checksum (offsets 2..26 and the ADU):
    the low 8 bits of their arithmetic sum."""
    return sum(data) & 0xFF


def adu_length(buf: bytes | bytearray, start: int = 0) -> int:
    """L, the ADU length of the frame at `start` (needs 26 bytes from it)."""
    return buf[start + 24] | buf[start + 25] << 8


def _header(buf: bytes | bytearray, start: int, adu: bytes, raw: bytes) -> Frame:
    (serial_bytes, main, user, second, minute, hour, day, month, yy,
     src_lo, src_hi, dst_lo, dst_hi, _, command) = _CONTROL.unpack_from(buf, start + 2)  # fmt: skip
    return Frame(
        serial=serial_bytes[0] | serial_bytes[1] << 8,
        version=(main, user),
        time=GbTime(second, minute, hour, day, month, 2000 + yy),
        source=src_lo | src_hi << 32,
        destination=dst_lo | dst_hi << 32,
        command=command,
        adu=adu,
        serial_bytes=serial_bytes,
        raw=raw,
    )


def header_frame(buf: bytes | bytearray, start: int, raw: bytes) -> Frame:
    """The header of a frame at `start` (27 bytes needed) with an empty ADU, for denying a broken one."""
    return _header(buf, start, b"", raw)


def checked_frame(raw: bytes) -> Frame:
    """The Frame of `raw`, one whole frame already checked (`check_frame`)."""
    return _header(raw, 0, raw[HEADER:-3], raw)


def _is_bcd(data: bytes | bytearray) -> bool:
    return all(b >> 4 <= 9 and b & 0x0F <= 9 for b in data)


def fscn_end(buf: bytes | bytearray, start: int) -> int | None:
    """Where the FSCN8001 frame at `start` ends (one past its "##"), or None if it does not read as one.

    Its layout: "@@", cmd 1, "00 01 05", BCD time 6, device id 12, data, sum, "##", the sum running
    from cmd to the end of the data. It has no length field, so each "##" from the shortest possible
    frame (27 bytes) on is tried against the sum.
    """
    if buf[start + 3 : start + 6] != _FSCN_MARK or len(buf) - start < 27:
        return None
    if not _is_bcd(buf[start + 6 : start + 12]):
        return None
    at = buf.find(END, start + 25)
    while at >= 0:
        if sum(buf[start + 2 : at - 1]) & 0xFF == buf[at - 1]:
            return at + 2
        at = buf.find(END, at + 1)
    return None


def looks_fscn(buf: bytes | bytearray, start: int = 0) -> bool:
    """True when the bytes at `start` could begin an FSCN8001 frame (its fixed bytes and BCD time)."""
    return buf[start + 3 : start + 6] == _FSCN_MARK and (
        len(buf) - start < 12 or _is_bcd(buf[start + 6 : start + 12])
    )


def check_frame(buf: bytes | bytearray, start: int, length: int) -> FrameError | None:
    """Why the complete frame of `length` (30 + L) bytes at `start` is not valid GB, or None if it is.
    The caller has checked "@@" and L <= 1024."""
    end = start + length
    if buf[end - 2 : end] != END:
        return FrameError(
            FrameErrorReason.bad_end,
            f"bytes {length - 2}–{length - 1} are {bytes(buf[end - 2 : end]).hex(' ')}, not '##' (23 23)",
        )
    expected = sum(buf[start + 2 : end - 3]) & 0xFF
    if buf[end - 3] != expected:
        return FrameError(
            FrameErrorReason.bad_checksum,
            f"checksum byte is 0x{buf[end - 3]:02x}, the sum of the frame's bytes gives 0x{expected:02x}",
        )
    return None


def decode_frame(data: bytes) -> Frame:
    """Decode exactly one whole frame; FrameError says why it is not one."""
    data = bytes(data)
    size = len(data)
    if size < 2 or data[:2] != START:
        raise FrameError(
            FrameErrorReason.bad_start, f"a frame starts with '@@' (40 40), not {data[:2].hex(' ')}"
        )
    fscn = fscn_end(data, 0) == size if looks_fscn(data) else False
    if size < MIN_FRAME:
        if fscn:
            raise _fscn_error()
        raise FrameError(FrameErrorReason.too_short, f"{size} bytes; a frame has at least {MIN_FRAME}")
    adu_len = adu_length(data)
    error: FrameError | None
    if adu_len > MAX_ADU:
        error = FrameError(FrameErrorReason.adu_too_long, f"ADU length {adu_len} is over {MAX_ADU}")
    elif size < MIN_FRAME + adu_len:
        error = FrameError(
            FrameErrorReason.too_short,
            f"{size} bytes; ADU length {adu_len} needs {MIN_FRAME + adu_len}",
        )
    elif size > MIN_FRAME + adu_len:
        error = FrameError(
            FrameErrorReason.bad_end,
            f"{size} bytes; ADU length {adu_len} ends the frame at {MIN_FRAME + adu_len}: "
            "exactly one frame expected",
        )
    else:
        error = check_frame(data, 0, size)
    if error is None:
        return _header(data, 0, data[HEADER : HEADER + adu_len], data)
    raise _fscn_error() if fscn else error


def _fscn_error() -> FrameError:
    return FrameError(
        FrameErrorReason.lookalike_fscn8001,
        "赋安 FSCN8001 private framing (bytes 3–5 are 00 01 05, BCD time, its own checksum), "
        "not GB/T 26875.3",
    )


def encode_frame(
    *,
    serial: int | bytes,
    command: int,
    source: int,
    destination: int,
    adu: bytes = b"",
    time: GbTime,
    version: tuple[int, int] = (1, 1),
) -> bytes:
    """A whole frame; ValueError when a field does not fit (serial, addresses, ADU over 1024 bytes)."""
    if isinstance(serial, int):
        if not 0 <= serial <= 0xFFFF:
            raise ValueError(f"serial {serial} does not fit 2 bytes")
        serial_bytes = serial.to_bytes(2, "little")
    else:
        if len(serial) != 2:
            raise ValueError(f"serial bytes must be 2, not {len(serial)}")
        serial_bytes = bytes(serial)
    if len(adu) > MAX_ADU:
        raise ValueError(f"ADU of {len(adu)} bytes is over {MAX_ADU}")
    for name, address in (("source", source), ("destination", destination)):
        if not 0 <= address < 1 << 48:
            raise ValueError(f"{name} address {address} does not fit 6 bytes")
    if not 0 <= command <= 0xFF:
        raise ValueError(f"command {command} does not fit a byte")
    control = b"".join(
        (
            serial_bytes,
            bytes(version),
            time.encode(),
            source.to_bytes(6, "little"),
            destination.to_bytes(6, "little"),
            len(adu).to_bytes(2, "little"),
            bytes((command,)),
            adu,
        )
    )
    return b"".join((START, control, bytes((checksum(control),)), END))


def answer(frame: Frame, command: Command, now: GbTime, adu: bytes = b"") -> bytes:
    """The centre's confirm, deny or response to `frame`: the same serial bytes, source and destination
    swapped, the centre's own time (as the standard's example sequence does); version 1 with the
    device's own user version echoed."""
    return encode_frame(
        serial=frame.serial_bytes,
        command=command,
        source=frame.destination,
        destination=frame.source,
        adu=adu,
        time=now,
        version=(1, frame.version[1]),
    )
