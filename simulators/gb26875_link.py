"""A simulated transmission device's TCP connection to the centre (GB/T 26875.3 over TCP).

`StationLink` plays an `Installation` (simulators/gb26875_panel.py): every upload goes through an
`Outbox`, so it is sent again when no confirm comes within the answer timeout or the centre denies
it, at most 3 times (§6.5), as a real device does; heartbeats (an empty upload, the vendors'
practice) go the same way. It answers what the centre asks: control commands (clock sync, duty
check) are confirmed; reads of the device's state (type 81), a panel's (61) and a point's (62) are
answered with type 21, 1 and 2; any other request is denied.

A reconnect drops the connection and opens a new one; serials restart at 0 there (§6.1), and
uploads still in flight are sent again under new serials. Writes are never awaited (asyncio
protocol, not streams), so one process holds thousands of links.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from ingest.gb26875.codes import Command, TypeId
from ingest.gb26875.frame import Frame, answer, encode_frame
from ingest.gb26875.framer import Framer, FrameReject
from ingest.gb26875.objects import (
    DeviceState,
    GbObject,
    ReadComponentState,
    ReadSystemState,
    SystemState,
    decode_adu,
    encode_adu,
)
from simulators.gb26875_panel import (
    ANSWER_TIMEOUT_S,
    RESENDS,
    Installation,
    Outbox,
    Pending,
    Point,
    Settled,
    time_tag,
)


class BadFrame(StrEnum):
    """Broken bytes a device can send (a scenario's `gb_garbage`)."""

    GARBAGE = "garbage"  # bytes outside any frame: the centre counts and drops them
    BAD_CHECKSUM = "bad_checksum"  # the device's state upload with its checksum off by one: the
    # centre denies it and the device sends it again, intact (§6.5)


@dataclass
class LinkStats:
    connects: int = 0
    frames_sent: int = 0  # every frame written, resends and answers to the centre included
    uploads: int = 0  # uploads started (heartbeats included)
    heartbeats: int = 0
    resent: int = 0
    confirmed: int = 0
    denied: int = 0  # denials received
    gave_up: int = 0
    requests_answered: int = 0  # the centre's control commands and reads
    rejects: int = 0  # bytes from the centre that were not a frame
    latencies_s: list[float] = field(default_factory=list)  # confirmed uploads: first send to confirm


class StationLink:
    def __init__(
        self,
        installation: Installation,
        host: str,
        port: int,
        *,
        clock: Callable[[], float] = time.time,
        utc_offset_hours: float = 8.0,
        timeout_s: float = ANSWER_TIMEOUT_S,
        resends: int = RESENDS,
        centre: int = 0,
        keep_latencies: bool = True,
    ) -> None:
        self.installation = installation
        self.host, self.port = host, port
        self.clock = clock  # time tags: a scenario passes its simulated clock
        self.utc_offset_hours = utc_offset_hours
        self.centre = centre
        self.outbox = Outbox(timeout_s, resends)
        self.stats = LinkStats()
        self.keep_latencies = keep_latencies
        self.closed = asyncio.Event()
        self._transport: asyncio.Transport | None = None
        self._serial = -1
        self._futures: dict[int, asyncio.Future[Settled]] = {}  # by id() of the Pending
        self._timer: asyncio.TimerHandle | None = None
        self._corrupt_next: set[int] = set()  # ids of uploads whose next frame goes out broken

    # --- the connection ---------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        self._serial = -1  # a new connection numbers from 0 again (§6.1)
        self.closed.clear()
        transport, _ = await loop.create_connection(lambda: _Protocol(self), self.host, self.port)
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self.stats.connects += 1
        for item in self.outbox.renumber(self._next_serial):  # in flight across a reconnect
            self._write(item)
        self._arm()

    def drop(self) -> None:
        """Close the connection (uploads in flight stay in the outbox)."""
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def reconnect(self) -> None:
        """Drop the connection and connect again, as a device does after a network fault."""
        self.drop()
        await self.closed.wait()
        await self.connect()

    async def close(self) -> None:
        self.drop()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.closed.wait(), 2.0)
        for future in self._futures.values():
            future.cancel()
        self._futures.clear()

    async def settle(self, timeout_s: float) -> bool:
        """Wait until every upload is confirmed or given up, at most `timeout_s`; True if all were."""
        pending = [f for f in self._futures.values() if not f.done()]
        if not pending:
            return True
        _, left = await asyncio.wait(pending, timeout=timeout_s)
        return not left

    # --- uploads ----------------------------------------------------------------------------------
    def upload(self, type_id: int, objects: Sequence[GbObject]) -> asyncio.Future[Settled]:
        """Send data (command 2); the future settles on the confirm, or after the last resend."""
        return self._start(encode_adu(type_id, objects))

    def heartbeat(self) -> asyncio.Future[Settled]:
        """An empty upload (command 2, no data), which the centre confirms at once."""
        self.stats.heartbeats += 1
        return self._start(b"")

    def send_bad(self, kind: BadFrame) -> asyncio.Future[Settled] | None:
        """Broken bytes; for BAD_CHECKSUM the upload it spoils, which the device resends intact."""
        if kind is BadFrame.GARBAGE:
            self._send_bytes(b"\x00\xffnot a frame\r\n")
            return None
        state = DeviceState(self.installation.status, time_tag(self.clock(), self.utc_offset_hours))
        return self._start(encode_adu(TypeId.DEVICE_STATE, [state]), corrupt=True)

    def _start(self, adu: bytes, *, corrupt: bool = False) -> asyncio.Future[Settled]:
        item = self.outbox.sent(Command.SEND, adu, self._next_serial(), time.monotonic())
        future: asyncio.Future[Settled] = asyncio.get_running_loop().create_future()
        self._futures[id(item)] = future
        self.stats.uploads += 1
        if corrupt:
            self._corrupt_next.add(id(item))
        self._write(item)
        self._arm()
        return future

    def _next_serial(self) -> int:
        self._serial = (self._serial + 1) & 0xFFFF
        return self._serial

    def _write(self, item: Pending) -> None:
        if not self.connected:
            return  # sent (again) when connected, or given up by the timer
        data = encode_frame(
            serial=item.serial,
            command=item.command,
            source=self.installation.address,
            destination=self.centre,
            adu=item.adu,
            time=time_tag(self.clock(), self.utc_offset_hours),
        )
        if id(item) in self._corrupt_next:
            self._corrupt_next.discard(id(item))
            data = data[:-3] + bytes([(data[-3] + 1) & 0xFF]) + data[-2:]
        self._send_bytes(data)

    def _send_bytes(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)
            self.stats.frames_sent += 1

    def _settled(self, item: Pending, result: Settled) -> None:
        if result.confirmed:
            self.stats.confirmed += 1
            if self.keep_latencies:
                self.stats.latencies_s.append(result.latency_s)
        else:
            self.stats.gave_up += 1
        future = self._futures.pop(id(item), None)
        if future is not None and not future.done():
            future.set_result(result)

    # --- the answer timer -------------------------------------------------------------------------
    def _arm(self) -> None:
        if self._timer is None and self.outbox.pending:
            delay = min(1.0, self.outbox.timeout_s / 4)
            self._timer = asyncio.get_running_loop().call_later(delay, self._tick)

    def _tick(self) -> None:
        self._timer = None
        resend, failed = self.outbox.due(time.monotonic())
        for item in resend:
            self.stats.resent += 1
            self._write(item)
        for item, result in failed:
            self._settled(item, result)
        self._arm()

    # --- what the centre sends --------------------------------------------------------------------
    def _received(self, item: Frame | FrameReject) -> None:
        if isinstance(item, FrameReject):
            self.stats.rejects += 1
            return
        frame = item
        if frame.command in (Command.CONFIRM, Command.DENY):
            if frame.command == Command.DENY:
                self.stats.denied += 1
            outcome = self.outbox.answered(frame.serial, frame.command, time.monotonic())
            if outcome is None:
                return
            pending, result = outcome
            if result is None:
                self.stats.resent += 1
                self._write(pending)  # denied: sent again at once
            else:
                self._settled(pending, result)
            return
        if frame.command == Command.RESPONSE:
            return
        reply = self._answer_request(frame)
        if reply is not None:
            self.stats.requests_answered += 1
            self._send_bytes(reply)

    def _answer_request(self, frame: Frame) -> bytes | None:
        tag = time_tag(self.clock(), self.utc_offset_hours)
        if frame.command == Command.CONTROL:  # clock sync, initialise, duty check (§8.2.2): confirmed
            return answer(frame, Command.CONFIRM, tag)
        if frame.command != Command.REQUEST or not frame.adu:
            return None
        inst = self.installation
        try:
            objects = decode_adu(frame.adu).objects
        except ValueError:
            return answer(frame, Command.DENY, tag)
        if frame.adu[0] == TypeId.READ_DEVICE_STATE:
            return answer(frame, Command.RESPONSE, tag, encode_adu(21, [DeviceState(inst.status, tag)]))
        if objects and isinstance(objects[0], ReadSystemState):
            panel = inst.panels.get((objects[0].sys_type, objects[0].sys_addr))
            if panel is not None:
                state = SystemState(panel.sys_type, panel.sys_addr, panel.status, tag)
                return answer(frame, Command.RESPONSE, tag, encode_adu(1, [state]))
        if objects and isinstance(objects[0], ReadComponentState):
            read = objects[0]
            panel = inst.panels.get((read.sys_type, read.sys_addr))
            found: list[Point] = [] if panel is None else [
                p for p in panel.points.values() if p.comp_addr == read.comp_addr
            ]  # fmt: skip
            if panel is not None and found:
                state2 = inst.point_state(panel, found[0], tag)
                return answer(frame, Command.RESPONSE, tag, encode_adu(2, [state2]))
        return answer(frame, Command.DENY, tag)

    def _lost(self, transport: asyncio.BaseTransport | None) -> None:
        if transport is self._transport or self._transport is None:
            self._transport = None
            self.closed.set()


class _Protocol(asyncio.Protocol):
    def __init__(self, link: StationLink) -> None:
        self.link = link
        self.framer = Framer()
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        for item in self.framer.feed(data):
            self.link._received(item)

    def connection_lost(self, exc: Exception | None) -> None:
        self.link._lost(self.transport)
