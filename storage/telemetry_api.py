"""What the service asks of a telemetry store, whichever keeps the readings: the local SQLite file
(storage/telemetry.TelemetryStore, a single node) or PostgreSQL beside that file (storage/
pg_telemetry.ClusterTelemetry, when clustered). The pipeline, the recorder, the API and the tickets
name this Protocol, so either can be handed to them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from storage.telemetry import CompactionResult, EventRecord, History, JournalEntry, SeqRow


class Telemetry(Protocol):
    @property
    def journal_id(self) -> str: ...

    def bind(self, slots: Iterable[tuple[str, str]]) -> None: ...

    def bind_devices(self, device_ids: Sequence[str], channels: Sequence[Collection[str]]) -> None: ...

    def write(
        self,
        slot: npt.NDArray[np.int32],
        ts: npt.NDArray[np.float64],
        value: npt.NDArray[np.float64],
        seq_state: list[tuple[str, int, int, float, bytes]],
        journal: list[tuple[str, bytes]] | None = None,
        now: float = 0.0,
        events: list[EventRecord] | None = None,
    ) -> None: ...

    def compact(self) -> CompactionResult: ...

    def prune(self, before: float) -> int: ...

    def seq_state(self) -> list[SeqRow]: ...

    def journal(self, limit: int = 100) -> list[JournalEntry]: ...

    def journal_done(self, ids: list[int]) -> None: ...

    def journal_kinds(self) -> dict[str, int]: ...

    def journal_size(self) -> tuple[int, float | None]: ...

    def device_events(
        self, device_id: str, start: float, end: float, limit: int = 1000
    ) -> list[EventRecord]: ...

    def events_of(
        self, device_ids: Sequence[str], start: float, end: float, events: Collection[str], limit: int = 1000
    ) -> list[EventRecord]: ...

    def history(
        self, device_id: str, channel: str, start: float, end: float, *, buckets: int | None = None
    ) -> History: ...

    def count(self) -> int: ...

    def staged_batches(self) -> int: ...

    def close(self) -> None: ...
