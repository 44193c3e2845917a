"""Batches of readings the shared PostgreSQL could not take, kept in a local SQLite file until it can
(clustered: storage/pg_telemetry.ClusterTelemetry, docs/scale.md "When PostgreSQL is down").

A clustered worker's readings go to PostgreSQL. Were a batch that PostgreSQL refuses retried in
place, the batches behind it would wait in the pipeline's hand-off, and once that is full, detection
would wait too: a fire would wait for the database. Instead the batch is kept here and detection
goes on; the batches are written to PostgreSQL, oldest first, once it answers again (keyed there,
so one written twice is stored once).

One row per batch, as columns: the batch's distinct series keys (JSON), each sample's series number
(int32), time and value (float64) as raw bytes, and its device events (JSON).
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import numpy.typing as npt
import orjson

from storage.telemetry import EventRecord

_COLUMNS = """
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    keys BLOB NOT NULL,
    series BLOB NOT NULL,
    ts BLOB NOT NULL,
    value BLOB NOT NULL,
    events BLOB NOT NULL"""
# `refused`: batches PostgreSQL refused for what they hold (not for being away), kept with the reason.
_SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS spooled ({_COLUMNS});"
    f"CREATE TABLE IF NOT EXISTS refused ({_COLUMNS}, reason TEXT NOT NULL)"
)


@dataclass(frozen=True)
class ReadingBatch:
    """One batch's readings and device events as PostgreSQL takes them (storage/pg_telemetry.py)."""

    keys: tuple[list[str], list[str]]  # the batch's distinct series: devices, channels
    series: npt.NDArray[np.int64]  # per sample: its series, counted from 1 in `keys`
    ts: npt.NDArray[np.float64]
    value: npt.NDArray[np.float64]
    events: list[EventRecord]


@dataclass(frozen=True, kw_only=True)
class SpooledBatch(ReadingBatch):
    id: int
    created: float


class Spool:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        row = self._db.execute("SELECT count(*), min(created) FROM spooled").fetchone()
        self._count = int(row[0])
        self._oldest: float | None = row[1]
        self._refused = int(self._db.execute("SELECT count(*) FROM refused").fetchone()[0])

    @property
    def pending(self) -> int:
        """Batches waiting for PostgreSQL (no read: kept as they come and go)."""
        return self._count

    @property
    def oldest(self) -> float | None:
        return self._oldest

    def put(self, batch: ReadingBatch, now: float) -> None:
        """Keep one batch (committed when this returns; raises if the local disk fails)."""
        row = (
            now,
            orjson.dumps(batch.keys),
            np.ascontiguousarray(batch.series, dtype=np.int32).tobytes(),
            np.ascontiguousarray(batch.ts, dtype=np.float64).tobytes(),
            np.ascontiguousarray(batch.value, dtype=np.float64).tobytes(),
            orjson.dumps(batch.events),
        )
        with self._lock:
            self._db.execute(
                "INSERT INTO spooled(created, keys, series, ts, value, events) VALUES (?, ?, ?, ?, ?, ?)", row
            )
            self._count += 1
            if self._oldest is None:
                self._oldest = now

    def take(self, limit: int) -> list[SpooledBatch]:
        """The oldest `limit` batches, left in the spool until `done`."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, created, keys, series, ts, value, events FROM spooled ORDER BY id LIMIT ?",
                (limit,),
            ).fetchall()
        out = []
        for id_, created, keys, series, ts, value, events in rows:
            devices, channels = orjson.loads(keys)
            out.append(
                SpooledBatch(
                    (devices, channels),
                    np.frombuffer(series, dtype=np.int32).astype(np.int64),
                    np.frombuffer(ts, dtype=np.float64),
                    np.frombuffer(value, dtype=np.float64),
                    [cast(EventRecord, tuple(e)) for e in orjson.loads(events)],
                    id=int(id_),
                    created=float(created),
                )
            )
        return out

    def done(self, ids: list[int]) -> None:
        """Batches now stored in PostgreSQL: forgotten here."""
        if not ids:
            return
        with self._lock:
            self._db.executemany("DELETE FROM spooled WHERE id = ?", [(i,) for i in ids])
            row = self._db.execute("SELECT count(*), min(created) FROM spooled").fetchone()
            self._count, self._oldest = int(row[0]), row[1]

    def refuse(self, batch_id: int, reason: str) -> None:
        """A batch PostgreSQL refuses for what it holds (bad data, not an outage): kept apart with
        the reason, so it neither blocks the batches behind it nor is lost."""
        with self._lock:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT INTO refused SELECT *, ? FROM spooled WHERE id = ?", (reason[:2000], batch_id)
            )
            self._db.execute("DELETE FROM spooled WHERE id = ?", (batch_id,))
            self._db.execute("COMMIT")
            self._refused += 1
            row = self._db.execute("SELECT count(*), min(created) FROM spooled").fetchone()
            self._count, self._oldest = int(row[0]), row[1]

    def refused(self) -> int:
        """Batches kept apart because PostgreSQL refused what they hold (no read: counted)."""
        return self._refused

    def close(self) -> None:
        with self._lock:
            self._db.close()
