"""InfluxDB line protocol, written by hand: pure functions, no I/O (docs/influx.md has the data model).

    measurement,tag=value,tag=value field=1.5,count=3i,text="a \\"quoted\\" word" 1732340000250

Escaping follows the line protocol reference: in measurements, commas and spaces; in tag keys, tag
values and field keys, commas, equals signs and spaces; in string field values, double quotes and
backslashes. A backslash is doubled everywhere, because two backslashes read as one: a tag value
ending in a backslash would otherwise escape the separator after it. Newlines cannot be escaped at
all, so they become spaces. Empty tag values are not allowed by the protocol, so such tags are left
out. Floats that are not finite (NaN, ±inf) have no representation: they are skipped, and a point
left without fields is no point (None).

Readings are encoded in bulk from the pipeline's numpy columns (`ReadingEncoder`): formatting is the
sink's main CPU cost (about 0.3 µs a sample with this encoder on the development machine), which is
why it runs in a process of its own (storage/influx.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FieldValue = float | int | str
DeviceTags = dict[str, str]  # site, building, floor, zone, kind
# An alarm transition as handed to the sink: (ts, action, alarm_id, device_id, alarm_type, category,
# severity, state, site, place, value, detail); see storage/influx.py `alarm_row`.
AlarmRow = tuple[Any, ...]
TEXT_MAX = 300  # characters of an alarm_event's `text`


def _escaper(specials: str) -> dict[int, str]:
    table = {ord("\\"): "\\\\", ord("\n"): " ", ord("\r"): " "}
    table.update({ord(c): "\\" + c for c in specials})
    return table


_KEY = _escaper(",= ")  # tag keys, tag values, field keys
_MEASUREMENT = _escaper(", ")
_STRING = {ord("\\"): "\\\\", ord('"'): '\\"', ord("\n"): " ", ord("\r"): " "}


def escape_key(text: str) -> str:
    """A tag key, tag value or field key.

    >>> escape_key("ward 3,east=1")
    'ward\\\\ 3\\\\,east\\\\=1'
    """
    return text.translate(_KEY)


def escape_measurement(text: str) -> str:
    return text.translate(_MEASUREMENT)


def string_field(text: str) -> str:
    """A string field value, quoted.

    >>> print(string_field('say "hi" \\\\ bye'))
    "say \\"hi\\" \\\\ bye"
    """
    return '"' + text.translate(_STRING) + '"'


def field_value(value: FieldValue) -> str | None:
    """The field value as line protocol: floats as the shortest exact decimal, integers with the
    `i` suffix, strings quoted. None for a float that is not finite (it cannot be written)."""
    if isinstance(value, bool):  # a bool is an int to Python, never to the data model
        raise TypeError("boolean fields are not part of firewatch's data model")
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    if isinstance(value, str):
        return string_field(value)
    raise TypeError(f"unsupported field value {value!r} ({type(value).__name__})")


def tag_set(tags: Mapping[str, str]) -> str:
    """',k=v,...' sorted by key (the order InfluxDB stores them in), empty values left out."""
    return "".join(f",{escape_key(k)}={escape_key(v)}" for k, v in sorted(tags.items()) if v)


def line(
    measurement: str, tags: Mapping[str, str], fields: Mapping[str, FieldValue], ts_ms: int
) -> str | None:
    """One point, or None when no field has a value that can be written.

    >>> line("alarm_event", {"site": "s1", "zone": ""}, {"alarm_id": 7, "value": float("nan")}, 1000)
    'alarm_event,site=s1 alarm_id=7i 1000'
    """
    parts = []
    for key, value in fields.items():
        text = field_value(value)
        if text is not None:
            parts.append(f"{escape_key(key)}={text}")
    if not parts:
        return None
    return f"{escape_measurement(measurement)}{tag_set(tags)} {','.join(parts)} {ts_ms}"


@dataclass(frozen=True)
class Encoded:
    """Lines joined by newlines (a trailing one too), and how many samples could not be written."""

    data: bytes
    points: int
    skipped: int  # samples that were not finite


class ReadingEncoder:
    """Samples (series slot, time, value) -> one `reading` line per (device, timestamp in ms).

    Built from the series table (slot -> device, channel) and each device's tags; the strings every
    line starts with are made once per slot, so a sample costs two string concatenations.
    """

    def __init__(self, series: Sequence[tuple[str, str]], tags_of: Mapping[str, Mapping[str, str]]) -> None:
        prefix: dict[str, str] = {}
        dev_index: dict[str, int] = {}
        first: list[str] = []
        more: list[str] = []
        device = np.empty(len(series), dtype=np.int64)
        for i, (dev, channel) in enumerate(series):
            head = prefix.get(dev)
            if head is None:
                head = prefix[dev] = "reading" + tag_set({**tags_of.get(dev, {}), "device": dev}) + " "
                dev_index[dev] = len(dev_index)
            key = escape_key(channel) + "="
            first.append(head + key)  # the first field of a line, after its measurement and tags
            more.append("," + key)
            device[i] = dev_index[dev]
        self._first = np.array(first, dtype=object)
        self._more = np.array(more, dtype=object)
        self._device = device

    @property
    def n_series(self) -> int:
        return int(self._device.size)

    def encode(
        self,
        slot: npt.NDArray[np.integer],
        ts: npt.NDArray[np.float64],
        value: npt.NDArray[np.float64],
    ) -> Encoded:
        finite = np.isfinite(value)
        skipped = int(finite.size - np.count_nonzero(finite))
        if skipped:
            slot, ts, value = slot[finite], ts[finite], value[finite]
        n = int(slot.size)
        if n == 0:
            return Encoded(b"", 0, skipped)
        if int(slot.max()) >= self.n_series or int(slot.min()) < 0:
            raise IndexError(f"series slot outside the series table of {self.n_series}")
        ms = np.rint(ts * 1000.0).astype(np.int64)
        dev = self._device[slot]
        # A message's samples are adjacent and share device and time; sort each such run by slot so
        # its channels form one line in profile order whatever order the payload listed them in.
        run = np.zeros(n, dtype=np.int64)
        np.cumsum((dev[1:] != dev[:-1]) | (ms[1:] != ms[:-1]), out=run[1:])
        order = np.lexsort((slot, run))
        slot, ms, value, run = slot[order], ms[order], value[order], run[order]
        # A new line at each run, and again if a channel repeats inside one (two messages of a
        # device stamped within the same millisecond): a line never names a field twice.
        starts = np.ones(n, dtype=bool)
        starts[1:] = (run[1:] != run[:-1]) | (slot[1:] == slot[:-1])
        heads = np.where(starts, self._first[slot], self._more[slot]).tolist()
        ends = np.empty(n, dtype=bool)
        ends[:-1] = starts[1:]
        ends[-1] = True
        tails = [f" {t}\n" for t in ms[ends].tolist()]
        pieces: list[str] = []
        k = 0
        for head, v, end in zip(heads, value.tolist(), ends.tolist(), strict=True):
            pieces.append(head)
            pieces.append(repr(v))
            if end:
                pieces.append(tails[k])
                k += 1
        return Encoded("".join(pieces).encode(), len(tails), skipped)


def alarm_line(row: AlarmRow, devices: dict[str, DeviceTags]) -> str | None:
    """One `alarm_event` line. Device tags when the key is a (registered or once registered)
    device; otherwise only what the alarm row says (its site and place)."""
    ts, action, alarm_id, device_id, alarm_type, category, severity, state, site, place, value, detail = row
    known = devices.get(device_id)
    if known is not None:
        tags: dict[str, str] = {**known, "device": device_id}
    else:
        levels = [*str(place).split("/"), "", "", ""][:4]
        tags = {"site": site or levels[0], "building": levels[1], "floor": levels[2], "zone": levels[3]}
    tags.update(category=category, alarm_type=alarm_type, action=action, severity=severity)
    text = f"{category} {action}: {alarm_type} {device_id}" + (f" @ {place}" if place else "")
    if detail:
        text += f" — {detail}"
    fields: dict[str, FieldValue] = {"alarm_id": int(alarm_id), "state": state, "text": text[:TEXT_MAX]}
    if value is not None:
        fields["value"] = float(value)
    return line("alarm_event", tags, fields, round(float(ts) * 1000))
