"""A simulated user information transmission device (用户信息传输装置) speaking GB/T 26875.3 to the
centre over TCP: it uploads its panels' states and waits for the centre's confirm, sends heartbeats,
and answers what the centre asks of it (clock sync, state reads) as a real device does.

    device = TransmissionDevice(address=889, host="127.0.0.1", port=26875)
    await device.connect()
    answer = await device.upload(2, [ComponentState(...)])   # the centre's confirm or deny
    await device.close()

Serial numbers follow the standard (GB/T 26875.3 §6.1): each side numbers what it initiates from 0
on a new connection; an answer carries the serial of what it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from ingest.gb26875.codes import Command
from ingest.gb26875.frame import Frame, GbTime, answer, encode_frame
from ingest.gb26875.framer import Framer, FrameReject
from ingest.gb26875.objects import DeviceOperation, DeviceState, GbObject, decode_adu, encode_adu

READ_DEVICE_STATE = 81
DEVICE_STATE = 21
DEVICE_OPERATION = 24
DUTY_ANSWER = 1 << 5  # type 24 operation flags: 查岗应答


BEIJING = timezone(timedelta(hours=8))


def time_tag(ts: float, tz: timezone = BEIJING) -> GbTime:
    """Epoch seconds as a time tag: local time with no zone on the wire; devices in China send
    Beijing time (the listener's `utc_offset_hours`)."""
    return GbTime.from_datetime(datetime.fromtimestamp(ts, tz).replace(tzinfo=None))


def now_tag() -> GbTime:
    return time_tag(time.time())


@dataclass
class TransmissionDevice:
    address: int
    host: str
    port: int
    centre: int = 0  # the centre's address as the device knows it
    status: int = 1  # its own state word (type 21): bit 0 normal monitoring
    answer_timeout_s: float = 10.0  # GB/T 26875.3 §6.5: at most 10 s
    received: list[Frame] = field(default_factory=list)  # everything the centre sent, in order
    rejects: list[FrameReject] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._serial = -1
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._waiting: dict[bytes, asyncio.Future[Frame]] = {}
        self._task: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()

    async def connect(self) -> None:
        self._serial = -1  # a new connection numbers from 0 again
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        self.closed.clear()
        self._task = asyncio.create_task(self._read(), name=f"gb-device-{self.address}")

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError):
                await self._writer.wait_closed()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._writer = None

    def frame(self, command: Command, adu: bytes = b"") -> tuple[bytes, bytes]:
        """A frame of ours with the next serial; (its bytes, its serial bytes)."""
        self._serial = (self._serial + 1) & 0xFFFF
        serial = self._serial.to_bytes(2, "little")
        data = encode_frame(
            serial=serial,
            command=command,
            source=self.address,
            destination=self.centre,
            adu=adu,
            time=now_tag(),
        )
        return data, serial

    async def send_raw(self, data: bytes) -> None:
        """Bytes as they are (a bad frame, garbage, part of a frame)."""
        assert self._writer is not None, "not connected"
        self._writer.write(data)
        await self._writer.drain()

    async def exchange(self, data: bytes, serial: bytes) -> Frame:
        """Send a frame and wait for the centre's answer to it (the same serial)."""
        future: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._waiting[serial] = future
        try:
            await self.send_raw(data)
            return await asyncio.wait_for(future, self.answer_timeout_s)
        finally:
            self._waiting.pop(serial, None)

    async def upload(self, type_id: int, objects: Sequence[GbObject]) -> Frame:
        """Send data (command 2) and return the centre's confirm (3) or deny (6)."""
        return await self.exchange(*self.frame(Command.SEND, encode_adu(type_id, objects)))

    async def heartbeat(self) -> Frame:
        """An empty upload: the vendors' heartbeat, confirmed by the centre."""
        return await self.exchange(*self.frame(Command.SEND))

    async def answer_duty_check(self, operator: int = 1) -> Frame:
        """The duty person presses 查岗应答: an operation record (type 24, bit 5) to the centre."""
        answered = DeviceOperation(DUTY_ANSWER, operator, now_tag())
        return await self.upload(DEVICE_OPERATION, [answered])

    async def _read(self) -> None:
        framer = Framer()
        assert self._reader is not None
        try:
            while data := await self._reader.read(65536):
                for item in framer.feed(data):
                    if isinstance(item, FrameReject):
                        self.rejects.append(item)
                    else:
                        self._handle(item)
        except ConnectionError:
            pass
        finally:
            self.closed.set()

    def _handle(self, frame: Frame) -> None:
        self.received.append(frame)
        future = self._waiting.get(frame.serial_bytes)
        if frame.command in (Command.CONFIRM, Command.DENY, Command.RESPONSE) and future is not None:
            if not future.done():
                future.set_result(frame)
            return
        writer = self._writer
        if writer is None:
            return
        if frame.command == Command.CONTROL:  # clock sync, initialise, duty check: confirmed
            writer.write(answer(frame, Command.CONFIRM, now_tag()))
        elif frame.command == Command.REQUEST and frame.adu and frame.adu[0] == READ_DEVICE_STATE:
            state = encode_adu(DEVICE_STATE, [DeviceState(self.status, now_tag())])
            writer.write(answer(frame, Command.RESPONSE, now_tag(), state))
        elif frame.command == Command.REQUEST:
            writer.write(answer(frame, Command.DENY, now_tag()))


def decode_objects(frame: Frame) -> tuple[object, ...]:
    """The objects of a frame's data unit (none for an empty one)."""
    return decode_adu(frame.adu).objects if frame.adu else ()
