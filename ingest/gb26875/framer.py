"""Split one TCP connection's byte stream into GB/T 26875.3 frames (the standard's 粘包 handling).

Rules: scan for "@@"; read L at offset 24; wait for 30 + L bytes; check "##" and the checksum; on
any error resynchronise at the next "@@" after the bad frame's start. Nothing is dropped silently:
every byte fed comes back exactly once, in order, either in a `Frame.raw` or in a `FrameReject.raw`
(bytes still waiting for the rest of a frame come back from `close`).

Memory is bounded: a frame is decided as soon as 30 + L bytes (at most 1054) are in, so after
`feed` returns at most `MAX_FRAME - 1` = 1053 bytes stay buffered, however the peer trickles.
A peer that sends "@@" and a header and then stalls keeps those bytes until more come or the
connection closes (`close` reports them as too_short); its listener's idle timeout ends that.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ingest.gb26875.frame import (
    HEADER,
    MAX_ADU,
    MAX_FRAME,
    MIN_FRAME,
    START,
    Frame,
    FrameErrorReason,
    adu_length,
    check_frame,
    checked_frame,
    fscn_end,
    header_frame,
    looks_fscn,
)

_AT = 0x40


@dataclass(frozen=True)
class FrameReject:
    """Bytes that are not a GB frame, and why.

    `answerable` is the header of a broken frame that is plausible enough to deny (its time tag is
    a real date and time, so serial and addresses are likely right), with an empty ADU; None for
    garbage. `detail` says what was wrong, for the log.
    """

    raw: bytes
    reason: FrameErrorReason
    answerable: Frame | None
    detail: str = ""


class Framer:
    """A stream splitter for one connection: `feed` what arrives, `close` when it ends."""

    def __init__(self) -> None:
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes held back for a frame not complete yet (never more than MAX_FRAME - 1 after `feed`)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame | FrameReject]:
        """The frames and rejects completed by `data`, in stream order."""
        self._buf += data
        return self._split(final=False)

    def close(self) -> list[Frame | FrameReject]:
        """The end of the stream: whatever is still buffered, as too_short or bad_start rejects."""
        return self._split(final=True)

    def _split(self, *, final: bool) -> list[Frame | FrameReject]:
        buf = self._buf
        size = len(buf)
        out: list[Frame | FrameReject] = []
        pos = 0
        while pos < size:
            start = buf.find(START, pos)
            if start < 0:
                # A last "@" may be the first half of the next frame's "@@".
                cut = size - 1 if not final and buf[size - 1] == _AT else size
                if cut > pos:
                    out.append(_garbage(buf, pos, cut))
                pos = cut
                break
            if start > pos:
                out.append(_garbage(buf, pos, start))
                pos = start
            avail = size - start
            fscn = avail >= 6 and looks_fscn(buf, start)
            if fscn:
                end = fscn_end(buf, start)
                if end is not None and not _whole_gb(buf, start, avail):
                    out.append(_reject(buf, start, end, FrameErrorReason.lookalike_fscn8001, None,
                                       "赋安 FSCN8001 private framing, not GB/T 26875.3"))  # fmt: skip
                    pos = end
                    continue
                if not final and avail < MAX_FRAME and not _whole_gb(buf, start, avail):
                    break  # either framing may still complete
            if avail < HEADER:
                if not final:
                    break
                pos = self._short(out, start, f"{avail} bytes; a frame has at least {MIN_FRAME}", final)
                continue
            adu_len = adu_length(buf, start)
            if adu_len > MAX_ADU:
                pos = _to_next_start(buf, start, size, final)
                out.append(_reject(buf, start, pos, FrameErrorReason.adu_too_long, _plausible(buf, start),
                                   f"ADU length {adu_len} is over {MAX_ADU}"))  # fmt: skip
                continue
            need = MIN_FRAME + adu_len
            if avail < need:
                if not final:
                    break
                pos = self._short(out, start, f"{avail} bytes; ADU length {adu_len} needs {need}", final)
                continue
            error = check_frame(buf, start, need)
            if error is None:
                out.append(checked_frame(bytes(buf[start : start + need])))
                pos = start + need
                continue
            # Resynchronise at the next "@@" after this start, if one begins inside the claimed frame.
            after = buf.find(START, start + 1, start + need + 1)
            pos = start + need if after < 0 else after
            out.append(_reject(buf, start, pos, error.reason, _plausible(buf, start), error.detail))
        del buf[:pos]
        return out

    def _short(self, out: list[Frame | FrameReject], start: int, detail: str, final: bool) -> int:
        end = _to_next_start(self._buf, start, len(self._buf), final)
        out.append(_reject(self._buf, start, end, FrameErrorReason.too_short, None, detail))
        return end


def _whole_gb(buf: bytearray, start: int, avail: int) -> bool:
    """True when a valid GB frame is complete at `start` (it wins over the look-alike reading)."""
    if avail < HEADER:
        return False
    need = MIN_FRAME + adu_length(buf, start)
    return need <= MAX_FRAME and avail >= need and check_frame(buf, start, need) is None


def _to_next_start(buf: bytearray, start: int, size: int, final: bool) -> int:
    """The next "@@" after `start`, else the end of the buffer (less a last "@" while more may come)."""
    after = buf.find(START, start + 1)
    if after >= 0:
        return after
    return size - 1 if not final and buf[size - 1] == _AT and size - 1 > start else size


def _plausible(buf: bytearray, start: int) -> Frame | None:
    """The header at `start` if it has all 27 bytes and a real time tag, else None."""
    if len(buf) - start < HEADER:
        return None
    frame = header_frame(buf, start, b"")
    return frame if frame.time.to_datetime() is not None else None


def _reject(
    buf: bytearray, start: int, end: int, reason: FrameErrorReason, header: Frame | None, detail: str
) -> FrameReject:
    raw = bytes(buf[start:end])
    return FrameReject(raw, reason, None if header is None else replace(header, raw=raw), detail)


def _garbage(buf: bytearray, start: int, end: int) -> FrameReject:
    detail = f"{end - start} bytes outside a frame (not at a '@@' start)"
    return FrameReject(bytes(buf[start:end]), FrameErrorReason.bad_start, None, detail)
