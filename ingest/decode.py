"""Decode a batch of MQTT messages into columns, rejecting what cannot be accepted.

The per-message loop does only what must be done per message (split the topic, parse JSON, look
names up); range and finiteness checks run vectorised over the whole batch afterwards. A message is
accepted whole or rejected whole, with its raw bytes and a reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import numpy.typing as npt
import orjson

from core.domain import DeviceEventKind, RejectReason
from ingest.dedupe import SeqTracker, fingerprint
from ingest.envelope import Message
from ingest.index import DeviceIndex
from ingest.rejects import Reject
from ingest.topics import OUTPUTS, MessageKind

_NUM = (int, float)

# Bounds on every numeric field (issue 18: a seq of 2**63 overflowed int64 and stopped ingest; ts 0
# and -1e300 were stored and could not be read back). Outside them a message is a counted reject.
SEQ_MAX = 2**53 - 1  # exact in a double (JSON numbers), and in SQLite's signed 64-bit integers
TS_MIN = 946_684_800.0  # 2000-01-01T00:00:00Z: nothing older comes from a working device clock
BATT_RANGE = (0.0, 100.0)  # percent
RSSI_RANGE = (-200.0, 100.0)  # dBm, or a modem's CSQ-style positive figure
CODE_RANGE = (-(2**31), 2**31 - 1)  # a device's fault code: a 32-bit integer


@dataclass(frozen=True, slots=True)
class DeviceEventMsg:
    dev: int
    device_id: str
    ts: float
    event: DeviceEventKind
    channel: str | None
    code: int | None


@dataclass(frozen=True, slots=True)
class StatusMsg:
    dev: int
    device_id: str
    online: bool
    ts: float


@dataclass(frozen=True, slots=True)
class ClockChange:
    """A device's clock found wrong (its messages then take their receipt time), or right again."""

    dev: int
    device_id: str
    wrong: bool
    ts: float
    detail: str


@dataclass
class DecodedBatch:
    """One batch, columnar. Samples are (device, channel) values; readings are whole messages."""

    sample_slot: npt.NDArray[np.int32]
    sample_ts: npt.NDArray[np.float64]
    sample_value: npt.NDArray[np.float64]
    reading_dev: npt.NDArray[np.int32]  # accepted telemetry messages
    reading_seq: npt.NDArray[np.int64]
    reading_ts: npt.NDArray[np.float64]
    reading_batt: npt.NDArray[np.float64]  # NaN where absent
    reading_rssi: npt.NDArray[np.float64]
    seen_dev: npt.NDArray[np.int32]  # every device that sent an accepted message, with receipt time
    seen_at: npt.NDArray[np.float64]
    # Finite samples outside the channel's physical range: their message is rejected, but sensor
    # health counts them (a sensor reporting the impossible is faulty).
    range_slot: npt.NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    range_ts: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0, dtype=np.float64))
    range_value: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0, dtype=np.float64))
    events: list[DeviceEventMsg] = field(default_factory=list)
    statuses: list[StatusMsg] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    unknown_devices: list[tuple[str, str]] = field(default_factory=list)  # (site, device_id)
    duplicates: int = 0
    clock_changes: list[ClockChange] = field(default_factory=list)
    # (device_id, max_seq, bits, last_ts, fingerprints) of the devices this batch touched: stored with
    # the batch so redeliveries after a crash are recognised.
    seq_state: list[tuple[str, int, int, float, bytes]] = field(default_factory=list)
    # The accepted telemetry messages, in reading order, and each sample's reading: what poison
    # isolation needs to turn a sample that storage refuses back into its message.
    reading_msg: list[Message] = field(default_factory=list)
    sample_reading: npt.NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, dtype=np.int32))

    @property
    def n_samples(self) -> int:
        return int(self.sample_slot.size)


def empty_batch(rejects: list[Reject] | None = None) -> DecodedBatch:
    """A batch with no readings: for rejects found outside decoding, or alarm events of no batch."""
    i32, f64 = np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float64)
    return DecodedBatch(
        sample_slot=i32,
        sample_ts=f64,
        sample_value=f64,
        reading_dev=i32,
        reading_seq=np.zeros(0, dtype=np.int64),
        reading_ts=f64,
        reading_batt=f64,
        reading_rssi=f64,
        seen_dev=i32,
        seen_at=f64,
        rejects=list(rejects or []),
    )


class _Rejected(Exception):  # noqa: N818 - control flow inside the decoder, never escapes it
    def __init__(self, reason: RejectReason, detail: str) -> None:
        self.reason = reason
        self.detail = detail


def _brief(value: object, limit: int = 40) -> str:
    """A short rendering of a JSON value for a reject's detail, safe for any input: `repr` of an
    array nested a thousand deep raises RecursionError, and a long string would fill the log."""
    if isinstance(value, (dict, list)):
        return f"a JSON {'object' if isinstance(value, dict) else 'array'}"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _timestamp(raw: object, received: float) -> float:
    """Epoch seconds of `ts`, not yet range-checked (the caller does, against its clock)."""
    if raw is None:
        return received  # devices without a clock: the receipt time stands in
    try:
        if type(raw) in _NUM:
            return float(raw)  # type: ignore[arg-type]
        if isinstance(raw, str):
            return datetime.fromisoformat(raw).timestamp()
    except (ValueError, OverflowError, OSError):
        raise _Rejected(
            RejectReason.BAD_TIMESTAMP, f"ts {_brief(raw)} is neither epoch seconds nor RFC 3339"
        ) from None
    raise _Rejected(
        RejectReason.BAD_PAYLOAD, f"ts must be a number or RFC 3339 string, got {type(raw).__name__}"
    )


def _seq(raw: object) -> int:
    if raw is None:
        return -1
    if type(raw) is not int or not 0 <= raw <= SEQ_MAX:
        raise _Rejected(
            RejectReason.BAD_PAYLOAD, f"seq must be an integer from 0 to 2^53-1, got {_brief(raw)}"
        )
    return raw


def _optional_number(obj: dict[str, object], key: str, bounds: tuple[float, float]) -> float:
    raw = obj.get(key)
    if raw is None:
        return math.nan
    if type(raw) not in _NUM or not bounds[0] <= raw <= bounds[1]:  # type: ignore[operator]
        raise _Rejected(
            RejectReason.BAD_PAYLOAD,
            f"{key} must be a number from {bounds[0]:g} to {bounds[1]:g}, got {_brief(raw)}",
        )
    return float(raw)  # type: ignore[arg-type]


class Decoder:
    def __init__(
        self,
        index: DeviceIndex,
        *,
        prefix: str = "fw/v1",
        max_payload: int = 16_384,
        max_future_s: float = 300.0,
        max_past_s: float = 30 * 86_400.0,
    ) -> None:
        self.index = index
        self.prefix = prefix.split("/")
        self.max_payload = max_payload
        self.max_future_s = max_future_s
        self.max_past_s = max_past_s
        self.seq = SeqTracker(index.n_devices)
        # Device -> its messages in a row with a timestamp outside the bounds; from 2 on, its clock
        # is taken to be wrong (`_judge_clock`).
        self._clock_strikes: dict[int, int] = {}
        self._event_clock_changes: list[ClockChange] = []

    def decode(self, messages: list[Message], now: float) -> DecodedBatch:
        idx = self.index
        dev_of, sites, offsets, bases = idx.dev_of, idx.sites, idx.channel_offsets, idx.slot_base
        p0, p1 = self.prefix[0], self.prefix[1] if len(self.prefix) > 1 else ""
        rejects: list[Reject] = []
        unknown: list[tuple[str, str]] = []
        events: list[DeviceEventMsg] = []
        statuses: list[StatusMsg] = []
        s_slot: list[int] = []
        s_val: list[float] = []
        s_msg: list[int] = []  # reading index of each sample
        r_dev: list[int] = []
        r_seq: list[int] = []
        r_ts: list[float] = []
        r_batt: list[float] = []
        r_rssi: list[float] = []
        r_msg: list[Message] = []
        r_fp: list[int] = []
        seen_dev: list[int] = []
        seen_at: list[float] = []
        event_duplicates = 0
        self._event_clock_changes = []

        for m in messages:
            parts = m.topic.split("/")
            device_id: str | None = None
            if len(parts) == 4 and parts[3] in OUTPUTS:
                continue  # our own alarm/ticket publications, not device input
            try:
                if len(parts) != 5 or parts[0] != p0 or parts[1] != p1:
                    raise _Rejected(RejectReason.BAD_TOPIC, f"expected {p0}/{p1}/<site>/<device>/<kind>")
                site, device_id, kind = parts[2], parts[3], parts[4]
                dev = dev_of.get(device_id)
                if dev is None:
                    unknown.append((site, device_id))
                    raise _Rejected(RejectReason.UNKNOWN_DEVICE, f"device {device_id!r} is not registered")
                if site != sites[dev]:
                    raise _Rejected(
                        RejectReason.SITE_MISMATCH, f"device {device_id!r} belongs to site {sites[dev]!r}"
                    )
                if len(m.payload) > self.max_payload:
                    raise _Rejected(RejectReason.TOO_LARGE, f"{len(m.payload)} bytes > {self.max_payload}")
                if kind == MessageKind.TELEMETRY:
                    obj = self._json_object(m.payload)
                    v = obj.get("v")
                    if type(v) is not dict or not v:
                        raise _Rejected(
                            RejectReason.BAD_PAYLOAD, "'v' must be a non-empty object of channel -> number"
                        )
                    ts = _timestamp(obj.get("ts"), m.received)
                    seq = _seq(obj.get("seq"))
                    batt = _optional_number(obj, "batt", BATT_RANGE)
                    rssi = _optional_number(obj, "rssi", RSSI_RANGE)
                    chans = offsets[dev]
                    base = int(bases[dev])
                    slots = []
                    vals = []
                    for name, value in v.items():
                        off = chans.get(name)
                        if off is None:
                            raise _Rejected(
                                RejectReason.UNKNOWN_CHANNEL,
                                f"channel {_brief(name)} is not one of {sorted(chans)}",
                            )
                        if type(value) not in _NUM:
                            raise _Rejected(
                                RejectReason.BAD_PAYLOAD,
                                f"channel {_brief(name)}: {_brief(value)} is not a number",
                            )
                        slots.append(base + off)
                        vals.append(value)
                    n = len(r_dev)
                    s_slot.extend(slots)
                    s_val.extend(vals)
                    s_msg.extend([n] * len(slots))
                    r_dev.append(dev)
                    r_seq.append(seq)
                    r_ts.append(ts)
                    r_batt.append(batt)
                    r_rssi.append(rssi)
                    r_msg.append(m)
                    r_fp.append(fingerprint(m.payload))
                elif kind == MessageKind.EVENT:
                    obj = self._json_object(m.payload)
                    event = self._event(dev, device_id, obj, m, now)
                    seen_dev.append(dev)
                    seen_at.append(m.received)
                    if event is None:
                        event_duplicates += 1
                    else:
                        events.append(event)
                elif kind == MessageKind.STATUS:
                    text = m.payload.strip().lower()
                    if text not in (b"online", b"offline"):
                        raise _Rejected(RejectReason.BAD_PAYLOAD, "status must be 'online' or 'offline'")
                    statuses.append(StatusMsg(dev, device_id, text == b"online", m.received))
                else:
                    raise _Rejected(RejectReason.BAD_TOPIC, f"unknown message kind {kind!r}")
            except _Rejected as bad:
                rejects.append(Reject(m.received, m.topic, m.payload, bad.reason, bad.detail, device_id))
            except Exception as exc:  # a case nobody foresaw: this message is rejected, the batch goes on
                rejects.append(
                    Reject(
                        m.received,
                        m.topic,
                        m.payload,
                        RejectReason.UNPROCESSABLE,
                        f"decoding failed: {type(exc).__name__}: {str(exc)[:200]}",
                        device_id,
                    )
                )

        slot = np.array(s_slot, dtype=np.int32)
        value = np.array(s_val, dtype=np.float64)
        sample_msg = np.array(s_msg, dtype=np.int32)
        reading_ts = np.array(r_ts, dtype=np.float64)
        ok = np.ones(len(r_dev), dtype=bool)

        # Vectorised checks over all samples of the batch.
        finite = np.isfinite(value)
        in_range = (value >= idx.slot_lo[slot]) & (value <= idx.slot_hi[slot])
        bad_sample = ~(finite & in_range)
        future = reading_ts > now + self.max_future_s
        past = ~(reading_ts >= max(TS_MIN, now - self.max_past_s))  # NaN is "past" too
        if bad_sample.any() or future.any() or past.any():
            for i in np.unique(sample_msg[bad_sample]).tolist():
                ok[i] = False
                j = int(np.flatnonzero((sample_msg == i) & bad_sample)[0])
                name = idx.slot_channel[slot[j]]
                m = r_msg[i]
                if not finite[j]:
                    reason, detail = RejectReason.NON_FINITE, f"channel {name!r} is {value[j]}"
                else:
                    unit = idx.profiles[r_dev[i]].channels[name].unit
                    reason = RejectReason.OUT_OF_RANGE
                    detail = (
                        f"channel {name!r} = {value[j]:g} outside "
                        f"[{idx.slot_lo[slot[j]]:g}, {idx.slot_hi[slot[j]]:g}] {unit}"
                    )
                rejects.append(
                    Reject(m.received, m.topic, m.payload, reason, detail, idx.device_ids[r_dev[i]])
                )
        clock_changes: list[ClockChange] = []
        if self._clock_strikes or future.any() or past.any():
            devs = np.array(r_dev, dtype=np.int64)
            # Every reading of a device whose clock is in question, before this batch or within it.
            judged = np.isin(devs, [*self._clock_strikes, *devs[future | past].tolist()])
            for i in np.flatnonzero(judged & ok).tolist():
                m = r_msg[i]
                reject = self._judge_clock(r_dev[i], r_ts[i], m, now, clock_changes)
                if reject is None:
                    r_ts[i] = reading_ts[i] = m.received if (future[i] or past[i]) else r_ts[i]
                else:
                    ok[i] = False
                    rejects.append(reject)

        duplicates = event_duplicates
        accept = self.seq.accept
        for i in range(len(r_dev)):
            if ok[i] and r_seq[i] >= 0:
                m = r_msg[i]
                if not accept(r_dev[i], r_seq[i], r_ts[i], r_fp[i], received=m.received, redelivered=m.dup):
                    ok[i] = False
                    duplicates += 1

        keep = ok[sample_msg] if sample_msg.size else np.zeros(0, dtype=bool)
        # Each kept sample's reading, renumbered over the kept readings.
        renumber = np.cumsum(ok, dtype=np.int32) - 1
        rdev = np.array(r_dev, dtype=np.int32)[ok]
        r_received = np.array([m.received for m in r_msg], dtype=np.float64)[ok]
        return DecodedBatch(
            sample_slot=slot[keep],
            sample_ts=reading_ts[sample_msg[keep]],
            sample_value=value[keep],
            reading_dev=rdev,
            reading_seq=np.array(r_seq, dtype=np.int64)[ok],
            reading_ts=reading_ts[ok],
            reading_batt=np.array(r_batt, dtype=np.float64)[ok],
            reading_rssi=np.array(r_rssi, dtype=np.float64)[ok],
            seen_dev=np.concatenate([rdev, np.array(seen_dev, dtype=np.int32)]),
            seen_at=np.concatenate([r_received, np.array(seen_at, dtype=np.float64)]),
            range_slot=slot[finite & ~in_range],
            range_ts=reading_ts[sample_msg[finite & ~in_range]],
            range_value=value[finite & ~in_range],
            events=events,
            statuses=statuses,
            rejects=rejects,
            unknown_devices=unknown,
            duplicates=duplicates,
            clock_changes=clock_changes + self._event_clock_changes,
            seq_state=self._take_seq_state(),
            reading_msg=[m for m, good in zip(r_msg, ok.tolist(), strict=True) if good],
            sample_reading=renumber[sample_msg[keep]].astype(np.int32),
        )

    def _judge_clock(
        self, dev: int, ts: float, m: Message, now: float, changes: list[ClockChange]
    ) -> Reject | None:
        """A timestamp outside the bounds is rejected once. When the device's next message is out
        of bounds too, its clock is wrong, not the message: from then on its messages are stamped
        with their receipt time (a wrong clock must never make a detector deaf) and the change is
        reported, for a fault alarm; a plausible timestamp ends it. None: accept."""
        plausible = max(TS_MIN, now - self.max_past_s) <= ts <= now + self.max_future_s
        strikes = self._clock_strikes
        device_id = self.index.device_ids[dev]
        if plausible:
            if strikes.pop(dev, 0) >= 2:
                changes.append(ClockChange(dev, device_id, False, m.received, ""))
            return None
        n = strikes[dev] = strikes.get(dev, 0) + 1
        off = (
            f"ts {ts:.6g} is {ts - now:+.0f} s from the service clock"
            if math.isfinite(ts)
            else f"ts {ts} is not a finite number"
        )
        if n == 2:
            changes.append(ClockChange(dev, device_id, True, m.received, off))
        if n >= 2:
            return None
        future = ts > now + self.max_future_s
        reason = RejectReason.FUTURE_TIMESTAMP if future else RejectReason.BAD_TIMESTAMP
        detail = (
            f"ts {ts:.3f} is {ts - now:.0f} s ahead of the service clock"
            if future
            else self._past_detail(ts, now)
        )
        return Reject(m.received, m.topic, m.payload, reason, detail, device_id)

    def _past_detail(self, ts: float, now: float) -> str:
        if not math.isfinite(ts):
            return f"ts {ts} is not a finite number"
        if ts < TS_MIN:
            return f"ts {ts:.6g} is before 2000-01-01"
        return f"ts {ts:.3f} is {now - ts:.0f} s behind the service clock (limit {self.max_past_s:.0f} s)"

    def _take_seq_state(self) -> list[tuple[str, int, int, float, bytes]]:
        ids = self.index.device_ids
        state = [(ids[d], mx, bits, ts, fps) for d, mx, bits, ts, fps in self.seq.snapshot()]
        self.seq.dirty.clear()
        return state

    @staticmethod
    def _json_object(payload: bytes) -> dict[str, object]:
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise _Rejected(RejectReason.BAD_JSON, f"not JSON: {exc}") from None
        if type(obj) is not dict:
            raise _Rejected(RejectReason.BAD_PAYLOAD, f"expected a JSON object, got {type(obj).__name__}")
        return obj

    def _event(
        self, dev: int, device_id: str, obj: dict[str, object], m: Message, now: float
    ) -> DeviceEventMsg | None:
        """The validated device event, or None if it is a redelivered duplicate."""
        raw = obj.get("event")
        try:
            event = DeviceEventKind(str(raw)) if isinstance(raw, str) else DeviceEventKind("?")
        except ValueError:
            raise _Rejected(
                RejectReason.UNKNOWN_EVENT,
                f"event {_brief(raw)} is not one of {[e.value for e in DeviceEventKind]}",
            ) from None
        profile = self.index.profiles[dev]
        mapped = {e.value.removesuffix("_clear") for e in profile.events}
        if (
            event not in (DeviceEventKind.TEST, DeviceEventKind.RESET)
            and event.removesuffix("_clear") not in mapped
        ):
            raise _Rejected(
                RejectReason.UNKNOWN_EVENT, f"profile {profile.id!r} defines no {event.value!r} event"
            )
        ts = _timestamp(obj.get("ts"), m.received)
        reject = self._judge_clock(dev, ts, m, now, self._event_clock_changes)
        if reject is not None:
            raise _Rejected(reject.reason, reject.detail)
        if not max(TS_MIN, now - self.max_past_s) <= ts <= now + self.max_future_s:
            ts = m.received
        seq = _seq(obj.get("seq"))
        channel = obj.get("channel")
        code = obj.get("code")
        if channel is not None and (not isinstance(channel, str) or len(channel) > 64):
            raise _Rejected(
                RejectReason.BAD_PAYLOAD, f"channel must be a short string, got {_brief(channel)}"
            )
        if code is not None and (type(code) is not int or not CODE_RANGE[0] <= code <= CODE_RANGE[1]):
            raise _Rejected(RejectReason.BAD_PAYLOAD, f"code must be a 32-bit integer, got {_brief(code)}")
        # Checked last: a rejected event must not take its seq from a valid one sent again.
        fp = fingerprint(m.payload)
        if seq >= 0 and not self.seq.accept(dev, seq, ts, fp, received=m.received, redelivered=m.dup):
            return None
        return DeviceEventMsg(dev, device_id, ts, event, channel, code)
