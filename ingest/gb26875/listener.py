"""The GB/T 26875.3 listener: transmission devices (用户信息传输装置) connect over TCP and upload
their panels' states; what they report enters the pipeline as device events.

One asyncio protocol per connection, each with its own `Framer`. For every frame:
- an upload (command 2) whose objects mean device events: the events go on the receive queue as
  `.../event` messages of the registry devices they are about (points.py), and the upload is
  confirmed (确认, command 3) once the pipeline has stored them, as an MQTT QoS 1 message is
  acknowledged (docs/ingest.md): a crash before that leaves it unconfirmed and the device resends it
  (GB/T 26875.3 §6.5: up to 3 times, 10 s apart). An upload that means no event (versions,
  configurations, clocks, types this service does not act on) is confirmed at once;
- a heartbeat (command 2, no data) is confirmed at once, and counts for the device's liveness;
- a frame that fails its checks but whose header could be read is denied (否认, command 6); garbage
  is counted and logged; an unknown type identifier is confirmed, never denied (a denial makes the
  device resend and then flag a communication fault);
- the 赋安 FSCN8001 private framing on the same delimiters is refused: logged, and the connection
  closed, since nothing it sends can be read as GB/T 26875.3.
The centre's side: the device's clock is set (type 90) when it is first heard on a connection, and
its state is read (type 81, 巡检) every `inspection_every_s`; the answer (type 21) is handled like an
upload of the same state.

Clustered, the queue is firewatch/cluster/forward.EngineInbox: the messages go to the engine, to
the worker owning the device's site, and an upload is confirmed once the engine has stored them.

Acknowledgement routing: the pipeline acknowledges every message of a batch through one callable.
These messages carry a negative `epoch` (minus the connection's number), which no MQTT connection
has, and their upload's number as `mid`; `ack` confirms an upload once all its messages are back.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import orjson

from core.domain import DeviceEventKind
from core.settings import Gb26875Settings
from ingest.decode import LOGGED_ONLY
from ingest.envelope import Message
from ingest.gb26875.codes import TYPE_NAMES, Command, TypeId
from ingest.gb26875.frame import Frame, FrameErrorReason, GbTime, answer, encode_frame
from ingest.gb26875.framer import Framer, FrameReject
from ingest.gb26875.objects import (
    AduError,
    AnalogValue,
    ComponentState,
    DeviceOperation,
    DeviceState,
    DutyCheck,
    Operation,
    SystemState,
    decode_adu,
    encode_adu,
)
from ingest.gb26875.points import (
    COMPONENT_BITS,
    DEVICE_BITS,
    OPERATION_RESET_BIT,
    SYSTEM_BITS,
    SYSTEM_RESET_BIT,
    ComponentKey,
    PointEvent,
    PointMap,
    PointReading,
    StateMemory,
    Station,
    SystemKey,
    analog_reading,
    unregistered_name,
)
from ingest.index import DeviceIndex
from ingest.queue import BoundedQueue

logger = logging.getLogger(__name__)

CENTRE_ADDRESS = 0  # our source address in what we send; devices answer to whatever we use
READ_DEVICE_STATE = bytes([81, 1, 0])  # type 81, one object, a reserved byte (GB/T 26875.3 §8.2.2)
CLOCK_SYNC = 90
# The upload types the listener acts on; any other (versions, configurations, clocks, reserved or a
# vendor's own such as 204 and 205) is confirmed and kept in the device's event log as `upload`.
ACTED_ON = frozenset({1, 2, 3, 4, 21, 24})
DUTY_CHECKS_KEPT = 1000  # the newest duty checks kept in memory (each answer is also in the audit log)
ANSWER_TIMEOUT_S = 10.0  # GB/T 26875.3 §6.5: an answer is due within 10 s
DUTY_ANSWER_BIT = 1 << 5  # type 24 operation flags: 查岗应答 (the duty person answered)


@dataclass
class DutyCheckRecord:
    """One duty check (查岗) sent to a transmission device, and when its duty person answered."""

    address: int
    device_id: str
    sent_at: float
    timeout_minutes: int
    confirmed: bool = False  # the device confirmed the command
    answered_at: float | None = None  # the 查岗应答 operation's receipt
    operator: int | None = None  # its operator number

    @property
    def answer_s(self) -> float | None:
        return None if self.answered_at is None else self.answered_at - self.sent_at


@dataclass
class _Upload:
    frame: Frame
    waiting: int  # messages not yet acknowledged


@dataclass
class ListenerStats:
    connections: int = 0
    accepted: int = 0  # connections accepted in all
    frames: int = 0
    heartbeats: int = 0
    confirmed: int = 0
    denied: int = 0
    rejects: Counter[str] = field(default_factory=Counter)  # by FrameErrorReason or "adu"
    unknown_devices: Counter[int] = field(default_factory=Counter)  # frames from unregistered addresses
    unknown_types: Counter[int] = field(default_factory=Counter)  # uploads of types not acted on, by type
    inspections_sent: int = 0
    inspections_answered: int = 0


class Gb26875Listener:
    def __init__(
        self,
        settings: Gb26875Settings,
        *,
        queue: BoundedQueue,
        index: Callable[[], DeviceIndex],
        prefix: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.queue = queue
        self._index = index
        self._points = PointMap.from_index(index())
        self._points_of = index()
        self.prefix = prefix
        self.clock = clock
        self.memory = StateMemory()
        self.stats = ListenerStats()
        self._server: asyncio.Server | None = None
        self._conns: dict[int, _Connection] = {}
        self._numbers = itertools.count(1)
        self._tz = timezone(timedelta(hours=settings.utc_offset_hours))
        self._inspector: asyncio.Task[None] | None = None
        self.duty_checks: deque[DutyCheckRecord] = deque(maxlen=DUTY_CHECKS_KEPT)
        # Called (on the event loop) when a duty person answers a check: the service records it.
        self.on_duty_answer: Callable[[DutyCheckRecord], None] | None = None
        # Called (on the event loop) when the devices heard on open connections may have changed:
        # clustered, the worker's relay follows them (firewatch/cluster/gb_relay.py).
        self.on_held: Callable[[], None] | None = None
        for issue in self._points.issues:
            logger.warning("GB/T 26875.3 binding of %s: %s", issue.device_id, issue.message)

    # --- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), self.settings.bind, self.settings.port, reuse_address=True
        )
        self._inspector = asyncio.create_task(self._inspect(), name="gb26875-inspection")
        logger.info("GB/T 26875.3 listener on %s:%d", self.settings.bind, self.port)

    @property
    def port(self) -> int:
        """The port bound (the configured one, or the one the system chose for port 0)."""
        if self._server is None or not self._server.sockets:
            return self.settings.port
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._inspector is not None:
            self._inspector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._inspector
        if self._server is not None:
            self._server.close()
            for conn in list(self._conns.values()):
                conn.close()
            await self._server.wait_closed()
            self._server = None

    def points(self) -> PointMap:
        """The bindings, made again when the registry changed (the index is a new object)."""
        index = self._index()
        if index is not self._points_of:
            self._points, self._points_of = PointMap.from_index(index), index
            for issue in self._points.issues:
                logger.warning("GB/T 26875.3 binding of %s: %s", issue.device_id, issue.message)
        return self._points

    # --- acknowledgements from the pipeline -----------------------------------------------------
    def ack(self, messages: Iterable[Message]) -> int:
        """Confirm every upload whose messages are all stored; returns how many were confirmed."""
        confirmed = 0
        for m in messages:
            if m.epoch >= 0 or m.mid is None:
                continue
            conn = self._conns.get(-m.epoch)
            if conn is None:
                continue  # the connection is gone: the device resends, and the repeat is harmless
            upload = conn.uploads.get(m.mid)
            if upload is None:
                continue
            upload.waiting -= 1
            if upload.waiting <= 0:
                del conn.uploads[m.mid]
                conn.send(answer(upload.frame, Command.CONFIRM, self.now_tag()))
                self.stats.confirmed += 1
                confirmed += 1
        return confirmed

    # --- frames ---------------------------------------------------------------------------------
    def now_tag(self) -> GbTime:
        return GbTime.from_datetime(datetime.fromtimestamp(self.clock(), self._tz).replace(tzinfo=None))

    def to_epoch(self, tag: GbTime, received: float) -> float:
        """An object's time tag as epoch seconds; the receipt time when the tag is not a time."""
        dt = tag.to_datetime()
        return received if dt is None else dt.replace(tzinfo=self._tz).timestamp()

    def handle(self, conn: _Connection, item: Frame | FrameReject) -> None:
        if isinstance(item, FrameReject):
            self.stats.rejects[item.reason.value] += 1
            if item.reason is FrameErrorReason.lookalike_fscn8001:
                logger.warning(
                    "GB/T 26875.3 connection %s speaks 赋安 FSCN8001, a private protocol on the same "
                    "@@…## delimiters, not GB/T 26875.3: refused and closed",
                    conn.peer,
                )
                conn.close()
                return
            logger.warning(
                "GB/T 26875.3 connection %s: %d bytes rejected (%s)%s",
                conn.peer,
                len(item.raw),
                item.reason.value,
                ", denied" if item.answerable is not None else "",
            )
            if item.answerable is not None:
                conn.send(answer(item.answerable, Command.DENY, self.now_tag()))
                self.stats.denied += 1
            return
        self.stats.frames += 1
        frame = item
        conn.heard(frame.source)
        if frame.command in (Command.CONFIRM, Command.DENY, Command.RESPONSE):
            waiting = conn.requests.pop(frame.serial_bytes, None)
            if waiting is not None and not waiting.done():
                waiting.set_result(frame)
        if frame.command == Command.SEND:
            self._upload(conn, frame)
        elif frame.command == Command.RESPONSE:
            self._response(conn, frame)
        elif frame.command in (Command.CONFIRM, Command.DENY):
            if frame.command == Command.DENY:
                logger.warning("GB/T 26875.3 device %d denied a command of ours", frame.source)
        else:  # control or request from a device: not ours to answer
            conn.send(answer(frame, Command.DENY, self.now_tag()))
            self.stats.denied += 1

    def _station(self, frame: Frame) -> Station | None:
        station = self.points().stations.get(frame.source)
        if station is None:
            self.stats.unknown_devices[frame.source] += 1
            if self.stats.unknown_devices[frame.source] == 1:
                logger.warning(
                    "GB/T 26875.3 frames from device address %d, which no registry device is tagged "
                    "with (gb26875=%d): confirmed, kept as rejects, and not mapped to alarms",
                    frame.source,
                    frame.source,
                )
        return station

    def _upload(self, conn: _Connection, frame: Frame) -> None:
        station = self._station(frame)
        now = self.clock()
        if not frame.adu:  # heartbeat
            self.stats.heartbeats += 1
            if station is not None:
                self._enqueue(
                    conn, None, [PointEvent(station.device_id, DeviceEventKind.HEARTBEAT, now)], station
                )
            conn.send(answer(frame, Command.CONFIRM, self.now_tag()))
            self.stats.confirmed += 1
            return
        try:
            adu = decode_adu(frame.adu)
        except AduError as exc:
            self.stats.rejects["adu"] += 1
            logger.warning("GB/T 26875.3 device %d: data unit refused (%s), denied", frame.source, exc)
            conn.send(answer(frame, Command.DENY, self.now_tag()))
            self.stats.denied += 1
            return
        if station is None:
            self._keep_unknown(conn, frame, now)
            return
        if adu.type_id not in ACTED_ON:
            # Confirmed, never denied (a denial makes the device resend and flag a fault), and the
            # frame kept in the transmission device's event log; a type the standard does not name
            # is logged once.
            self.stats.unknown_types[adu.type_id] += 1
            if adu.type_id not in TYPE_NAMES and self.stats.unknown_types[adu.type_id] == 1:
                logger.warning(
                    "GB/T 26875.3 device %d sent type %d (reserved or vendor-defined): confirmed, "
                    "kept in %s's event log, not acted on",
                    frame.source,
                    adu.type_id,
                    station.device_id,
                )
            kept = PointEvent(station.device_id, DeviceEventKind.UPLOAD, now, adu.type_id)
            self._enqueue(conn, frame, [kept], station, frame.raw)
            return
        events = self.events(station, adu.objects, now)
        if not events:
            conn.send(answer(frame, Command.CONFIRM, self.now_tag()))
            self.stats.confirmed += 1
            return
        self._enqueue(conn, frame, events, station, frame.raw)

    def _response(self, conn: _Connection, frame: Frame) -> None:
        station = self._station(frame)
        if station is None or not frame.adu:
            return
        try:
            adu = decode_adu(frame.adu)
        except AduError as exc:
            logger.warning("GB/T 26875.3 device %d: answer refused (%s)", frame.source, exc)
            return
        if adu.type_id == 21:
            self.stats.inspections_answered += 1
            conn.inspected_at = self.clock()
        events = self.events(station, adu.objects, self.clock())
        if events:
            self._enqueue(conn, None, events, station, frame.raw)

    def events(
        self, station: Station, objects: Iterable[object], now: float
    ) -> list[PointEvent | PointReading]:
        """The device events a list of objects means (pure apart from the state memory)."""
        out: list[PointEvent | PointReading] = []
        for obj in objects:
            if isinstance(obj, ComponentState):
                key = (obj.sys_type, obj.sys_addr, obj.comp_type, obj.comp_addr)
                ts = self.to_epoch(obj.time, now)
                out += self._state(station, station.components.get(key), key, obj.status, COMPONENT_BITS, ts)
            elif isinstance(obj, SystemState):
                key2 = (obj.sys_type, obj.sys_addr)
                ts = self.to_epoch(obj.time, now)
                out += self._state(station, station.systems.get(key2), key2, obj.status, SYSTEM_BITS, ts)
                if obj.status & SYSTEM_RESET_BIT:
                    out += self._reset(station, key2, ts, obj.status)
            elif isinstance(obj, AnalogValue):
                key = (obj.sys_type, obj.sys_addr, obj.comp_type, obj.comp_addr)
                ts = self.to_epoch(obj.time, now)
                device_id = station.components.get(key)
                if device_id is None:  # nowhere to keep it: the point is to be onboarded first
                    name = unregistered_name(key)
                    out.append(PointEvent(station.device_id, DeviceEventKind.UNREGISTERED, ts, None, name))
                else:
                    out.append(analog_reading(device_id, obj.analog_type, obj.value, ts))
            elif isinstance(obj, DeviceState):
                ts = self.to_epoch(obj.time, now)
                out += self.memory.edges(station.address, station.device_id, "", obj.status, DEVICE_BITS, ts)
            elif isinstance(obj, Operation):
                # Every operation at the panel is recorded (its flags: 复位, 消音, 手动报警, 警情消除,
                # 自检, 确认, 测试); a reset also ends the latched alarms it covers.
                ts = self.to_epoch(obj.time, now)
                key2 = (obj.sys_type, obj.sys_addr)
                panel = station.systems.get(key2)
                who = unregistered_name(key2) if panel is None else f"operator {obj.operator}"
                out.append(
                    PointEvent(panel or station.device_id, DeviceEventKind.OPERATION, ts, obj.flags, who)
                )
                if obj.flags & OPERATION_RESET_BIT:
                    out += self._reset(station, key2, ts, obj.flags)
            elif isinstance(obj, DeviceOperation):
                ts = self.to_epoch(obj.time, now)
                operator = f"operator {obj.operator}"
                out.append(PointEvent(station.device_id, DeviceEventKind.OPERATION, ts, obj.flags, operator))
                if obj.flags & DUTY_ANSWER_BIT:
                    self._duty_answered(station, obj.operator, now)
                if obj.flags & OPERATION_RESET_BIT:
                    ts = self.to_epoch(obj.time, now)
                    self.memory.forget_fire(station.address, [station.device_id])
                    out.append(PointEvent(station.device_id, DeviceEventKind.RESET, ts, obj.flags))
        return out

    def _state(
        self,
        station: Station,
        device_id: str | None,
        key: ComponentKey | SystemKey,
        status: int,
        bits: dict[DeviceEventKind, int],
        ts: float,
    ) -> list[PointEvent | PointReading]:
        """A point's (or panel's) status word as edges on its device; an unregistered one's on its
        transmission device, named, with the device's `unregistered` hazard."""
        if device_id is not None:
            return [*self.memory.edges(station.address, device_id, "", status, bits, ts)]
        name = unregistered_name(key)
        return [
            *self.memory.edges(station.address, station.device_id, name, status, bits, ts, name),
            PointEvent(station.device_id, DeviceEventKind.UNREGISTERED, ts, None, name),
        ]

    def _reset(
        self, station: Station, key: tuple[int, int], ts: float, code: int
    ) -> list[PointEvent | PointReading]:
        """A panel's reset (复位) ends the latched alarms of every point of its system."""
        ids = station.system_components(key)
        panel = station.systems.get(key)
        if panel is not None:
            ids.append(panel)
        ids.append(station.device_id)  # unregistered points' alarms are held on the device
        self.memory.forget_fire(station.address, ids)
        return [PointEvent(d, DeviceEventKind.RESET, ts, code) for d in ids]

    def _enqueue(
        self,
        conn: _Connection,
        frame: Frame | None,
        events: list[PointEvent | PointReading],
        station: Station,
        raw: bytes | None = None,
    ) -> None:
        """Put what `events` mean on the receive queue; `frame`: the upload to confirm once they are
        all stored; `raw`: the frame they came from, kept with each event in its device's event log."""
        index = self._index()
        dev_of, profiles = index.dev_of, index.profiles
        token = next(conn.tokens) if frame is not None else None
        messages: list[Message] = []
        received = self.clock()
        for e in events:
            dev = dev_of.get(e.device_id)
            if dev is None:
                continue
            if isinstance(e, PointReading):
                # Sent whatever the profile declares: a channel it does not have is rejected by the
                # pipeline with its reason and kept (docs/ingest.md), not dropped here.
                reading = {"ts": e.ts, "v": {e.channel: e.value}}
                topic = f"{self.prefix}/{station.site}/{e.device_id}/telemetry"
                messages.append(Message(topic, orjson.dumps(reading), received, 1, token, -conn.number))
                continue
            mapped = {k.value.removesuffix("_clear") for k in profiles[dev].events}
            base = e.event.value.removesuffix("_clear")
            if e.event not in _ALWAYS and base not in mapped:
                continue  # the profile does not map it (a module without a fire bit, say)
            payload: dict[str, object] = {"ts": e.ts, "event": e.event.value}
            if e.code is not None:
                payload["code"] = e.code
            if e.channel is not None:
                payload["channel"] = e.channel
            if raw is not None:
                payload["frame"] = raw.hex()
            if not e.logged:
                payload["log"] = False
            topic = f"{self.prefix}/{station.site}/{e.device_id}/event"
            messages.append(Message(topic, orjson.dumps(payload), received, 1, token, -conn.number))
        if frame is not None:
            if messages:
                conn.uploads[token] = _Upload(frame, len(messages))  # type: ignore[index]
            else:
                conn.send(answer(frame, Command.CONFIRM, self.now_tag()))
                self.stats.confirmed += 1
        if messages:
            self.queue.put_acknowledged(messages)

    def _keep_unknown(self, conn: _Connection, frame: Frame, now: float) -> None:
        """An upload from an address no registry device has: kept as a reject (unknown device,
        with the frame's bytes as hex), and confirmed, so the device does not flag a fault."""
        topic = f"{self.prefix}/gb26875/gb-{frame.source}/event"
        self.queue.put_acknowledged([Message(topic, frame.raw.hex().encode(), now, 1, None, -conn.number)])
        conn.send(answer(frame, Command.CONFIRM, self.now_tag()))
        self.stats.confirmed += 1

    # --- the centre's side ------------------------------------------------------------------------
    def command(self, conn: _Connection, command: Command, adu: bytes) -> bytes:
        """Send a command of ours with the connection's next serial; returns the serial's bytes."""
        conn.serial = (conn.serial + 1) & 0xFFFF
        serial = conn.serial.to_bytes(2, "little")
        conn.send(
            encode_frame(
                serial=serial,
                command=command,
                source=CENTRE_ADDRESS,
                destination=conn.address or 0,
                adu=adu,
                time=self.now_tag(),
            )
        )
        return serial

    def held(self) -> set[int]:
        """The addresses of the devices heard on the connections open now."""
        return {c.address for c in self._conns.values() if c.address is not None}

    def _held_changed(self) -> None:
        if self.on_held is not None:
            self.on_held()

    def connection_of(self, address: int) -> _Connection | None:
        """The newest connection the device with this address was heard on (None: not connected)."""
        found = [c for c in self._conns.values() if c.address == address]
        return max(found, key=lambda c: c.number) if found else None

    async def ask(
        self, address: int, command: Command, adu: bytes, timeout_s: float = ANSWER_TIMEOUT_S
    ) -> Frame:
        """Send a request (4) or control command (1) to a connected device and wait for its answer:
        a response (5), confirm (3) or deny (6). LookupError: not connected; TimeoutError: no answer
        within `timeout_s` (GB/T 26875.3 §6.5: at most 10 s)."""
        conn = self.connection_of(address)
        if conn is None:
            raise LookupError(f"transmission device {address} is not connected")
        answered: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        serial = self.command(conn, command, adu)
        conn.requests[serial] = answered
        try:
            return await asyncio.wait_for(answered, timeout_s)
        finally:
            conn.requests.pop(serial, None)

    async def duty_check(self, address: int, device_id: str, timeout_minutes: int) -> DutyCheckRecord:
        """查岗: ask the device's duty person to answer within `timeout_minutes` (type 91). The device
        confirms the command at once; the person's answer comes later as an operation record (type
        24, bit 5 查岗应答), whose time is recorded on this check (`on_duty_answer`)."""
        record = DutyCheckRecord(address, device_id, self.clock(), timeout_minutes)
        reply = await self.ask(
            address, Command.CONTROL, encode_adu(TypeId.DUTY_CHECK, [DutyCheck(timeout_minutes)])
        )
        record.confirmed = reply.command == Command.CONFIRM
        self.duty_checks.append(record)
        return record

    def _duty_answered(self, station: Station, operator: int, ts: float) -> None:
        for record in reversed(self.duty_checks):
            if record.address == station.address and record.answered_at is None:
                record.answered_at, record.operator = ts, operator
                logger.info(
                    "GB/T 26875.3 duty check of %s answered after %.0f s (operator %d)",
                    station.device_id,
                    ts - record.sent_at,
                    operator,
                )
                if self.on_duty_answer is not None:
                    self.on_duty_answer(record)
                return

    def sync_clock(self, conn: _Connection) -> None:
        """Type 90 with the centre's time (`5A 01` + the 6-byte time: docs/gb26875.md)."""
        self.command(conn, Command.CONTROL, bytes([CLOCK_SYNC, 1]) + self.now_tag().encode())

    def inspect(self, conn: _Connection) -> None:
        """巡检: read the device's state (type 81); it answers with type 21."""
        self.command(conn, Command.REQUEST, READ_DEVICE_STATE)
        conn.inspection_sent_at = self.clock()
        self.stats.inspections_sent += 1

    async def _inspect(self) -> None:
        every = self.settings.inspection_every_s
        idle = self.settings.idle_close_s
        while True:
            await asyncio.sleep(min(every, idle) / 4)
            now = time.monotonic()
            for conn in list(self._conns.values()):
                if now - conn.last_heard > idle:
                    logger.warning("GB/T 26875.3 connection %s silent for %.0f s: closed", conn.peer, idle)
                    conn.close()
                elif conn.address is not None and now - conn.last_inspected >= every:
                    conn.last_inspected = now
                    self.inspect(conn)


_ALWAYS = LOGGED_ONLY | {DeviceEventKind.RESET}  # accepted from any device (ingest/decode.py)


class _Connection(asyncio.Protocol):
    def __init__(self, listener: Gb26875Listener) -> None:
        self.listener = listener
        self.number = next(listener._numbers)
        self.framer = Framer()
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.address: int | None = None  # the device's source address, once heard
        self.uploads: dict[int, _Upload] = {}
        self.requests: dict[bytes, asyncio.Future[Frame]] = {}  # our commands, by serial, awaiting answers
        self.connected_at = time.time()
        self.tokens = itertools.count(1)
        self.serial = 0  # ours, for what we initiate (GB/T 26875.3: each initiator numbers its own)
        self.last_heard = time.monotonic()
        self.last_inspected = time.monotonic()
        self.inspection_sent_at: float | None = None
        self.inspected_at: float | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        listener = self.listener
        if len(listener._conns) >= listener.settings.max_connections:
            logger.warning("GB/T 26875.3: %d connections already, refusing another", len(listener._conns))
            transport.close()
            return
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        listener._conns[self.number] = self
        listener.stats.connections = len(listener._conns)
        listener.stats.accepted += 1

    def data_received(self, data: bytes) -> None:
        self.last_heard = time.monotonic()
        for item in self.framer.feed(data):
            if self.transport is None or self.transport.is_closing():
                return
            try:
                self.listener.handle(self, item)
            except Exception:  # one bad frame must not end the connection or the listener
                logger.exception("GB/T 26875.3 connection %s: a frame could not be handled", self.peer)

    def heard(self, address: int) -> None:
        if self.address != address:
            first = self.address is None
            self.address = address
            if first:
                self.listener.sync_clock(self)
            self.listener._held_changed()

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        listener = self.listener
        listener._conns.pop(self.number, None)
        listener.stats.connections = len(listener._conns)
        self.transport = None
        if self.address is not None:
            listener._held_changed()
