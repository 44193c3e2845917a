"""Ingest decoding: what is accepted, what is rejected and why, and what is dropped as a duplicate."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.domain import DeviceEventKind, RejectReason
from ingest.decode import Decoder
from ingest.dedupe import SeqTracker
from ingest.envelope import Message
from ingest.index import DeviceIndex
from tests.conftest import PROFILES, small_registry

NOW = 1_800_000_000.0


@pytest.fixture
def decoder() -> Decoder:
    return Decoder(DeviceIndex.build(small_registry(), PROFILES))


def msg(device: str, payload: object, kind: str = "telemetry", site: str = "s1") -> Message:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return Message(f"fw/v1/{site}/{device}/{kind}", raw, NOW, 1, 1)


def redelivered(m: Message) -> Message:
    return Message(m.topic, m.payload, m.received, m.qos, m.mid, m.epoch, dup=True)


def telemetry(seq: int, smoke: float = 0.02, ts: float = NOW, **extra: object) -> dict[str, object]:
    return {"ts": ts, "seq": seq, "v": {"smoke": smoke, "temp": 24.5}, "batt": 90, "rssi": -70, **extra}


def test_a_valid_reading_becomes_one_sample_per_channel(decoder: Decoder) -> None:
    batch = decoder.decode([msg("smk-1-1", telemetry(1, smoke=0.031))], NOW)
    assert batch.rejects == []
    assert batch.n_samples == 2
    smoke_slot = decoder.index.slot("smk-1-1", "smoke")
    assert batch.sample_value[batch.sample_slot == smoke_slot].tolist() == [0.031]
    assert batch.reading_batt.tolist() == [90.0]


def test_rfc3339_timestamps_are_accepted(decoder: Decoder) -> None:
    reading = telemetry(1, ts=0) | {"ts": "2027-01-15T08:00:00+08:00"}
    batch = decoder.decode([msg("smk-1-1", reading)], NOW)
    assert batch.rejects == []
    assert batch.reading_ts.tolist() == [1_799_971_200.0]  # 2027-01-15 00:00 UTC


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (Message("fw/v1/s1/smk-1-1", b"{}", NOW), RejectReason.BAD_TOPIC),
        (Message("other/v1/s1/smk-1-1/telemetry", b"{}", NOW), RejectReason.BAD_TOPIC),
        (Message("fw/v1/s1/smk-1-1/bogus", b"{}", NOW), RejectReason.BAD_TOPIC),
        (msg("nobody", telemetry(1)), RejectReason.UNKNOWN_DEVICE),
        (msg("smk-1-1", telemetry(1), site="elsewhere"), RejectReason.SITE_MISMATCH),
        (msg("smk-1-1", b'{"ts": 1, "seq": 1, "v": {"smoke": 0.0'), RejectReason.BAD_JSON),
        (msg("smk-1-1", b"\xff\xfe\x00garbage"), RejectReason.BAD_JSON),
        (msg("smk-1-1", [1, 2, 3]), RejectReason.BAD_PAYLOAD),
        (msg("smk-1-1", {"ts": NOW, "seq": 1}), RejectReason.BAD_PAYLOAD),
        (msg("smk-1-1", {"ts": NOW, "seq": 1, "v": {"smoke": "high"}}), RejectReason.BAD_PAYLOAD),
        (msg("smk-1-1", {"ts": NOW, "seq": 1, "v": {"smoke": True}}), RejectReason.BAD_PAYLOAD),
        (msg("smk-1-1", {"ts": NOW, "seq": -4, "v": {"smoke": 0.1}}), RejectReason.BAD_PAYLOAD),
        (msg("smk-1-1", {"ts": "yesterday", "seq": 1, "v": {"smoke": 0.1}}), RejectReason.BAD_TIMESTAMP),
        # Every numeric field has bounds (issue 18): outside them, a counted reject, never a crash.
        (msg("smk-1-1", telemetry(2**63)), RejectReason.BAD_PAYLOAD),
        (msg("smk-1-1", telemetry(2**53)), RejectReason.BAD_PAYLOAD),
        (msg("smk-1-1", telemetry(1, ts=0)), RejectReason.BAD_TIMESTAMP),
        (msg("smk-1-1", telemetry(1, ts=-1e300)), RejectReason.BAD_TIMESTAMP),
        (msg("smk-1-1", telemetry(1, ts=NOW - 40 * 86_400)), RejectReason.BAD_TIMESTAMP),
        (msg("smk-1-1", telemetry(1) | {"ts": "0001-01-01T00:00:00+00:00"}), RejectReason.BAD_TIMESTAMP),
        (msg("smk-1-1", telemetry(1, batt=250)), RejectReason.BAD_PAYLOAD),
        (msg("smk-1-1", telemetry(1, rssi=-1e9)), RejectReason.BAD_PAYLOAD),
        (msg("smk-1-1", {"ts": 0, "seq": 1, "event": "fault"}, kind="event"), RejectReason.BAD_TIMESTAMP),
        (
            msg("smk-1-1", {"ts": NOW, "seq": 1, "event": "fault", "code": 2**40}, kind="event"),
            RejectReason.BAD_PAYLOAD,
        ),
        (msg("smk-1-1", {"ts": NOW, "seq": 1, "v": {"co2": 400}}), RejectReason.UNKNOWN_CHANNEL),
        (msg("smk-1-1", {"ts": NOW, "seq": 1, "v": {"smoke": 5.0}}), RejectReason.OUT_OF_RANGE),
        (msg("smk-1-1", {"ts": NOW, "seq": 1, "v": {"smoke": -0.5}}), RejectReason.OUT_OF_RANGE),
        # orjson refuses numbers that overflow a double, so infinity never gets past JSON parsing
        (msg("smk-1-1", b'{"ts": 1, "seq": 1, "v": {"smoke": 1e999}}'), RejectReason.BAD_JSON),
        (msg("smk-1-1", b'{"ts": 1, "seq": 1, "v": {"smoke": NaN}}'), RejectReason.BAD_JSON),
        (msg("smk-1-1", telemetry(1, ts=NOW + 3600)), RejectReason.FUTURE_TIMESTAMP),
        (msg("smk-1-1", b"x" * 20_000), RejectReason.TOO_LARGE),
        (msg("smk-1-1", {"ts": NOW, "seq": 1, "event": "explode"}, kind="event"), RejectReason.UNKNOWN_EVENT),
        (msg("smk-1-1", {"ts": NOW, "seq": 1, "event": ["alarm"]}, kind="event"), RejectReason.UNKNOWN_EVENT),
        (msg("prs-1", {"ts": NOW, "seq": 1, "event": "alarm"}, kind="event"), RejectReason.UNKNOWN_EVENT),
        (msg("smk-1-1", b"maybe", kind="status"), RejectReason.BAD_PAYLOAD),
    ],
)
def test_bad_messages_are_rejected_with_their_reason_and_raw_bytes(
    decoder: Decoder, message: Message, reason: RejectReason
) -> None:
    batch = decoder.decode([message, msg("smk-2-1", telemetry(1))], NOW)
    assert [r.reason for r in batch.rejects] == [reason]
    assert batch.rejects[0].payload == message.payload
    assert batch.rejects[0].detail
    # the good message in the same batch is untouched
    assert batch.reading_dev.tolist() == [decoder.index.dev_of["smk-2-1"]]


def test_one_bad_channel_rejects_the_whole_message(decoder: Decoder) -> None:
    batch = decoder.decode([msg("smk-1-1", {"ts": NOW, "seq": 1, "v": {"smoke": 0.02, "temp": 900}})], NOW)
    assert batch.n_samples == 0
    assert batch.rejects[0].reason is RejectReason.OUT_OF_RANGE
    assert "temp" in batch.rejects[0].detail


def test_unknown_devices_are_listed_for_registration(decoder: Decoder) -> None:
    batch = decoder.decode([msg("new-dev-7", telemetry(1))], NOW)
    assert batch.unknown_devices == [("s1", "new-dev-7")]


def test_a_redelivered_seq_is_dropped_as_a_duplicate(decoder: Decoder) -> None:
    first = decoder.decode([msg("smk-1-1", telemetry(1)), msg("smk-1-1", telemetry(2))], NOW)
    again = decoder.decode([msg("smk-1-1", telemetry(2)), msg("smk-1-1", telemetry(3))], NOW)
    assert first.reading_seq.tolist() == [1, 2]
    assert again.reading_seq.tolist() == [3]
    assert again.duplicates == 1


def test_duplicates_within_one_batch_are_dropped(decoder: Decoder) -> None:
    batch = decoder.decode([msg("smk-1-1", telemetry(5)), msg("smk-1-1", telemetry(5))], NOW)
    assert batch.reading_seq.tolist() == [5]
    assert batch.duplicates == 1


def test_late_out_of_order_readings_are_accepted_once(decoder: Decoder) -> None:
    decoder.decode([msg("smk-1-1", telemetry(10)), msg("smk-1-1", telemetry(12))], NOW)
    late = decoder.decode([msg("smk-1-1", telemetry(11)), msg("smk-1-1", telemetry(11))], NOW)
    assert late.reading_seq.tolist() == [11]


def test_a_device_restart_resets_its_counter(decoder: Decoder) -> None:
    decoder.decode([msg("smk-1-1", telemetry(5000, ts=NOW - 100))], NOW)
    restarted = decoder.decode([msg("smk-1-1", telemetry(1, ts=NOW))], NOW)
    # The broker redelivers (DUP) a reading from before the restart: far ahead in seq, older in time.
    stale = decoder.decode([redelivered(msg("smk-1-1", telemetry(4000, ts=NOW - 200)))], NOW)
    assert restarted.reading_seq.tolist() == [1]
    assert stale.reading_seq.tolist() == []


def test_dedupe_state_survives_a_restart_through_the_batch_seq_state(decoder: Decoder) -> None:
    batch = decoder.decode([msg("smk-1-1", telemetry(7))], NOW)
    fresh = Decoder(decoder.index)
    dev_of = decoder.index.dev_of
    fresh.seq.restore([(dev_of[d], m, b, t, f) for d, m, b, t, f in batch.seq_state])
    assert fresh.decode([msg("smk-1-1", telemetry(7))], NOW).duplicates == 1


def test_device_events_and_status_are_decoded(decoder: Decoder) -> None:
    batch = decoder.decode(
        [
            msg(
                "smk-1-1",
                {"ts": NOW, "seq": 3, "event": "alarm", "channel": "smoke", "code": 0},
                kind="event",
            ),
            msg("smk-1-2", b"offline", kind="status"),
        ],
        NOW,
    )
    assert [e.event for e in batch.events] == [DeviceEventKind.ALARM]
    assert batch.statuses[0].online is False
    assert batch.rejects == []


def test_logged_events_are_accepted_from_any_device_with_their_frame(decoder: Decoder) -> None:
    """A test button, a linkage or an operation raises nothing and needs no mapping in the profile:
    each goes to the device's event log, with the GB/T 26875.3 frame it came in if any."""
    frame = "4040" + "00" * 26 + "00" + "2323"
    batch = decoder.decode(
        [
            msg("smk-1-1", {"ts": NOW, "event": "test"}, kind="event"),
            msg("smk-1-2", {"ts": NOW, "event": "linkage_start", "code": 33, "frame": frame}, kind="event"),
            msg("smk-1-3", {"ts": NOW, "event": "fault_clear", "log": False}, kind="event"),
        ],
        NOW,
    )
    assert batch.rejects == []
    assert [(e.event, e.frame, e.logged) for e in batch.events] == [
        (DeviceEventKind.TEST, None, True),
        (DeviceEventKind.LINKAGE_START, frame, True),
        (DeviceEventKind.FAULT_CLEAR, None, False),
    ]


@pytest.mark.parametrize(
    "extra",
    [{"frame": "not hex"}, {"frame": "AB"}, {"frame": 7}, {"frame": "00" * 1055}, {"log": "no"}, {"log": 0}],
)
def test_an_event_with_a_malformed_frame_or_log_flag_is_rejected(
    decoder: Decoder, extra: dict[str, object]
) -> None:
    batch = decoder.decode([msg("smk-1-1", {"ts": NOW, "event": "test", **extra}, kind="event")], NOW)
    assert [r.reason for r in batch.rejects] == [RejectReason.BAD_PAYLOAD]


def test_a_large_batch_keeps_sample_order_per_device(decoder: Decoder) -> None:
    msgs = [msg("smk-1-1", telemetry(i, smoke=i / 1000)) for i in range(1, 501)]
    batch = decoder.decode(msgs, NOW)
    slot = decoder.index.slot("smk-1-1", "smoke")
    assert np.array_equal(batch.sample_value[batch.sample_slot == slot], np.arange(1, 501) / 1000)


def test_firewatch_own_output_topics_are_skipped_not_rejected(decoder: Decoder) -> None:
    batch = decoder.decode([Message("fw/v1/s1/alarms", b'{"before": null}', NOW)], NOW)
    assert batch.rejects == []
    assert batch.n_samples == 0


# --- no input can deafen a device (issue 18) ----------------------------------------------------


def test_one_reading_stamped_ahead_with_a_jump_in_seq_does_not_shadow_the_readings_after_it(
    decoder: Decoder,
) -> None:
    decoder.decode([msg("smk-1-1", telemetry(i, ts=NOW - 30 + i)) for i in (1, 2, 3)], NOW)
    ahead = decoder.decode([msg("smk-1-1", telemetry(1003, ts=NOW + 290))], NOW)
    genuine = decoder.decode([msg("smk-1-1", telemetry(i, smoke=0.3, ts=NOW + i)) for i in (4, 5, 6)], NOW)
    assert ahead.reading_seq.tolist() == [1003]
    assert genuine.reading_seq.tolist() == [4, 5, 6]
    assert genuine.duplicates == 0


def test_a_device_rebooted_with_its_clock_behind_is_heard_from_its_first_reading(decoder: Decoder) -> None:
    decoder.decode([msg("smk-1-1", telemetry(i, ts=NOW - 100 + i)) for i in range(500, 520)], NOW)
    rebooted = decoder.decode([msg("smk-1-1", telemetry(i, ts=NOW - 86_400 + i)) for i in (0, 1, 2)], NOW)
    assert rebooted.reading_seq.tolist() == [0, 1, 2]


def test_a_reboot_that_reuses_recent_seqs_with_new_readings_is_heard(decoder: Decoder) -> None:
    decoder.decode([msg("smk-1-1", telemetry(i, smoke=0.02)) for i in range(1, 31)], NOW)
    rebooted = decoder.decode([msg("smk-1-1", telemetry(i, smoke=0.3, ts=NOW + 1)) for i in (1, 2)], NOW)
    assert rebooted.reading_seq.tolist() == [1, 2]
    # ... while the very same message delivered again is still a duplicate.
    assert decoder.decode([msg("smk-1-1", telemetry(2, smoke=0.3, ts=NOW + 1))], NOW).duplicates == 1


def test_a_device_retry_of_the_same_bytes_is_a_duplicate_even_without_the_dup_flag(decoder: Decoder) -> None:
    first = msg("smk-1-1", telemetry(7))
    assert decoder.decode([first], NOW).reading_seq.tolist() == [7]
    assert decoder.decode([first], NOW).duplicates == 1


def test_a_failed_batch_leaves_no_duplicate_marks(decoder: Decoder) -> None:
    decoder.seq.begin()
    decoder.decode([msg("smk-1-1", telemetry(1)), msg("smk-1-2", telemetry(1))], NOW)
    decoder.seq.rollback()  # detection failed: the batch will be decoded again
    again = decoder.decode([msg("smk-1-1", telemetry(1)), msg("smk-1-2", telemetry(1))], NOW)
    assert again.reading_seq.tolist() == [1, 1]
    assert again.duplicates == 0


def test_one_timestamp_out_of_bounds_is_a_reject_but_a_wrong_clock_never_deafens_its_device(
    decoder: Decoder,
) -> None:
    one = decoder.decode([msg("smk-1-1", telemetry(1, ts=0))], NOW)
    assert [r.reason for r in one.rejects] == [RejectReason.BAD_TIMESTAMP]
    # Its next reading is out of bounds too: the clock is wrong, not the message. Heard, stamped
    # with the time it was received, and the wrong clock reported (a fault alarm, detectors/engine.py).
    wrong = decoder.decode([msg("smk-1-1", telemetry(2, smoke=0.3, ts=12.5))], NOW)
    assert wrong.rejects == []
    assert wrong.reading_ts.tolist() == [NOW]
    assert [(c.device_id, c.wrong) for c in wrong.clock_changes] == [("smk-1-1", True)]
    later = decoder.decode([msg("smk-1-1", telemetry(3, ts=NOW + 3600))], NOW)  # wrong the other way
    assert later.reading_seq.tolist() == [3]
    right = decoder.decode([msg("smk-1-1", telemetry(4, ts=NOW))], NOW)
    assert [(c.device_id, c.wrong) for c in right.clock_changes] == [("smk-1-1", False)]
    assert decoder.decode([msg("smk-1-1", telemetry(5, ts=0))], NOW).rejects != []  # strikes start over


def test_a_plausible_reading_after_an_odd_one_in_the_same_batch_starts_the_count_again(
    decoder: Decoder,
) -> None:
    for seq in range(1, 6):
        batch = decoder.decode(
            [msg("smk-1-1", telemetry(seq, ts=0) | {"seq": 1}), msg("smk-1-1", telemetry(seq + 100))], NOW
        )
        assert [r.reason for r in batch.rejects] == [RejectReason.BAD_TIMESTAMP]


def test_readings_decoded_column_wise_and_one_by_one_come_out_together_in_batch_order(
    decoder: Decoder,
) -> None:
    """Plain readings are decoded a whole batch at once, the others (here: an RFC 3339 timestamp, no
    seq, a bad channel, an event) one by one; a device's accepted readings and their samples still
    come out in the order they arrived, and the bad one is rejected with its reason."""
    batch = decoder.decode(
        [
            msg("smk-1-1", telemetry(1, smoke=0.01, ts=NOW - 5)),
            msg("smk-1-1", telemetry(0, smoke=0.02) | {"ts": "2027-01-15T00:00:01+00:00", "seq": None}),
            msg("smk-1-2", telemetry(1, smoke=0.03) | {"v": {"smoke": 0.03, "co": 1.0}}),
            msg("smk-1-1", telemetry(3, smoke=0.04, ts=NOW - 3)),
            msg("smk-1-1", {"event": "test", "seq": 4}, kind="event"),
            msg("smk-1-1", telemetry(5, smoke=0.05, ts=NOW - 1) | {"batt": None}),
        ],
        NOW,
    )
    assert [r.reason for r in batch.rejects] == [RejectReason.UNKNOWN_CHANNEL]
    assert batch.reading_ts.tolist() == [NOW - 5, 1_799_971_201.0, NOW - 3, NOW - 1]
    assert batch.reading_seq.tolist() == [1, -1, 3, 5]
    assert np.isnan(batch.reading_batt[3])
    assert batch.reading_batt[:3].tolist() == [90.0, 90.0, 90.0]
    smoke = batch.sample_slot == decoder.index.slot("smk-1-1", "smoke")
    assert batch.sample_value[smoke].tolist() == [0.01, 0.02, 0.04, 0.05]
    assert batch.sample_ts[smoke].tolist() == batch.reading_ts.tolist()
    assert batch.sample_reading[smoke].tolist() == [0, 1, 2, 3]
    assert [m.payload for m in batch.reading_msg][2] == msg(
        "smk-1-1", telemetry(3, smoke=0.04, ts=NOW - 3)
    ).payload
    assert len(batch.events) == 1


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("ts", True, RejectReason.BAD_PAYLOAD),
        ("ts", 10**400, RejectReason.BAD_JSON),  # beyond a double: orjson refuses the number
        ("ts", None, None),  # no clock: the receipt time stands in, accepted
        ("seq", 2**53, RejectReason.BAD_PAYLOAD),
        ("seq", -1, RejectReason.BAD_PAYLOAD),
        ("seq", 1.0, RejectReason.BAD_PAYLOAD),
        ("batt", 101, RejectReason.BAD_PAYLOAD),
        ("rssi", "x", RejectReason.BAD_PAYLOAD),
        ("v", {"smoke": False}, RejectReason.BAD_PAYLOAD),
        ("v", {"smoke": 2**64}, RejectReason.OUT_OF_RANGE),
        ("v", {}, RejectReason.BAD_PAYLOAD),
        ("v", [1], RejectReason.BAD_PAYLOAD),
    ],
)
def test_a_reading_that_is_not_plain_in_one_field_is_decoded_alone_among_plain_ones(
    decoder: Decoder, field: str, value: object, reason: RejectReason | None
) -> None:
    """Whatever the column-wise checks turn down is decoded one by one, and rejected with the reason
    the per-message checks give (or accepted, if they do), while the plain readings around it are
    accepted."""
    odd = msg("smk-1-1", telemetry(2) | {field: value})
    batch = decoder.decode([msg("smk-1-1", telemetry(1)), odd, msg("smk-1-1", telemetry(3))], NOW)
    assert [r.reason for r in batch.rejects] == ([] if reason is None else [reason])
    assert batch.reading_seq.tolist() == ([1, 3] if reason is not None else [1, 2, 3])


@pytest.mark.parametrize("undo", [False, True], ids=["plain", "with-undo-record"])
def test_accepting_a_batch_at_once_decides_as_accepting_each_reading_in_turn(undo: bool) -> None:
    """`accept_many` takes the usual case inline; every reading still gets the decision `accept`
    gives it, and the trackers end in the same state, through next seqs, repeats, late readings,
    jumps, counter resets and redeliveries."""
    rng = np.random.default_rng(20)
    one, many = SeqTracker(6), SeqTracker(6)
    seqs = [0] * 6
    for _ in range(30):
        devs, sq, ts, fps, rec, dup = [], [], [], [], [], []
        for _ in range(40):
            d = int(rng.integers(6))
            step = int(rng.choice([1, 1, 1, 2, 0, -3, 70, -200]))
            seqs[d] = max(0, seqs[d] + step)
            devs.append(d)
            sq.append(seqs[d])
            ts.append(NOW + float(rng.integers(-100, 100)))
            fps.append(int(rng.integers(1, 4)))
            rec.append(NOW)
            dup.append(bool(rng.integers(2)))
        if undo:
            one.begin()
            many.begin()
        expected = [
            one.accept(*r[:4], received=r[4], redelivered=r[5])
            for r in zip(devs, sq, ts, fps, rec, dup, strict=True)
        ]
        assert many.accept_many(devs, sq, ts, fps, rec, dup) == expected
        assert sorted(many.snapshot()) == sorted(one.snapshot())
        if undo:
            one.commit()
            many.commit()


def test_one_odd_telemetry_message_among_plain_ones_is_rejected_for_its_own_reason(decoder: Decoder) -> None:
    """The batch-wide topic and JSON checks give way to the one-by-one loop when any message fails
    them; the plain messages around it are accepted all the same."""
    odd = [
        (msg("nobody", telemetry(1)), RejectReason.UNKNOWN_DEVICE),
        (msg("smk-1-2", telemetry(1), site="elsewhere"), RejectReason.SITE_MISMATCH),
        (msg("smk-1-2", b"x" * 20_000), RejectReason.TOO_LARGE),
        (msg("smk-1-2", b"{not json"), RejectReason.BAD_JSON),
        (msg("smk-1-2", [1, 2]), RejectReason.BAD_PAYLOAD),
        (Message("fw/v1/s1/smk-1-2/x/telemetry", b"{}", NOW), RejectReason.BAD_TOPIC),
        (Message("xx/v1/s1/smk-1-2/telemetry", b"{}", NOW), RejectReason.BAD_TOPIC),
    ]
    for message, reason in odd:
        batch = decoder.decode([msg("smk-1-1", telemetry(1)), message, msg("smk-1-3", telemetry(1))], NOW)
        assert [r.reason for r in batch.rejects] == [reason]
        assert batch.reading_dev.size == 2
        decoder = Decoder(decoder.index)  # fresh de-duplication for the next round


@pytest.mark.parametrize("bound", [7, 6], ids=["remembered", "registry-over-the-bound"])
def test_remembered_telemetry_topics_decide_as_the_topic_checks(
    decoder: Decoder, monkeypatch: pytest.MonkeyPatch, bound: int
) -> None:
    """The decoder remembers the telemetry topics it found plain (a look-up instead of splitting the
    topic per message), when the registry has at most TOPIC_CACHE_MAX devices (7 here). Once
    remembered, a topic's messages are still checked for size and content; a topic that is not
    plain (another site, an unknown device) is never remembered and keeps its reason; and with a
    larger registry nothing is remembered, with the same outcomes."""
    monkeypatch.setattr("ingest.decode.TOPIC_CACHE_MAX", bound)
    devices = ("smk-1-1", "smk-1-2", "smk-1-3", "smk-2-1")
    first = decoder.decode([msg(d, telemetry(1)) for d in devices], NOW)
    assert first.reading_dev.size == 4
    assert first.rejects == []
    remembered = decoder._topic_dev
    expected = {f"fw/v1/s1/{d}/telemetry": decoder.index.dev_of[d] for d in devices}
    assert remembered == (expected if bound >= decoder.index.n_devices else {})
    odd = [
        (msg("smk-1-1", b"x" * 20_000), RejectReason.TOO_LARGE),
        (msg("smk-1-2", b"{not json"), RejectReason.BAD_JSON),
        (msg("smk-1-3", [1, 2]), RejectReason.BAD_PAYLOAD),
        (msg("smk-1-1", telemetry(9), site="elsewhere"), RejectReason.SITE_MISMATCH),
        (msg("nobody", telemetry(1)), RejectReason.UNKNOWN_DEVICE),
        (msg("smk-2-1", telemetry(1), kind="bogus"), RejectReason.BAD_TOPIC),
    ]
    for seq, (message, reason) in enumerate(odd, start=2):
        batch = decoder.decode([message, msg("smk-1-1", telemetry(seq)), msg("smk-2-1", telemetry(seq))], NOW)
        assert [r.reason for r in batch.rejects] == [reason]
        assert batch.reading_seq.tolist() == [seq, seq]
    assert decoder._topic_dev == remembered
