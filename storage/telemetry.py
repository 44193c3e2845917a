"""The local telemetry store: raw samples in a SQLite file of their own, off the alarm path.

One row per (series, ts, value), a series being one (device, channel). Written in whole batches by
one writer thread; each batch commits together with the de-duplication state of its devices, so a
QoS 1 redelivery after a crash is recognised as already stored.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

_SCHEMA = """
CREATE TABLE IF NOT EXISTS series(
    id INTEGER PRIMARY KEY, device_id TEXT NOT NULL, channel TEXT NOT NULL, UNIQUE(device_id, channel));
CREATE TABLE IF NOT EXISTS samples(series INTEGER NOT NULL, ts REAL NOT NULL, value REAL NOT NULL);
CREATE INDEX IF NOT EXISTS samples_series_ts ON samples(series, ts);
CREATE TABLE IF NOT EXISTS device_seq(
    device_id TEXT PRIMARY KEY, max_seq INTEGER NOT NULL, bits INTEGER NOT NULL, last_ts REAL NOT NULL);
"""

_I64 = 1 << 63


def _to_signed(bits: int) -> int:  # SQLite integers are signed 64-bit
    return bits - (1 << 64) if bits >= _I64 else bits


def _to_unsigned(bits: int) -> int:
    return bits + (1 << 64) if bits < 0 else bits


@dataclass(frozen=True)
class History:
    ts: npt.NDArray[np.float64]
    value: npt.NDArray[np.float64]  # the mean per bucket when downsampled
    min: npt.NDArray[np.float64] | None = None
    max: npt.NDArray[np.float64] | None = None
    count: npt.NDArray[np.int64] | None = None


class TelemetryStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = self._connect()
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], int] = {
            (d, c): i for i, d, c in self._db.execute("SELECT id, device_id, channel FROM series")
        }
        self.slot_series: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")
        return db

    def bind(self, slots: Iterable[tuple[str, str]]) -> None:
        """Map the engine's slots, in order, to series ids (creating series as needed)."""
        ids = []
        with self._lock:
            self._db.execute("BEGIN")
            for key in slots:
                sid = self._series.get(key)
                if sid is None:
                    cur = self._db.execute("INSERT INTO series(device_id, channel) VALUES (?, ?)", key)
                    sid = int(cur.lastrowid or 0)
                    self._series[key] = sid
                ids.append(sid)
            self._db.execute("COMMIT")
        self.slot_series = np.array(ids, dtype=np.int64)

    def write(
        self,
        slot: npt.NDArray[np.int32],
        ts: npt.NDArray[np.float64],
        value: npt.NDArray[np.float64],
        seq_state: list[tuple[str, int, int, float]],
    ) -> None:
        """Append one batch and its devices' seq state in one transaction (blocking: call in a thread)."""
        rows = zip(self.slot_series[slot].tolist(), ts.tolist(), value.tolist(), strict=True)
        seq_rows = [(d, m, _to_signed(b), t) for d, m, b, t in seq_state]
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany("INSERT INTO samples VALUES (?, ?, ?)", rows)
                if seq_rows:
                    self._db.executemany(
                        "INSERT INTO device_seq VALUES (?, ?, ?, ?) ON CONFLICT(device_id) DO UPDATE SET "
                        "max_seq=excluded.max_seq, bits=excluded.bits, last_ts=excluded.last_ts",
                        seq_rows,
                    )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def seq_state(self) -> list[tuple[str, int, int, float]]:
        with self._lock:
            rows = self._db.execute("SELECT device_id, max_seq, bits, last_ts FROM device_seq").fetchall()
        return [(d, m, _to_unsigned(b), t) for d, m, b, t in rows]

    def history(
        self, device_id: str, channel: str, start: float, end: float, *, buckets: int | None = None
    ) -> History:
        """Samples of one series in [start, end); with `buckets`, min/max/mean per equal time bucket."""
        sid = self._series.get((device_id, channel))
        if sid is None:
            return History(np.zeros(0), np.zeros(0))
        db = sqlite3.connect(
            self.path
        )  # readers get their own connection: WAL lets them run beside the writer
        try:
            if not buckets:
                rows = db.execute(
                    "SELECT ts, value FROM samples WHERE series=? AND ts>=? AND ts<? ORDER BY ts",
                    (sid, start, end),
                ).fetchall()
                arr = np.array(rows, dtype=np.float64).reshape(-1, 2)
                return History(arr[:, 0], arr[:, 1])
            width = (end - start) / buckets
            rows = db.execute(
                "SELECT CAST((ts - ?) / ? AS INTEGER) AS b, MIN(value), MAX(value), AVG(value), COUNT(*) "
                "FROM samples WHERE series=? AND ts>=? AND ts<? GROUP BY b ORDER BY b",
                (start, width, sid, start, end),
            ).fetchall()
        finally:
            db.close()
        arr = np.array(rows, dtype=np.float64).reshape(-1, 5)
        return History(
            ts=start + (arr[:, 0] + 0.5) * width,
            value=arr[:, 3],
            min=arr[:, 1],
            max=arr[:, 2],
            count=arr[:, 4].astype(np.int64),
        )

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM samples").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
