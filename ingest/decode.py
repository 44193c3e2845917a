"""Decode a batch of MQTT messages into columns, rejecting what cannot be accepted.

The per-message loop does only what must be done per message (find the topic's device, a look-up
once the topic is known, and parse JSON); range and finiteness checks run vectorised over the whole
batch afterwards. A message is
accepted whole or rejected whole, with its raw bytes and a reason.
"""

from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain, repeat
from operator import attrgetter
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from core.domain import PANEL_LOG_EVENTS, DeviceEventKind, RejectReason
from ingest.dedupe import SeqTracker, fingerprint
from ingest.envelope import Message
from ingest.index import DeviceIndex
from ingest.rejects import Reject
from ingest.topics import OUTPUTS, MessageKind

_NUM = (int, float)
_NUMBERS: frozenset[type] = frozenset(_NUM)
_OPTIONAL_NUMBERS: frozenset[type] = frozenset((int, float, type(None)))
_INTS: frozenset[type] = frozenset((int,))
_DICTS: frozenset[type] = frozenset((dict,))
_received = attrgetter("received")
_dup = attrgetter("dup")

# Bounds on every numeric field (issue 18: a seq of 2**63 overflowed int64 and stopped ingest; ts 0
# and -1e300 were stored and could not be read back). Outside them a message is a counted reject.
SEQ_MAX = 2**53 - 1  # exact in a double (JSON numbers), and in SQLite's signed 64-bit integers
TS_MIN = 946_684_800.0  # 2000-01-01T00:00:00Z: nothing older comes from a working device clock
BATT_RANGE = (0.0, 100.0)  # percent
RSSI_RANGE = (-200.0, 100.0)  # dBm, or a modem's CSQ-style positive figure
CODE_RANGE = (-(2**31), 2**31 - 1)  # a device's fault code: a 32-bit integer
FRAME_HEX_MAX = 2 * 1054  # a GB/T 26875.3 frame is at most 1054 bytes
_HEX = re.compile(r"[0-9a-f]*")
# Events accepted from any device and only recorded in its event log: they raise nothing.
LOGGED_ONLY = PANEL_LOG_EVENTS | {DeviceEventKind.TEST, DeviceEventKind.HEARTBEAT, DeviceEventKind.UPLOAD}
# Telemetry topics are remembered per decoder (about 130 bytes each) for a registry of at most
# this many devices: 13 MB at most; a larger one takes the topic checks every time, as before, so
# the memory of a million-device service is not raised (docs/decisions/0010-registry-at-scale.md).
TOPIC_CACHE_MAX = 100_000


@dataclass(frozen=True, slots=True)
class DeviceEventMsg:
    dev: int
    device_id: str
    ts: float
    event: DeviceEventKind
    channel: str | None
    code: int | None
    received: float = 0.0
    frame: str | None = None  # the raw GB/T 26875.3 frame it came from, as hex
    logged: bool = True  # False: a state restated, not a change (kept out of the event log)


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


def _floats(
    raw: list[object], kinds: frozenset[type], bounds: tuple[float, float] | None = None
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """One field of every message as float64 (None: NaN), and whether each value is plain: of one
    of `kinds` (bool is not an int here, as in the per-message checks) and within `bounds`."""
    if set(map(type, raw)) <= kinds:
        try:
            values = np.array(raw, dtype=np.float64)
            good = np.ones(len(raw), dtype=bool)
        except (OverflowError, ValueError, TypeError):  # an int too large for a double
            values, good = _floats_one_by_one(raw, kinds)
    else:
        values, good = _floats_one_by_one(raw, kinds)
    if bounds is not None:
        good &= np.isnan(values) | ((values >= bounds[0]) & (values <= bounds[1]))
    return values, good


def _floats_one_by_one(
    raw: list[object], kinds: frozenset[type]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    values = np.full(len(raw), math.nan)
    good = np.zeros(len(raw), dtype=bool)
    for i, x in enumerate(raw):
        if type(x) in kinds:
            try:
                values[i] = math.nan if x is None else float(x)  # type: ignore[arg-type]
                good[i] = True
            except (OverflowError, ValueError, TypeError):
                pass
    return values, good


@dataclass
class _Plain:
    """The plain telemetry messages of a batch (see `Decoder._plain_telemetry`), columnar."""

    k: npt.NDArray[np.int64]  # message index in the batch
    dev: npt.NDArray[np.int32]
    seq: npt.NDArray[np.int64]
    ts: npt.NDArray[np.float64]
    batt: npt.NDArray[np.float64]
    rssi: npt.NDArray[np.float64]
    fp: npt.NDArray[np.int64]
    slot: npt.NDArray[np.int32]  # per sample
    value: npt.NDArray[np.float64]
    sample_msg: npt.NDArray[np.int32]  # per sample, its reading (index into the arrays above)


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
        # Telemetry topic -> device, for the topics already found plain (a registered device's
        # telemetry under its own site): a look-up instead of splitting the topic and checking its
        # parts, per message. Only such topics go in, so at most one per device; none when the
        # registry has more than TOPIC_CACHE_MAX devices.
        self._topic_dev: dict[str, int] = {}
        # Channel look-up for a whole batch at once: every channel name gets a code, every distinct
        # offsets table (one per profile, shared by its devices) a row; `_offset[row, code]` is the
        # channel's offset, -1 where the profile has no such channel (the last column: unknown names).
        all_offsets = index.channel_offsets
        ids = np.fromiter(map(id, all_offsets), dtype=np.int64, count=len(all_offsets))
        _, first, row_of = np.unique(ids, return_index=True, return_inverse=True)
        tables = [all_offsets[i] for i in first.tolist()]
        self._dev_table = row_of.astype(np.int32).reshape(-1)
        self._channel_code = {name: code for code, name in enumerate(sorted({n for t in tables for n in t}))}
        self._offset = np.full((len(tables), len(self._channel_code) + 1), -1, dtype=np.int32)
        for row, offsets in enumerate(tables):
            for name, off in offsets.items():
                self._offset[row, self._channel_code[name]] = off

    def _plain_telemetry(self, messages: list[Message]) -> tuple[_Plain, list[int]]:
        """The batch's plain telemetry readings, decoded column by column, and the indices of every
        other message, for the per-message path.

        Plain is what the per-message path would accept without a second look: a telemetry topic
        of a registered device of that site, a payload within the size limit holding a JSON object
        whose `ts` is a number, `seq` an integer from 0 to 2^53-1 or absent, `batt` and `rssi`
        numbers in range or absent, and `v` a non-empty object of the profile's channels to
        numbers. Only the topic and the JSON parse are per message; each field is then checked for
        the whole batch at once. A message that is not plain in any way goes to the per-message
        path, which finds its reason; so both paths accept and reject the same messages."""
        idx = self.index
        dev_of, sites = idx.dev_of, idx.sites
        p0, p1 = self.prefix[0], self.prefix[1] if len(self.prefix) > 1 else ""
        telemetry = MessageKind.TELEMETRY.value
        max_payload = self.max_payload
        loads, bad_json = orjson.loads, orjson.JSONDecodeError
        slow: list[int] = []
        ks: list[int] = []
        devs: list[int] = []
        objs: list[dict[str, object]] = []
        payloads: list[bytes] = []
        topic_dev = self._topic_dev
        remember = idx.n_devices <= TOPIC_CACHE_MAX
        for k, m in enumerate(messages):
            dev = topic_dev.get(m.topic)
            if dev is None:
                parts = m.topic.split("/")
                if len(parts) == 5 and parts[4] == telemetry and parts[0] == p0 and parts[1] == p1:
                    dev = dev_of.get(parts[3])
                    if dev is not None and sites[dev] != parts[2]:
                        dev = None
                    if dev is not None and remember:
                        topic_dev[m.topic] = dev
            if dev is not None and len(m.payload) <= max_payload:
                try:
                    obj = loads(m.payload)
                except bad_json:
                    slow.append(k)
                    continue
                if type(obj) is dict:
                    ks.append(k)
                    devs.append(dev)
                    objs.append(obj)
                    payloads.append(m.payload)
                    continue
            slow.append(k)

        get = dict.get
        n = len(objs)
        ts, good = _floats(list(map(get, objs, repeat("ts"))), _NUMBERS)
        batt, good_batt = _floats(list(map(get, objs, repeat("batt"))), _OPTIONAL_NUMBERS, BATT_RANGE)
        rssi, good_rssi = _floats(list(map(get, objs, repeat("rssi"))), _OPTIONAL_NUMBERS, RSSI_RANGE)
        good &= good_batt & good_rssi
        seq_raw: list[Any] = list(map(get, objs, repeat("seq")))
        if set(map(type, seq_raw)) <= _INTS and (
            not seq_raw or (min(seq_raw) >= 0 and max(seq_raw) <= SEQ_MAX)
        ):
            seq = np.array(seq_raw, dtype=np.int64)  # the usual: every message has a plain seq
        else:
            plain_seq = [x is None or (type(x) is int and 0 <= x <= SEQ_MAX) for x in seq_raw]
            good &= np.array(plain_seq, dtype=bool)
            seq = np.array(
                [x if ok and x is not None else -1 for x, ok in zip(seq_raw, plain_seq, strict=True)],
                dtype=np.int64,
            )

        vs: list[Any] = list(map(get, objs, repeat("v")))
        if set(map(type, vs)) <= _DICTS:
            counts = np.fromiter(map(len, vs), dtype=np.int64, count=n)
        else:
            counts = np.array([len(v) if type(v) is dict else 0 for v in vs], dtype=np.int64)
            vs = [v if type(v) is dict else {} for v in vs]
        good &= counts > 0
        sample_msg = np.repeat(np.arange(n, dtype=np.int32), counts)
        code = self._channel_code
        codes = np.fromiter(
            map(code.get, chain.from_iterable(vs), repeat(-1)), dtype=np.int64, count=int(sample_msg.size)
        )
        dev_arr = np.array(devs, dtype=np.int32)
        off = self._offset[self._dev_table[dev_arr[sample_msg]], codes]
        value, good_value = _floats(list(chain.from_iterable(map(dict.values, vs))), _NUMBERS)
        bad_sample = (off < 0) | ~good_value
        if bad_sample.any():
            good &= np.bincount(sample_msg[bad_sample], minlength=n) == 0
        slot = (idx.slot_base[dev_arr[sample_msg]] + off).astype(np.int32)
        fp = np.fromiter(map(zlib.crc32, payloads), dtype=np.int64, count=n) & 0xFFFF
        fp[fp == 0] = 1  # as `fingerprint`: 0 means "not known"
        k_arr = np.array(ks, dtype=np.int64)
        if not good.all():
            slow = sorted([*slow, *k_arr[~good].tolist()])
            keep = good[sample_msg]
            renumber = np.cumsum(good, dtype=np.int32) - 1
            slot, value, sample_msg = slot[keep], value[keep], renumber[sample_msg[keep]]
            k_arr, dev_arr, seq, fp = k_arr[good], dev_arr[good], seq[good], fp[good]
            ts, batt, rssi = ts[good], batt[good], rssi[good]
        return _Plain(k_arr, dev_arr, seq, ts, batt, rssi, fp, slot, value, sample_msg), slow

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
        r_k: list[int] = []  # message index of each reading
        r_dev: list[int] = []
        r_seq: list[int] = []
        r_ts: list[float] = []
        r_batt: list[float] = []
        r_rssi: list[float] = []
        r_fp: list[int] = []
        seen_dev: list[int] = []
        seen_at: list[float] = []
        event_duplicates = 0
        self._event_clock_changes = []

        plain, others = self._plain_telemetry(messages)
        for k in others:  # everything not plain telemetry, one by one (in batch order)
            m = messages[k]
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
                    r_k.append(k)
                    r_dev.append(dev)
                    r_seq.append(seq)
                    r_ts.append(ts)
                    r_batt.append(batt)
                    r_rssi.append(rssi)
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

        if r_k:  # readings of the per-message path: merged with the plain ones, in batch order
            n_plain = int(plain.k.size)
            order = np.argsort(np.concatenate([plain.k, np.array(r_k, dtype=np.int64)]), kind="stable")
            position = np.empty_like(order)
            position[order] = np.arange(order.size)
            sample_msg = position[
                np.concatenate([plain.sample_msg, np.array(s_msg, dtype=np.int64) + n_plain])
            ]
            by_reading = np.argsort(sample_msg, kind="stable")  # each message's samples stay in order
            sample_msg = sample_msg[by_reading].astype(np.int32)
            slot = np.concatenate([plain.slot, np.array(s_slot, dtype=np.int32)])[by_reading]
            value = np.concatenate([plain.value, np.array(s_val, dtype=np.float64)])[by_reading]
            k_all = np.concatenate([plain.k, np.array(r_k, dtype=np.int64)])[order]
            dev_all = np.concatenate([plain.dev, np.array(r_dev, dtype=np.int32)])[order]
            seq_all = np.concatenate([plain.seq, np.array(r_seq, dtype=np.int64)])[order]
            reading_ts = np.concatenate([plain.ts, np.array(r_ts, dtype=np.float64)])[order]
            batt_all = np.concatenate([plain.batt, np.array(r_batt, dtype=np.float64)])[order]
            rssi_all = np.concatenate([plain.rssi, np.array(r_rssi, dtype=np.float64)])[order]
            fp_all = np.concatenate([plain.fp, np.array(r_fp, dtype=np.int64)])[order]
        else:
            slot, value, sample_msg = plain.slot, plain.value, plain.sample_msg
            k_all, dev_all, seq_all, reading_ts = plain.k, plain.dev, plain.seq, plain.ts
            batt_all, rssi_all, fp_all = plain.batt, plain.rssi, plain.fp
        r_msg = list(map(messages.__getitem__, k_all.tolist()))
        r_dev = dev_all.tolist()
        r_seq = seq_all.tolist()
        r_ts = reading_ts.tolist()
        r_fp = fp_all.tolist()
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
        counted = np.flatnonzero(ok & (seq_all >= 0))  # readings without a seq are never duplicates
        received = list(map(_received, r_msg))
        if counted.size == len(r_msg):  # the usual: every reading has a seq and passed the checks
            fresh = self.seq.accept_many(r_dev, r_seq, r_ts, r_fp, received, list(map(_dup, r_msg)))
        elif counted.size:
            pick = counted.tolist()
            fresh = self.seq.accept_many(
                [r_dev[i] for i in pick],
                [r_seq[i] for i in pick],
                [r_ts[i] for i in pick],
                [r_fp[i] for i in pick],
                [received[i] for i in pick],
                [r_msg[i].dup for i in pick],
            )
        if counted.size:
            repeated = counted[~np.array(fresh, dtype=bool)]
            ok[repeated] = False
            duplicates += int(repeated.size)

        keep = ok[sample_msg] if sample_msg.size else np.zeros(0, dtype=bool)
        # Each kept sample's reading, renumbered over the kept readings.
        renumber = np.cumsum(ok, dtype=np.int32) - 1
        rdev = dev_all[ok]
        r_received = np.array(received, dtype=np.float64)[ok]
        return DecodedBatch(
            sample_slot=slot[keep],
            sample_ts=reading_ts[sample_msg[keep]],
            sample_value=value[keep],
            reading_dev=rdev,
            reading_seq=seq_all[ok],
            reading_ts=reading_ts[ok],
            reading_batt=batt_all[ok],
            reading_rssi=rssi_all[ok],
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
            reading_msg=r_msg
            if ok.all()
            else [m for m, good in zip(r_msg, ok.tolist(), strict=True) if good],
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
        state = self.seq.changed_rows(self.index.device_ids)
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
            event not in LOGGED_ONLY
            and event is not DeviceEventKind.RESET
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
        frame = obj.get("frame")
        if frame is not None and (
            not isinstance(frame, str) or len(frame) > FRAME_HEX_MAX or not _HEX.fullmatch(frame)
        ):
            raise _Rejected(
                RejectReason.BAD_PAYLOAD, f"frame must be the frame's bytes as hex, got {_brief(frame)}"
            )
        # Checked last: a rejected event must not take its seq from a valid one sent again.
        fp = fingerprint(m.payload)
        if seq >= 0 and not self.seq.accept(dev, seq, ts, fp, received=m.received, redelivered=m.dup):
            return None
        logged = obj.get("log", True)
        if type(logged) is not bool:
            raise _Rejected(RejectReason.BAD_PAYLOAD, f"log must be true or false, got {_brief(logged)}")
        return DeviceEventMsg(dev, device_id, ts, event, channel, code, m.received, frame, logged)
