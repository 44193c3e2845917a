"""The local telemetry store: raw samples in a SQLite file of their own, off the alarm path.

A series is one (device, channel). Samples are kept columnar, as little-endian numpy blobs, in two
tables (measured against one indexed row per sample in bench/telemetry_store.py; the reasons are in
docs/decisions/0004-telemetry-chunks.md):

- `staged`: one row per ingest batch, all series mixed, appended in the batch's transaction together
  with the de-duplication state of its devices. One insert and no index work per batch, so the
  writer's cost does not grow with the store, and a QoS 1 redelivery after a crash is recognised as
  already stored.
- `chunks`: one row per series and time span, written by `compact()` from the staged batches (sorted
  per series) and merged with their siblings sixteen at a time as they accumulate, so a month of one
  series is a few dozen rows. Indexed by (series, t1) for range reads.

Readers see both tables in one read transaction, so a sample is visible from its batch's commit on,
never twice and never missing while compaction moves it.
"""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
import threading
import uuid
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

_SCHEMA = """
CREATE TABLE IF NOT EXISTS series(
    id INTEGER PRIMARY KEY, device_id TEXT NOT NULL, channel TEXT NOT NULL, UNIQUE(device_id, channel));
CREATE TABLE IF NOT EXISTS staged(
    id INTEGER PRIMARY KEY, n INTEGER NOT NULL, series BLOB NOT NULL, ts BLOB NOT NULL, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS chunks(
    series INTEGER NOT NULL, level INTEGER NOT NULL, t0 REAL NOT NULL, t1 REAL NOT NULL,
    n INTEGER NOT NULL, ts BLOB NOT NULL, value BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_series_t1 ON chunks(series, t1);
CREATE TABLE IF NOT EXISTS device_seq(
    device_id TEXT PRIMARY KEY, max_seq INTEGER NOT NULL, bits INTEGER NOT NULL, last_ts REAL NOT NULL,
    fps BLOB);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS journal(
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, body BLOB NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS device_events(
    id INTEGER PRIMARY KEY, device_id TEXT NOT NULL, ts REAL NOT NULL, received REAL NOT NULL,
    event TEXT NOT NULL, code INTEGER, channel TEXT, frame TEXT);
CREATE INDEX IF NOT EXISTS device_events_device_ts ON device_events(device_id, ts);
"""

SeqRow = tuple[str, int, int, float, bytes | None]  # device, max seq, window bits, last ts, fingerprints
# A device's own event, as its event log keeps it: device, time, receipt, event, code, channel, and
# the raw GB/T 26875.3 frame (hex) it came from, if it came in one.
EventRecord = tuple[str, float, float, str, int | None, str | None, str | None]


@dataclass(frozen=True)
class JournalEntry:
    """Work the state store could not take when its batch was stored (alarm events, rejects),
    kept here in the batch's own transaction until it is recorded there (firewatch/recorder.py)."""

    id: int
    kind: str
    body: bytes
    created: float


_SERIES = np.dtype("<i4")
_F64 = np.dtype("<f8")
FANOUT = 16  # this many chunks of one series and level merge into one of the next level
TOP_LEVEL = 5  # level-5 chunks (16**4 compactions of one series, ~3.8 days at 5 s) stay as they are
COMPACT_SAMPLES = 1_000_000  # staged samples moved per compaction transaction, about, at most
# Samples merged per compaction, at least this and at most MERGE_FACTOR x the samples it moved: a
# sample is merged up to TOP_LEVEL - 1 times, so merging keeps up with the input on average, and
# series filling their levels in step (all at once) do not hold the writer for one long transaction.
MERGE_MIN_SAMPLES = 100_000
MERGE_FACTOR = 6
MERGE_OVERHEAD = 1_000  # a merge's fixed cost (three statements), counted as this many samples

_I64 = 1 << 63
_U64 = 1 << 64


def _to_unsigned(bits: int) -> int:
    return bits + (1 << 64) if bits < 0 else bits


@dataclass(frozen=True)
class History:
    ts: npt.NDArray[np.float64]
    value: npt.NDArray[np.float64]  # the mean per bucket when downsampled
    min: npt.NDArray[np.float64] | None = None
    max: npt.NDArray[np.float64] | None = None
    count: npt.NDArray[np.int64] | None = None


@dataclass(frozen=True)
class CompactionResult:
    samples: int  # moved from staged batches into chunks
    chunks: int  # chunk rows written, merges included
    merges: int


def _floats(blobs: list[bytes]) -> npt.NDArray[np.float64]:
    return np.frombuffer(b"".join(blobs), dtype=_F64).astype(np.float64, copy=False)


def _series_ids(blobs: list[bytes]) -> npt.NDArray[np.int32]:
    return np.frombuffer(b"".join(blobs), dtype=_SERIES).astype(np.int32, copy=False)


def downsample(
    ts: npt.NDArray[np.float64], value: npt.NDArray[np.float64], start: float, end: float, buckets: int
) -> History:
    """Min, max, mean and count per equal time bucket of [start, end), for the non-empty buckets;
    `ts` ascending. Each bucket is stamped at its middle."""
    width = (end - start) / buckets
    b = np.minimum(((ts - start) / width).astype(np.int64), buckets - 1)
    if b.size == 0:
        empty = np.zeros(0)
        return History(empty, empty, empty, empty, np.zeros(0, dtype=np.int64))
    first = np.flatnonzero(np.r_[True, b[1:] != b[:-1]])
    count = np.diff(np.r_[first, b.size])
    return History(
        ts=start + (b[first] + 0.5) * width,
        value=np.add.reduceat(value, first) / count,
        min=np.minimum.reduceat(value, first),
        max=np.maximum.reduceat(value, first),
        count=count.astype(np.int64),
    )


class TelemetryStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = self._connect()
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(device_seq)")}
        if "fps" not in columns:  # a store from before fingerprints were kept (ingest/dedupe.py)
            with contextlib.suppress(sqlite3.OperationalError):  # the compactor may have added it
                self._db.execute("ALTER TABLE device_seq ADD COLUMN fps BLOB")
        self._lock = threading.Lock()
        # This store's name in the state store's journal marks (storage/marks.py): made once.
        self._db.execute("INSERT OR IGNORE INTO meta VALUES ('journal_id', ?)", (uuid.uuid4().hex,))
        self.journal_id: str = self._db.execute("SELECT value FROM meta WHERE key='journal_id'").fetchone()[0]
        self.slot_series: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)
        self._levels: defaultdict[tuple[int, int], int] = defaultdict(int)
        self._count_levels()
        self._adopt_row_table()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        # The compactor process holds the write lock while a compaction commits (under a second
        # at the benchmark's load); wait for it rather than fail the batch.
        db.execute("PRAGMA busy_timeout=30000")
        return db

    def _count_levels(self) -> None:
        self._levels.clear()
        for series, level, n in self._db.execute(
            "SELECT series, level, COUNT(*) FROM chunks GROUP BY series, level"
        ):
            self._levels[(series, level)] = n

    def _adopt_row_table(self) -> None:
        """Move samples of the earlier one-row-per-sample layout (`samples`) into chunks, once."""
        db = self._db
        if not db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='samples'").fetchone():
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            cur = db.execute("SELECT series, ts, value FROM samples")
            while rows := cur.fetchmany(500_000):
                arr = np.array(rows, dtype=np.float64)
                self._stage(arr[:, 0].astype(_SERIES), arr[:, 1], arr[:, 2])
            db.execute("DROP TABLE samples")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        while self.compact().samples:
            pass

    def bind(self, slots: Iterable[tuple[str, str]]) -> None:
        """Map the engine's slots, in order, to series ids (creating series as needed, in slot order).

        The keys go through a temporary table and are matched by the series table's unique index
        in SQLite: nothing per series is kept in Python but the ids (a million devices have about
        two million series, and a dictionary by `(device, channel)` tuple held 300 MB of them)."""
        with self._lock:
            db = self._db
            db.execute(
                "CREATE TEMP TABLE IF NOT EXISTS bind_keys("
                "slot INTEGER PRIMARY KEY, device_id TEXT NOT NULL, channel TEXT NOT NULL)"
            )
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("DELETE FROM temp.bind_keys")
                # The slot is the rowid, counted from 1 in insertion order in the emptied table.
                db.executemany("INSERT INTO temp.bind_keys(device_id, channel) VALUES (?, ?)", slots)
                # New series get ids in slot order (the first of equal keys counts), as before.
                db.execute(
                    "INSERT OR IGNORE INTO series(device_id, channel) "
                    "SELECT device_id, channel FROM temp.bind_keys ORDER BY slot"
                )
                (n,) = db.execute("SELECT count(*) FROM temp.bind_keys").fetchone()
                cur = db.execute(
                    "SELECT s.id FROM temp.bind_keys k JOIN series s "
                    "ON s.device_id = k.device_id AND s.channel = k.channel ORDER BY k.slot"
                )
                self.slot_series = np.fromiter(itertools.chain.from_iterable(cur), dtype=np.int64, count=n)
                db.execute("DELETE FROM temp.bind_keys")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def bind_devices(self, device_ids: Sequence[str], channels: Sequence[Collection[str]]) -> None:
        """`bind` for slots laid out device by device, as the index lays them out: device i's slots
        are its `channels[i]`, in order. The same ids as `bind` of those keys.

        The keys are made in SQLite from a row per device and a row per distinct channel list
        (devices of one profile share theirs: told apart by identity, one row each), so a million
        devices pass a million rows in, not two million keys. A store without series yet (the
        first start) needs no join back: its new series are numbered 1..n in slot order."""
        # Distinct lists by identity, in C (a Python loop took 0.4 s per 100,000 devices, loaded).
        identity = np.fromiter(map(id, channels), dtype=np.uint64, count=len(channels))
        _, first, inverse = np.unique(identity, return_index=True, return_inverse=True)
        lists = [channels[i] for i in first.tolist()]
        codes = inverse.reshape(-1).tolist()
        n = int(np.array([len(c) for c in lists], dtype=np.int64)[inverse].sum())
        with self._lock:
            db = self._db
            db.execute(
                "CREATE TEMP TABLE IF NOT EXISTS bind_devices("
                "dev INTEGER PRIMARY KEY, device_id TEXT NOT NULL, list INTEGER NOT NULL)"
            )
            db.execute(
                "CREATE TEMP TABLE IF NOT EXISTS bind_lists("
                "list INTEGER NOT NULL, pos INTEGER NOT NULL, channel TEXT NOT NULL, PRIMARY KEY(list, pos))"
            )
            keys = (
                "SELECT d.device_id, l.channel FROM temp.bind_devices d "
                "JOIN temp.bind_lists l ON l.list = d.list ORDER BY d.dev, l.pos"
            )
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("DELETE FROM temp.bind_devices")
                db.execute("DELETE FROM temp.bind_lists")
                db.executemany(
                    "INSERT INTO temp.bind_devices(device_id, list) VALUES (?, ?)",
                    zip(device_ids, codes, strict=True),
                )
                db.executemany(
                    "INSERT INTO temp.bind_lists VALUES (?, ?, ?)",
                    [(code, pos, c) for code, chans in enumerate(lists) for pos, c in enumerate(chans)],
                )
                (first,) = db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM series").fetchone()
                # New series get ids in slot order (the first of equal keys counts), as `bind`.
                added = db.execute(f"INSERT OR IGNORE INTO series(device_id, channel) {keys}").rowcount
                if first == 1 and added == n:  # a new store, every key new: ids 1..n in slot order
                    self.slot_series = np.arange(1, n + 1, dtype=np.int64)
                else:
                    cur = db.execute(
                        "SELECT s.id FROM temp.bind_devices d JOIN temp.bind_lists l ON l.list = d.list "
                        "JOIN series s ON s.device_id = d.device_id AND s.channel = l.channel "
                        "ORDER BY d.dev, l.pos"
                    )
                    self.slot_series = np.fromiter(
                        itertools.chain.from_iterable(cur), dtype=np.int64, count=n
                    )
                db.execute("DELETE FROM temp.bind_devices")
                db.execute("DELETE FROM temp.bind_lists")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # --- writing -----------------------------------------------------------------------------------
    def _stage(
        self, series: npt.NDArray[np.generic], ts: npt.NDArray[np.float64], value: npt.NDArray[np.float64]
    ) -> None:
        self._db.execute(
            "INSERT INTO staged(n, series, ts, value) VALUES (?, ?, ?, ?)",
            (
                int(ts.size),
                np.ascontiguousarray(series, dtype=_SERIES).tobytes(),
                np.ascontiguousarray(ts, dtype=_F64).tobytes(),
                np.ascontiguousarray(value, dtype=_F64).tobytes(),
            ),
        )

    def write(
        self,
        slot: npt.NDArray[np.int32],
        ts: npt.NDArray[np.float64],
        value: npt.NDArray[np.float64],
        seq_state: list[tuple[str, int, int, float, bytes]],
        journal: list[tuple[str, bytes]] | None = None,
        now: float = 0.0,
        events: list[EventRecord] | None = None,
    ) -> None:
        """Append one batch, its devices' seq state, its devices' own events (their event log) and
        what it leaves for the state store to take later (`journal`: (kind, body) entries), in one
        transaction (blocking: call in a thread)."""
        series = self.slot_series[slot]
        # The window bits as SQLite's signed 64-bit integers (inline: a row per device the batch touched).
        seq_rows = [(d, m, b - _U64 if b >= _I64 else b, t, f) for d, m, b, t, f in seq_state]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if ts.size:
                    self._stage(series, ts, value)
                if seq_rows:
                    self._db.executemany(
                        "INSERT INTO device_seq(device_id, max_seq, bits, last_ts, fps) "
                        "VALUES (?, ?, ?, ?, ?) ON CONFLICT(device_id) DO UPDATE SET "
                        "max_seq=excluded.max_seq, bits=excluded.bits, last_ts=excluded.last_ts, "
                        "fps=excluded.fps",
                        seq_rows,
                    )
                if journal:
                    self._db.executemany(
                        "INSERT INTO journal(kind, body, created) VALUES (?, ?, ?)",
                        [(kind, body, now) for kind, body in journal],
                    )
                if events:
                    self._db.executemany(
                        "INSERT INTO device_events(device_id, ts, received, event, code, channel, frame) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        events,
                    )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def compact(self) -> CompactionResult:
        """Move staged batches into per-series chunks and merge full levels, in one transaction.

        Blocking (call in a thread); holds the writer lock for its duration, which is bounded by
        COMPACT_SAMPLES and the merge budget. Call until it returns zero samples to empty the
        staging table."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                last = db.execute(  # the staged batches that make up about COMPACT_SAMPLES
                    "SELECT COALESCE(MIN(id), (SELECT MAX(id) FROM staged)) FROM "
                    "(SELECT id, SUM(n) OVER (ORDER BY id) AS upto FROM staged) WHERE upto >= ?",
                    (COMPACT_SAMPLES,),
                ).fetchone()[0]
                rows = db.execute(
                    "SELECT id, series, ts, value FROM staged WHERE id <= ? ORDER BY id", (last,)
                ).fetchall()
                if not rows:
                    db.execute("COMMIT")
                    return CompactionResult(0, 0, 0)
                series = _series_ids([r[1] for r in rows])
                ts = _floats([r[2] for r in rows])
                value = _floats([r[3] for r in rows])
                order = np.lexsort((ts, series))  # by series, then time; stable for equal stamps
                series, ts, value = series[order], ts[order], value[order]
                starts = np.flatnonzero(np.r_[True, series[1:] != series[:-1]])
                bounds: list[int] = np.r_[starts, series.size].tolist()
                new = [
                    (
                        int(series[a]),
                        1,
                        float(ts[a]),
                        float(ts[b - 1]),
                        b - a,
                        ts[a:b].tobytes(),
                        value[a:b].tobytes(),
                    )
                    for a, b in itertools.pairwise(bounds)
                ]
                db.executemany("INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?)", new)
                levels = dict(self._levels)
                for row in new:
                    levels[(row[0], 1)] = levels.get((row[0], 1), 0) + 1
                merges = self._merge_full(db, levels, max(MERGE_MIN_SAMPLES, MERGE_FACTOR * int(series.size)))
                db.execute("DELETE FROM staged WHERE id <= ?", (rows[-1][0],))
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            self._levels.clear()
            self._levels.update(levels)
            return CompactionResult(int(series.size), len(new) + merges, merges)

    @staticmethod
    def _merge_full(db: sqlite3.Connection, levels: dict[tuple[int, int], int], budget: int) -> int:
        """Merge FANOUT chunks of one series and level into one of the next level, lowest levels
        first, until about `budget` samples were merged (the rest wait for the next compaction)."""
        due = [key for key, n in levels.items() if n >= FANOUT and key[1] < TOP_LEVEL]
        due.sort(key=lambda key: key[1])  # lower levels first: a merge can fill the next level
        merges = 0
        while due and budget > 0:
            sid, level = due.pop(0)
            rows = db.execute(
                "SELECT rowid, ts, value FROM chunks WHERE series=? AND level=?", (sid, level)
            ).fetchall()
            ts = _floats([r[1] for r in rows])
            value = _floats([r[2] for r in rows])
            order = np.argsort(ts, kind="stable")
            ts, value = ts[order], value[order]
            db.execute(
                "INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?)",
                (sid, level + 1, float(ts[0]), float(ts[-1]), int(ts.size), ts.tobytes(), value.tobytes()),
            )
            budget -= int(ts.size) + MERGE_OVERHEAD
            db.executemany("DELETE FROM chunks WHERE rowid=?", [(r[0],) for r in rows])
            levels[(sid, level)] = 0
            up = (sid, level + 1)
            levels[up] = levels.get(up, 0) + 1
            if levels[up] == FANOUT and level + 1 < TOP_LEVEL:
                due.append(up)
            merges += 1
        return merges

    def prune(self, before: float) -> int:
        """Drop chunks whose samples are all older than `before` (retention); returns samples dropped.
        Staged samples are kept until compacted, so retention can lag by one compaction."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                (dropped,) = self._db.execute(
                    "SELECT COALESCE(SUM(n), 0) FROM chunks WHERE t1 < ?", (before,)
                ).fetchone()
                self._db.execute("DELETE FROM chunks WHERE t1 < ?", (before,))
                self._count_levels()
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return int(dropped)

    # --- reading -----------------------------------------------------------------------------------
    def seq_state(self) -> list[SeqRow]:
        with self._lock:
            rows = self._db.execute(
                "SELECT device_id, max_seq, bits, last_ts, fps FROM device_seq"
            ).fetchall()
        return [(d, m, _to_unsigned(b), t, f) for d, m, b, t, f in rows]

    # --- the journal: what the state store is still to record --------------------------------------
    def journal(self, limit: int = 100) -> list[JournalEntry]:
        """The oldest entries not yet recorded in the state store, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, kind, body, created FROM journal ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
        return [JournalEntry(i, k, bytes(b), c) for i, k, b, c in rows]

    def journal_done(self, ids: list[int]) -> None:
        """Forget entries the state store has recorded."""
        if not ids:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("DELETE FROM journal WHERE id=?", [(i,) for i in ids])
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def journal_kinds(self) -> dict[str, int]:
        """Entries waiting, by kind."""
        with self._lock:
            return dict(self._db.execute("SELECT kind, COUNT(*) FROM journal GROUP BY kind").fetchall())

    def journal_size(self) -> tuple[int, float | None]:
        """(entries waiting, creation time of the oldest)."""
        with self._lock:
            n, oldest = self._db.execute("SELECT COUNT(*), MIN(created) FROM journal").fetchone()
        return int(n), oldest

    def device_events(self, device_id: str, start: float, end: float, limit: int = 1000) -> list[EventRecord]:
        """A device's own events in [start, end), newest first, at most `limit` (its own reader
        connection, beside the writer)."""
        db = sqlite3.connect(self.path, isolation_level=None)
        try:
            rows = db.execute(
                "SELECT device_id, ts, received, event, code, channel, frame FROM device_events "
                "WHERE device_id=? AND ts>=? AND ts<? ORDER BY ts DESC, id DESC LIMIT ?",
                (device_id, start, end, limit),
            ).fetchall()
        finally:
            db.close()
        return [tuple(r) for r in rows]

    def events_of(
        self, device_ids: Sequence[str], start: float, end: float, events: Collection[str], limit: int = 1000
    ) -> list[EventRecord]:
        """The events of kinds `events` of several devices in [start, end), oldest first, at most
        `limit` (by the (device, time) index, 500 devices a query)."""
        out: list[EventRecord] = []
        kinds = list(events)
        db = sqlite3.connect(self.path, isolation_level=None)
        try:
            for i in range(0, len(device_ids), 500):
                ids = list(device_ids[i : i + 500])
                rows = db.execute(
                    "SELECT device_id, ts, received, event, code, channel, frame FROM device_events "
                    f"WHERE device_id IN ({','.join('?' * len(ids))}) AND ts>=? AND ts<? "
                    f"AND event IN ({','.join('?' * len(kinds))}) ORDER BY ts, received LIMIT ?",
                    (*ids, start, end, *kinds, limit),
                ).fetchall()
                out += [tuple(r) for r in rows]
        finally:
            db.close()
        return sorted(out, key=lambda r: (r[1], r[2]))[:limit]  # by time, then by receipt

    def history(
        self, device_id: str, channel: str, start: float, end: float, *, buckets: int | None = None
    ) -> History:
        """Samples of one series in [start, end), by time; with `buckets`, min/max/mean per equal
        time bucket (non-empty buckets only)."""
        # Readers get their own connection: WAL lets them run beside the writer. One read transaction
        # over both tables, so a compaction committing in between cannot hide or double a sample.
        db = sqlite3.connect(self.path, isolation_level=None)
        try:
            # By the series table's unique index: no map of every series is kept in memory.
            found = db.execute(
                "SELECT id FROM series WHERE device_id=? AND channel=?", (device_id, channel)
            ).fetchone()
            if found is None:
                return History(np.zeros(0), np.zeros(0))
            (sid,) = found
            db.execute("BEGIN")
            chunks = db.execute(
                "SELECT ts, value FROM chunks WHERE series=? AND t1>=? AND t0<?", (sid, start, end)
            ).fetchall()
            staged = db.execute("SELECT series, ts, value FROM staged").fetchall()
            db.execute("COMMIT")
        finally:
            db.close()
        ts = _floats([r[0] for r in chunks])
        value = _floats([r[1] for r in chunks])
        if staged:
            mine = _series_ids([r[0] for r in staged]) == sid
            ts = np.concatenate([ts, _floats([r[1] for r in staged])[mine]])
            value = np.concatenate([value, _floats([r[2] for r in staged])[mine]])
        keep = (ts >= start) & (ts < end)
        ts, value = ts[keep], value[keep]
        order = np.argsort(ts, kind="stable")
        ts, value = ts[order].astype(np.float64), value[order].astype(np.float64)
        if not buckets:
            return History(ts, value)
        return downsample(ts, value, start, end, buckets)

    def count(self) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT (SELECT COALESCE(SUM(n), 0) FROM chunks) + (SELECT COALESCE(SUM(n), 0) FROM staged)"
            ).fetchone()
        return int(row[0])

    def staged_batches(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM staged").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
