"""Splitting a device's TCP stream into GB/T 26875.3 frames: frames split over reads or joined in one,
garbage, broken frames, the FSCN8001 look-alike, bounded memory, and nothing lost."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.gb26875.codes import Command
from ingest.gb26875.frame import MAX_FRAME, Frame, FrameErrorReason, GbTime, decode_frame, encode_frame
from ingest.gb26875.framer import Framer, FrameReject
from ingest.gb26875.objects import ComponentState, DeviceState, encode_adu

T = GbTime(5, 58, 14, 5, 12, 2026)
DEVICE, CENTRE = 889, 88888


def frame(serial: int = 1, adu: bytes = b"", command: int = Command.SEND) -> bytes:
    return encode_frame(serial=serial, command=command, source=DEVICE, destination=CENTRE, adu=adu, time=T)


FIRE = frame(1, encode_adu(2, [ComponentState(1, 1, 42, 0x0002000A, 3, "3楼东区护士站", T)]))
STATE = frame(2, encode_adu(21, [DeviceState(0x09, T)]))
HEARTBEAT = frame(3)


def fscn8001() -> bytes:
    """A 赋安 FSCN8001 private frame: @@, cmd, 00 01 05, BCD time, 12-byte device id, data, sum, ##."""
    body = bytes.fromhex("01 00 01 05 26 12 05 14 58 05") + b"FSCN80010001" + bytes.fromhex("01 02 03")
    return b"@@" + body + bytes([sum(body) % 256]) + b"##"


def split(framer: Framer, *chunks: bytes) -> list[Frame | FrameReject]:
    out: list[Frame | FrameReject] = []
    for chunk in chunks:
        out += framer.feed(chunk)
    return out


def raws(items: list[Frame | FrameReject]) -> list[bytes]:
    return [item.raw for item in items]


def kinds(items: list[Frame | FrameReject]) -> list[str]:
    return ["frame" if isinstance(item, Frame) else str(item.reason) for item in items]


def test_several_frames_in_one_read_come_out_in_order() -> None:
    items = Framer().feed(FIRE + STATE + HEARTBEAT)
    assert items == [decode_frame(FIRE), decode_frame(STATE), decode_frame(HEARTBEAT)]


def test_a_frame_split_at_every_point_comes_out_once_whole() -> None:
    for cut in range(1, len(FIRE)):
        framer = Framer()
        assert framer.feed(FIRE[:cut]) == []
        assert framer.feed(FIRE[cut:]) == [decode_frame(FIRE)], cut
        assert framer.buffered == 0


def test_frames_fed_one_byte_at_a_time() -> None:
    stream = FIRE + HEARTBEAT + STATE
    framer = Framer()
    items = split(framer, *(bytes([b]) for b in stream))
    assert raws(items) == [FIRE, HEARTBEAT, STATE]


def test_garbage_before_and_between_frames_is_reported_not_dropped() -> None:
    items = Framer().feed(b"\r\nAT+OK" + FIRE + b"\x00\x00" + STATE)
    assert kinds(items) == ["bad_start", "frame", "bad_start", "frame"]
    assert raws(items) == [b"\r\nAT+OK", FIRE, b"\x00\x00", STATE]
    assert all(item.answerable is None for item in items if isinstance(item, FrameReject))


def test_a_bad_checksum_is_answerable_and_the_next_frame_is_found() -> None:
    broken = FIRE[:-3] + bytes([FIRE[-3] ^ 0xFF]) + b"##"
    items = Framer().feed(broken + STATE)
    assert kinds(items) == ["bad_checksum", "frame"]
    reject = items[0]
    assert isinstance(reject, FrameReject)
    assert reject.raw == broken
    assert reject.answerable is not None
    assert (reject.answerable.serial_bytes, reject.answerable.source, reject.answerable.destination) == (
        b"\x01\x00",
        DEVICE,
        CENTRE,
    )
    assert "checksum byte" in reject.detail


def test_a_bad_end_is_answerable() -> None:
    items = Framer().feed(STATE[:-2] + b"#!" + HEARTBEAT)
    assert kinds(items) == ["bad_end", "frame"]
    assert isinstance(items[0], FrameReject)
    assert items[0].answerable is not None


def test_a_corrupt_length_does_not_hide_the_frame_it_overlaps() -> None:
    # STATE's L says 100 instead of 9: its claimed extent covers HEARTBEAT, which must still be found.
    corrupt = STATE[:24] + (100).to_bytes(2, "little") + STATE[26:]
    items = Framer().feed(corrupt + HEARTBEAT + bytes(120))
    assert kinds(items)[:2] == ["bad_end", "frame"]
    assert items[0].raw == corrupt
    assert items[1] == decode_frame(HEARTBEAT)


def test_an_adu_over_1024_bytes_is_refused_and_the_stream_resynchronises() -> None:
    oversized = FIRE[:24] + (1025).to_bytes(2, "little") + FIRE[26:]
    items = Framer().feed(oversized + STATE)
    assert kinds(items) == ["adu_too_long", "frame"]
    assert items[0].raw == oversized
    assert isinstance(items[0], FrameReject)
    assert items[0].answerable is not None  # its header is plausible: the device can be denied


def test_the_fscn8001_look_alike_is_refused_and_the_next_gb_frame_found() -> None:
    items = Framer().feed(fscn8001() + FIRE)
    assert kinds(items) == ["lookalike_fscn8001", "frame"]
    assert raws(items) == [fscn8001(), FIRE]


def test_the_fscn8001_look_alike_is_refused_without_waiting_for_more_bytes() -> None:
    framer = Framer()
    assert kinds(framer.feed(fscn8001())) == ["lookalike_fscn8001"]
    assert framer.buffered == 0


def test_a_frame_cut_off_by_the_end_of_the_stream_is_too_short() -> None:
    framer = Framer()
    assert framer.feed(FIRE + STATE[:20]) == [decode_frame(FIRE)]
    assert framer.buffered == 20
    closed = framer.close()
    assert kinds(closed) == ["too_short"]
    assert closed[0].raw == STATE[:20]


def test_a_last_at_sign_waits_for_the_next_read() -> None:
    framer = Framer()
    assert raws(framer.feed(b"xyz@")) == [b"xyz"]
    assert framer.feed(FIRE[1:]) == [decode_frame(FIRE)]


def test_a_stalled_frame_holds_at_most_one_frame_of_memory() -> None:
    # A header claiming the largest ADU, then bytes trickling in: held until 1054 bytes, then decided.
    framer = Framer()
    header = frame(7, bytes(1024))[:27]
    items = framer.feed(header)
    for _ in range(200):
        items += framer.feed(bytes(7))
        assert framer.buffered < MAX_FRAME
    # Decided at 1054 bytes (no "##" there); the zeros after it are reported as they come.
    assert kinds(items)[0] == "bad_end"
    assert len(items[0].raw) == MAX_FRAME
    assert set(kinds(items)[1:]) == {"bad_start"}
    assert framer.buffered == 0


def test_a_stream_of_at_signs_is_bounded() -> None:
    framer = Framer()
    for _ in range(100):
        framer.feed(b"@" * 997)
        assert framer.buffered < MAX_FRAME


# --- properties ---------------------------------------------------------------------------------------

times = st.builds(
    GbTime,
    st.integers(0, 59),
    st.integers(0, 59),
    st.integers(0, 23),
    st.integers(1, 28),
    st.integers(1, 12),
    st.integers(2000, 2099),
)
adus = st.one_of(
    st.just(b""),
    st.builds(lambda t, s: encode_adu(21, [DeviceState(s, t)]), times, st.integers(0, 255)),
    st.builds(
        lambda t, n, text: encode_adu(2, [ComponentState(1, 1, 42, n, 3, text, t)] * (n % 22 + 1)),
        times,
        st.integers(0, 0xFFFFFFFF),
        st.text(st.characters(codec="gb18030", exclude_characters="\x00 "), max_size=7),
    ),
    st.binary(max_size=1024),  # any ADU bytes: the framer does not look inside
)
gb_frames = st.builds(
    lambda serial, command, src, dst, adu, t, user: encode_frame(
        serial=serial, command=command, source=src, destination=dst, adu=adu, time=t, version=(1, user)
    ),
    st.integers(0, 0xFFFF),
    st.integers(0, 255),
    st.integers(0, (1 << 48) - 1),
    st.integers(0, (1 << 48) - 1),
    adus,
    times,
    st.integers(0, 255).filter(lambda user: user != 5),  # user version 5 could read as FSCN8001
)
garbage_without_at = st.binary(max_size=40).map(lambda data: data.replace(b"@", b""))


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in pairwise(bounds) if b > a]


def run(chunks: list[bytes]) -> list[Frame | FrameReject]:
    framer = Framer()
    out: list[Frame | FrameReject] = []
    for chunk in chunks:
        out += framer.feed(chunk)
        assert framer.buffered < MAX_FRAME
    return out + framer.close()


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(garbage_without_at, gb_frames), max_size=6),
    garbage_without_at,
    st.lists(st.integers(0, 10_000), max_size=12),
)
def test_frames_between_garbage_without_at_signs_are_all_found_in_order(
    parts: list[tuple[bytes, bytes]], tail: bytes, cuts: list[int]
) -> None:
    stream = b"".join(garbage + wire for garbage, wire in parts) + tail
    items = run(chunked(stream, cuts))
    assert [item.raw for item in items if isinstance(item, Frame)] == [wire for _, wire in parts]
    assert all(item.reason == FrameErrorReason.bad_start for item in items if isinstance(item, FrameReject))
    assert b"".join(item.raw for item in items) == stream


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(st.binary(max_size=60), gb_frames, st.just(b"@@"), st.just(fscn8001())), max_size=8),
    st.lists(st.integers(0, 10_000), max_size=12),
)
def test_any_stream_comes_back_byte_for_byte_in_bounded_memory(parts: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(parts)
    items = run(chunked(stream, cuts))  # never raises; `run` checks the bound after every read
    assert b"".join(item.raw for item in items) == stream
    for item in items:
        if isinstance(item, Frame):
            assert decode_frame(item.raw) == item
