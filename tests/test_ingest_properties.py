"""Properties of ingest decoding and de-duplication over generated, hostile input (issue 18).

Each test states a rule that must hold for every input hypothesis can think of: decoding never
raises and accounts for every message once, what it accepts is within the documented bounds, no
message can make a device deaf, exact repeats are dropped, and the de-duplication state survives
a restart.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from core.domain import RejectReason
from ingest.decode import BATT_RANGE, RSSI_RANGE, SEQ_MAX, TS_MIN, DecodedBatch, Decoder
from ingest.dedupe import WINDOW, SeqTracker, fingerprint
from ingest.envelope import Message
from ingest.index import DeviceIndex
from ingest.topics import OUTPUTS
from storage.telemetry import TelemetryStore
from tests.conftest import PROFILES, small_registry

NOW = 1_800_000_000.0
INDEX = DeviceIndex.build(small_registry(), PROFILES)
DEVICE = "smk-1-1"
DEV = INDEX.dev_of[DEVICE]
MAX_FUTURE_S = 300.0
MAX_PAST_S = 30 * 86_400.0
OLDEST = max(TS_MIN, NOW - MAX_PAST_S)

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decoder() -> Decoder:
    return Decoder(INDEX, max_future_s=MAX_FUTURE_S, max_past_s=MAX_PAST_S)


# --- strategies ------------------------------------------------------------------------------------
# Any JSON value, numbers of every size included. Encoded by the standard library, which writes
# integers of any length and NaN / Infinity (not JSON: orjson refuses them, as a device's may be).
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=20),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
in_window_ts = st.floats(min_value=OLDEST, max_value=NOW + MAX_FUTURE_S)
timestamps = st.one_of(
    in_window_ts,
    st.integers(min_value=int(OLDEST), max_value=int(NOW + MAX_FUTURE_S)),
    st.sampled_from([0, -1, -1e300, 1e300, "NaN", "", "yesterday", "2027-01-15T08:00:00+08:00"]),
    st.sampled_from(["0001-01-01T00:00:00", "9999-12-31T23:59:59+00:00", "2027-01-15T08:00:00"]),
    st.datetimes().map(lambda d: d.isoformat()),
    json_values,
)
seqs = st.one_of(
    st.integers(min_value=0, max_value=200),
    st.integers(min_value=0, max_value=SEQ_MAX),
    st.sampled_from([-1, SEQ_MAX + 1, 2**63, 2**64 - 1, 2**64, 1.5, "7", True]),
    json_values,
)
channel_names = st.sampled_from(["smoke", "temp", "pressure", "co2", ""]) | st.text(max_size=6)
channel_values = st.one_of(
    st.floats(min_value=-30, max_value=130),
    st.integers(min_value=-30, max_value=130),
    st.floats(),
    json_values,
)
# Fields mostly valid, each one broken now and then: so that readings are accepted often, and a
# reading broken in one field only is common.
good_ts = st.one_of(in_window_ts, in_window_ts, st.none())
good_seq = st.one_of(st.integers(min_value=0, max_value=200), st.integers(min_value=0, max_value=SEQ_MAX))
good_values = st.one_of(
    st.fixed_dictionaries({"smoke": st.floats(0, 2)}, optional={"temp": st.floats(-20, 120)}),
    st.fixed_dictionaries({"pressure": st.floats(0, 2.5)}),
)


def mostly(good: st.SearchStrategy[object], bad: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.one_of(good, good, good, bad)


def optional_fields(
    required: dict[str, st.SearchStrategy[object]], **optional: st.SearchStrategy[object]
) -> st.SearchStrategy[dict[str, object]]:
    """Objects with these keys, any subset of the optional ones, and now and then a stray one."""
    return st.fixed_dictionaries(required, optional=optional | {"x": json_values})


telemetry_objects = optional_fields(
    {"v": mostly(good_values, st.dictionaries(channel_names, channel_values, max_size=3) | json_values)},
    ts=mostly(good_ts, timestamps),
    seq=mostly(good_seq, seqs),
    batt=mostly(st.integers(0, 100), st.floats(min_value=-10, max_value=110) | json_values),
    rssi=mostly(st.floats(-120, -30), st.floats(min_value=-250, max_value=150) | json_values),
)
event_objects = optional_fields(
    {
        "event": mostly(
            st.sampled_from(["alarm", "alarm_clear", "fault", "fault_clear", "test", "reset"]),
            st.sampled_from(["tamper", "explode", ""]) | json_values,
        )
    },
    ts=mostly(good_ts, timestamps),
    seq=mostly(good_seq, seqs),
    channel=mostly(st.sampled_from(["smoke", "temp"]), st.sampled_from(["x" * 65]) | json_values),
    code=mostly(st.integers(0, 255), st.integers(min_value=-(2**33), max_value=2**33) | json_values),
)
statuses = st.sampled_from([b"online", b"OFFLINE\n", b" online ", b"maybe", b""])
payloads = st.one_of(
    telemetry_objects.map(lambda o: json.dumps(o).encode()),
    event_objects.map(lambda o: json.dumps(o).encode()),
    json_values.map(lambda o: json.dumps(o).encode()),
    statuses,
    st.just(b"x" * 20_000),
    st.binary(max_size=64),
)
segments = st.text(alphabet=st.characters(blacklist_characters="/"), max_size=8)
topics = st.one_of(
    st.builds(
        "fw/v1/{}/{}/{}".format,
        st.sampled_from(["s1", "s2"]) | segments,
        st.sampled_from(INDEX.device_ids) | segments,
        st.sampled_from(["telemetry", "event", "status"]) | segments,
    ),
    st.builds("fw/v1/{}/{}".format, st.sampled_from(["s1", "s9"]), st.sampled_from(sorted(OUTPUTS))),
    st.lists(segments, max_size=6).map("/".join),
)
receipt = st.floats(min_value=NOW - 120, max_value=NOW)
# Anything on any topic, and messages of a registered device whose payload suits the topic's kind.
messages = st.one_of(
    st.builds(
        Message,
        topic=topics,
        payload=payloads,
        received=receipt,
        qos=st.sampled_from([0, 1]),
        dup=st.booleans(),
    ),
    st.builds(
        lambda dev, kind_payload, received, dup: Message(
            f"fw/v1/s1/{dev}/{kind_payload[0]}", kind_payload[1], received, 1, 1, dup=dup
        ),
        st.sampled_from(INDEX.device_ids),
        st.one_of(
            st.tuples(st.just("telemetry"), telemetry_objects.map(lambda o: json.dumps(o).encode())),
            st.tuples(st.just("event"), event_objects.map(lambda o: json.dumps(o).encode())),
            st.tuples(st.just("status"), statuses),
        ),
        receipt,
        st.booleans(),
    ),
)


def is_own_output(topic: str) -> bool:
    """fw/v1/{site}/alarms|tickets: what firewatch publishes itself, skipped by the decoder."""
    parts = topic.split("/")
    return len(parts) == 4 and parts[:2] == ["fw", "v1"] and parts[3] in OUTPUTS


def accepted(batch: DecodedBatch) -> list[bytes]:
    return [m.payload for m in batch.reading_msg]


# --- decoding: total, and accounting for every message ------------------------------------------------
@FAST
@given(st.lists(st.lists(messages, max_size=12), min_size=1, max_size=3))
def test_decoding_never_raises_and_accounts_for_every_message_once(batches: list[list[Message]]) -> None:
    dec = decoder()
    for batch_messages in batches:
        batch = dec.decode(batch_messages, NOW)
        skipped = sum(1 for m in batch_messages if is_own_output(m.topic))
        assert int(batch.reading_dev.size) + len(batch.rejects) + batch.duplicates + len(batch.events) + len(
            batch.statuses
        ) + skipped == len(batch_messages)
        assert len(batch.reading_msg) == batch.reading_dev.size
        # A reject keeps the raw bytes of a message of this batch, and says why.
        sent = {(m.topic, m.payload) for m in batch_messages}
        assert all((r.topic, r.payload) in sent and r.detail for r in batch.rejects)
        # Nothing is "unprocessable" (a decoder bug) for any of these inputs.
        assert RejectReason.UNPROCESSABLE not in {r.reason for r in batch.rejects}


@FAST
@given(st.lists(messages, max_size=15), st.lists(telemetry_objects, max_size=15))
def test_every_accepted_reading_is_within_the_documented_bounds(
    noise: list[Message], objects: list[dict[str, object]]
) -> None:
    readings = [Message(f"fw/v1/s1/{DEVICE}/telemetry", json.dumps(o).encode(), NOW - 1) for o in objects]
    batch = decoder().decode(noise + readings, NOW)
    for i, m in enumerate(batch.reading_msg):
        sent = orjson.loads(m.payload)
        seq = int(batch.reading_seq[i])
        assert seq == -1 if sent.get("seq") is None else 0 <= seq <= SEQ_MAX
        assert seq == -1 or sent["seq"] == seq
        ts = float(batch.reading_ts[i])
        assert math.isfinite(ts)
        assert OLDEST <= ts <= NOW + MAX_FUTURE_S
        batt, rssi = float(batch.reading_batt[i]), float(batch.reading_rssi[i])
        assert math.isnan(batt) if sent.get("batt") is None else BATT_RANGE[0] <= batt <= BATT_RANGE[1]
        assert math.isnan(rssi) if sent.get("rssi") is None else RSSI_RANGE[0] <= rssi <= RSSI_RANGE[1]
        # Its samples are exactly the channel values it sent, stamped with its time.
        mine = batch.sample_reading == i
        dev = int(batch.reading_dev[i])
        got = {
            INDEX.slot_channel[s]: v
            for s, v in zip(batch.sample_slot[mine].tolist(), batch.sample_value[mine].tolist(), strict=True)
        }
        assert got == sent["v"]
        assert all(int(INDEX.slot_device[s]) == dev for s in batch.sample_slot[mine].tolist())
        assert np.all(batch.sample_ts[mine] == ts)
    values, slots = batch.sample_value, batch.sample_slot
    assert np.all(np.isfinite(values))
    assert np.all((values >= INDEX.slot_lo[slots]) & (values <= INDEX.slot_hi[slots]))
    for e in batch.events:
        assert OLDEST <= e.ts <= NOW + MAX_FUTURE_S


# --- de-duplication ----------------------------------------------------------------------------------
fps = st.integers(min_value=1, max_value=8) | st.integers(min_value=1, max_value=0xFFFF)
tracker_seqs = st.one_of(
    st.integers(min_value=0, max_value=150),
    st.integers(min_value=0, max_value=SEQ_MAX),
)
# (seq, ts, received offset, fingerprint, DUP flag): the device's clock may jump either way and run
# ahead of the service's by up to max_future_s.
deliveries = st.tuples(
    tracker_seqs,
    st.floats(min_value=OLDEST, max_value=NOW + MAX_FUTURE_S),
    st.floats(min_value=0, max_value=60),
    fps,
    st.booleans(),
)


def feed(tracker: SeqTracker, dev: int, history: list[tuple[int, float, float, int, bool]]) -> list[bool]:
    return [
        tracker.accept(dev, seq, ts, fp, received=NOW - 60 + offset, redelivered=dup)
        for seq, ts, offset, fp, dup in history
    ]


@FAST
@given(
    st.lists(st.tuples(st.integers(min_value=0, max_value=2), deliveries), max_size=60),
    tracker_seqs,
    st.floats(min_value=OLDEST, max_value=NOW + MAX_FUTURE_S),
    fps,
)
def test_no_sequence_of_messages_makes_a_device_deaf(
    history: list[tuple[int, tuple[int, float, float, int, bool]]], seq: int, ts: float, fp: int
) -> None:
    tracker = SeqTracker(3)
    for dev, (s, t, offset, f, dup) in history:
        tracker.accept(dev, s, t, f, received=NOW - 60 + offset, redelivered=dup)
    assume(fp not in {f for dev, (_s, _t, _o, f, _d) in history if dev == 0})
    assert tracker.accept(0, seq, ts, fp, received=NOW, redelivered=False)


@FAST
@given(
    st.lists(st.tuples(st.integers(min_value=0, max_value=2), deliveries), max_size=60),
    tracker_seqs,
    st.floats(min_value=NOW, max_value=NOW + MAX_FUTURE_S, exclude_min=True),
    fps,
)
def test_a_new_reading_flagged_dup_is_accepted_when_newer_than_everything_received_before(
    history: list[tuple[int, tuple[int, float, float, int, bool]]], seq: int, ts: float, fp: int
) -> None:
    """The broker sets DUP on a message it sends again after a reconnect, even if the first try
    never arrived. Such a reading, stamped after the receipt of every earlier message, is new,
    whatever seq jumps and clocks running ahead (up to max_future_s) came before it (issue 18)."""
    tracker = SeqTracker(3)
    for dev, (s, t, offset, f, dup) in history:
        tracker.accept(dev, s, t, f, received=NOW - 60 + offset, redelivered=dup)  # received <= NOW
    assume(fp not in {f for dev, (_s, _t, _o, f, _d) in history if dev == 0})
    assert tracker.accept(0, seq, ts, fp, received=NOW + MAX_FUTURE_S, redelivered=True)


def telemetry_message(obj: dict[str, object], received: float = NOW, dup: bool = False) -> Message:
    return Message(f"fw/v1/s1/{DEVICE}/telemetry", json.dumps(obj).encode(), received, 1, 1, dup=dup)


device_objects = st.fixed_dictionaries(
    {
        "ts": st.one_of(in_window_ts, timestamps),
        "seq": st.one_of(tracker_seqs, seqs),
        "v": st.fixed_dictionaries(
            {"smoke": st.floats(min_value=0, max_value=2)}, optional={"temp": st.floats(-20, 120)}
        ),
    }
)
device_messages = st.builds(
    lambda obj, kind, received, dup: Message(
        f"fw/v1/s1/{DEVICE}/{kind}", json.dumps(obj).encode(), received, 1, 1, dup=dup
    ),
    device_objects | event_objects | telemetry_objects,
    st.sampled_from(["telemetry", "telemetry", "event"]),
    st.floats(min_value=NOW - 120, max_value=NOW),
    st.booleans(),
)
genuine_readings = st.fixed_dictionaries(
    {
        "ts": in_window_ts,
        "seq": tracker_seqs,
        "v": st.fixed_dictionaries({"smoke": st.floats(0, 2), "temp": st.floats(-20, 120)}),
    },
    optional={"batt": st.integers(0, 100)},
)


@SLOW
@given(
    st.lists(st.lists(device_messages, max_size=15), max_size=3),
    genuine_readings,
    st.booleans(),
)
def test_no_sequence_of_messages_makes_a_device_deaf_through_the_decoder(
    batches: list[list[Message]], reading: dict[str, object], same_batch: bool
) -> None:
    genuine = telemetry_message(reading)
    earlier = {fingerprint(m.payload) for b in batches for m in b}
    assume(fingerprint(genuine.payload) not in earlier)
    dec = decoder()
    if same_batch and batches:
        batches[-1] = [*batches[-1], genuine]
    else:
        batches = [*batches, [genuine]]
    last = None
    for b in batches:
        last = dec.decode(b, NOW)
    assert last is not None
    assert genuine.payload in accepted(last)


@FAST
@given(st.lists(deliveries, max_size=40), deliveries, st.booleans())
def test_a_message_delivered_twice_in_a_row_is_accepted_at_most_once(
    history: list[tuple[int, float, float, int, bool]],
    message: tuple[int, float, float, int, bool],
    second_dup: bool,
) -> None:
    tracker = SeqTracker(1)
    feed(tracker, 0, history)
    seq, ts, offset, fp, _dup = message
    first, second = feed(tracker, 0, [message, (seq, ts, offset + 1, fp, second_dup)])
    assert not (first and second)


counted_messages = st.builds(
    lambda obj, kind, received, dup: Message(
        f"fw/v1/s1/{DEVICE}/{kind}", json.dumps(obj).encode(), received, 1, 1, dup=dup
    ),
    device_objects.map(lambda o: o | {"seq": o["seq"] if type(o["seq"]) is int else 0})
    | event_objects.map(lambda o: o | {"seq": 7}),
    st.sampled_from(["telemetry", "event"]),
    st.floats(min_value=NOW - 120, max_value=NOW),
    st.booleans(),
)


@SLOW
@given(st.lists(device_messages, max_size=20), counted_messages, st.booleans(), st.booleans())
def test_the_decoder_accepts_a_message_delivered_twice_in_a_row_at_most_once(
    history: list[Message], message: Message, second_dup: bool, next_batch: bool
) -> None:
    """Any message carrying a seq, after any history, delivered again right after (by the device
    retrying, DUP clear, or by the broker, DUP set), in the same batch or the next."""
    again = Message(message.topic, message.payload, message.received, 1, 2, dup=second_dup)
    dec = decoder()
    dec.decode(history, NOW)
    outcomes = (
        [dec.decode([message], NOW), dec.decode([again], NOW)]
        if next_batch
        else [dec.decode([message, again], NOW)]
    )
    assert sum(len(b.reading_msg) + len(b.events) for b in outcomes) <= 1


@FAST
@given(
    st.integers(min_value=0, max_value=SEQ_MAX - 200),
    st.lists(
        st.tuples(st.floats(min_value=OLDEST, max_value=NOW + MAX_FUTURE_S), fps), min_size=1, max_size=150
    ),
    st.data(),
)
def test_a_broker_redelivery_of_any_of_the_last_64_messages_is_dropped(
    start: int, readings: list[tuple[float, int]], data: st.DataObject
) -> None:
    """A device counting up one by one, its clock jumping either way: every reading is heard, and
    the broker's redelivery (DUP) of any of its last 64 is dropped, in any order, however often."""
    tracker = SeqTracker(1)
    sent = [(start + i, ts, float(i), fp, False) for i, (ts, fp) in enumerate(readings)]
    assert all(feed(tracker, 0, sent))
    recent = sent[-WINDOW:]
    again = data.draw(st.lists(st.sampled_from(recent), min_size=1, max_size=100))
    redelivered = [(s, ts, float(len(sent)) + 1, fp, True) for s, ts, _o, fp, _d in again]
    assert not any(feed(tracker, 0, redelivered))


@FAST
@given(
    st.integers(min_value=0, max_value=1000),
    st.lists(
        st.tuples(st.integers(min_value=1, max_value=500), st.floats(min_value=0, max_value=600), fps),
        min_size=1,
        max_size=100,
    ),
    st.data(),
)
def test_a_broker_redelivery_is_dropped_across_seq_gaps_when_the_clock_is_right(
    start: int, steps: list[tuple[int, float, int]], data: st.DataObject
) -> None:
    """A device whose seq only increases, with gaps of any size, and whose clock only moves
    forward and never runs ahead of the service's: every redelivery of an earlier reading is
    dropped, inside the 64-wide window or below it."""
    tracker = SeqTracker(1)
    seq, ts = start, OLDEST + 1.0
    sent = []
    for gap, advance, fp in steps:
        seq, ts = seq + gap, ts + advance
        sent.append((seq, ts, fp))
    # received (offset from NOW - 60) is the device's clock or later: it is not ahead
    assert all(tracker.accept(0, s, t, f, received=t + 1, redelivered=False) for s, t, f in sent)
    again = data.draw(st.lists(st.sampled_from(sent), min_size=1, max_size=50))
    assert not any(tracker.accept(0, s, t, f, received=NOW, redelivered=True) for s, t, f in again)


@FAST
@given(
    st.lists(deliveries, min_size=1, max_size=80),
    st.lists(
        st.tuples(st.floats(min_value=OLDEST, max_value=NOW + MAX_FUTURE_S), st.integers(1, 0xFFFF)),
        min_size=1,
        max_size=80,
    ),
    st.booleans(),
)
def test_a_rebooted_device_is_heard_from_its_first_reading(
    before: list[tuple[int, float, float, int, bool]],
    after: list[tuple[float, int]],
    clock_right: bool,
) -> None:
    """Seq restarts at 0 with new readings, the device's clock right (its time of sending) or
    wrong (anywhere the decoder lets through): each new reading is accepted."""
    tracker = SeqTracker(1)
    feed(tracker, 0, before)
    old = {fp for *_, fp, _dup in before}
    assume(not old & {fp for _ts, fp in after})
    for seq, (ts, fp) in enumerate(after):
        received = NOW + seq
        assert tracker.accept(0, seq, received if clock_right else ts, fp, received=received)


@FAST
@given(
    st.lists(
        st.tuples(st.floats(min_value=OLDEST, max_value=NOW + MAX_FUTURE_S), fps), min_size=2, max_size=80
    ),
    st.integers(min_value=1, max_value=80),
    st.data(),
)
def test_after_a_reboot_the_redelivery_of_the_run_before_it_is_still_dropped(
    run: list[tuple[float, int]], rebooted: int, data: st.DataObject
) -> None:
    tracker = SeqTracker(1)
    old = [(i, ts, float(i), fp, False) for i, (ts, fp) in enumerate(run)]
    assert all(feed(tracker, 0, old))
    new_fps = data.draw(
        st.lists(st.integers(1, 0xFFFF), min_size=rebooted, max_size=rebooted, unique=True).filter(
            lambda f: not set(f) & {fp for _ts, fp in run}
        )
    )
    new = [(i, NOW + MAX_FUTURE_S, 100.0 + i, fp, False) for i, fp in enumerate(new_fps)]
    assert all(feed(tracker, 0, new))
    again = data.draw(st.lists(st.sampled_from(old[-WINDOW:]), min_size=1, max_size=40))
    assert not any(feed(tracker, 0, [(s, ts, 200.0, fp, True) for s, ts, _o, fp, _d in again]))


# --- the state survives a restart ----------------------------------------------------------------
@FAST
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=1, max_value=100),
            st.floats(min_value=OLDEST, max_value=NOW + MAX_FUTURE_S),
            st.floats(min_value=0, max_value=60),
            fps,
        ),
        min_size=1,
        max_size=100,
    ),
    st.data(),
)
def test_snapshot_and_restore_give_the_same_decisions_for_redeliveries(
    steps: list[tuple[int, float, float, int]], data: st.DataObject
) -> None:
    """A device whose seq only increases (gaps of any size, any clock): a tracker restored from
    the snapshot decides every redelivery, and every message after them, as the original does."""
    history = []
    seq = -1
    for gap, ts, offset, fp in steps:
        seq += gap
        history.append((seq, ts, offset, fp, False))
    original = SeqTracker(2)
    feed(original, 1, history)
    restored = SeqTracker(2)
    restored.restore(list(original.snapshot({0, 1})))
    later = data.draw(
        st.lists(
            st.sampled_from(history).map(lambda h: (h[0], h[1], 61.0, h[3], True)) | deliveries,
            max_size=60,
        )
    )
    assert feed(restored, 1, later) == feed(original, 1, later)


# Timestamps within the bounds or none: a wrong clock is the decoder's own state, not the seq state.
plausible_readings = st.fixed_dictionaries({"ts": good_ts, "v": good_values})


@SLOW
@given(
    st.lists(st.tuples(st.integers(1, 100), plausible_readings, st.booleans()), min_size=1, max_size=40),
    st.lists(messages.filter(lambda m: f"/{DEVICE}/" not in m.topic), max_size=20),
    st.integers(min_value=1, max_value=3),
    st.data(),
)
def test_the_seq_state_stored_with_each_batch_drops_the_same_redeliveries_after_a_restart(
    steps: list[tuple[int, dict[str, object], bool]],
    noise: list[Message],
    n_batches: int,
    data: st.DataObject,
) -> None:
    """Through the telemetry store, as across a service restart: a device whose seq only increases
    (gaps of any size, DUP flags anything), among other devices' traffic; the
    seq state stored with each batch, read back into a fresh decoder, drops exactly what the
    running decoder drops."""
    seq = -1
    readings = []
    for gap, obj, dup in steps:
        seq += gap
        readings.append(telemetry_message(obj | {"seq": seq}, received=NOW - 1, dup=dup))
    stream = data.draw(st.permutations(noise + readings))
    # keep the device's own readings in seq order, the others anywhere among them
    mine = iter(readings)
    stream = [next(mine) if f"/{DEVICE}/" in m.topic else m for m in stream]
    running = decoder()
    with tempfile.TemporaryDirectory() as tmp:
        store = TelemetryStore(Path(tmp) / "telemetry.sqlite")
        store.bind(INDEX.series_keys())
        try:
            size = -(-len(stream) // n_batches)
            for i in range(0, len(stream), size):
                out = running.decode(stream[i : i + size], NOW)
                store.write(out.sample_slot, out.sample_ts, out.sample_value, out.seq_state)
            rows = store.seq_state()
        finally:
            store.close()
    fresh = decoder()
    fresh.seq.restore([(INDEX.dev_of[d], m, b, t, f) for d, m, b, t, f in rows])
    again = data.draw(st.lists(st.sampled_from(readings), min_size=1, max_size=20))
    redelivered = [Message(m.topic, m.payload, NOW, 1, 9, dup=True) for m in again]
    assert accepted(fresh.decode(redelivered, NOW)) == accepted(running.decode(redelivered, NOW))


def test_a_redelivery_from_before_a_reboot_is_dropped_after_a_service_restart() -> None:
    def reading(seq: int, ts: float) -> Message:
        return telemetry_message({"ts": ts, "seq": seq, "v": {"smoke": 0.02}})

    # One batch: the device's seq 0..2, then it reboots and counts 0, 1 again (other timestamps).
    sent = [reading(0, NOW - 50), reading(1, NOW - 40), reading(2, NOW - 30), reading(0, NOW - 10)]
    sent.append(reading(1, NOW))
    running = decoder()
    batch = running.decode(sent, NOW)
    assert batch.reading_seq.tolist() == [0, 1, 2, 0, 1]
    fresh = decoder()  # the service restarted after storing the batch, before acknowledging it
    fresh.seq.restore([(INDEX.dev_of[d], m, b, t, f) for d, m, b, t, f in batch.seq_state])
    redelivered = [Message(m.topic, m.payload, NOW + 5, 1, 2, dup=True) for m in sent]
    assert running.decode(redelivered, NOW + 5).reading_seq.tolist() == []
    assert fresh.decode(redelivered, NOW + 5).reading_seq.tolist() == []


@pytest.mark.parametrize("field", ["seq", "v.smoke", "event"])
def test_deeply_nested_json_of_the_wrong_shape_is_a_bad_payload(field: str) -> None:
    nested = b"[" * 1000 + b"]" * 1000
    if field == "seq":
        raw, kind = b'{"ts": %d, "seq": %s, "v": {"smoke": 0.1}}' % (NOW, nested), "telemetry"
    elif field == "v.smoke":
        raw, kind = b'{"ts": %d, "seq": 1, "v": {"smoke": %s}}' % (NOW, nested), "telemetry"
    else:
        raw, kind = b'{"ts": %d, "seq": 1, "event": %s}' % (NOW, nested), "event"
    batch = decoder().decode([Message(f"fw/v1/s1/{DEVICE}/{kind}", raw, NOW)], NOW)
    assert [r.reason for r in batch.rejects] in (
        [RejectReason.BAD_PAYLOAD],
        [RejectReason.UNKNOWN_EVENT],
    )
