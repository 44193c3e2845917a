"""firewatch's side of `bench.peer_drain`, run in a process of its own (`--role firewatch`) so its
CPU time and memory can be measured like the other consumers'.

The whole service as `bench.ingest` runs it: private broker, SQLite state store in a fresh data
dir, a registry of the bench's devices, every message acknowledged only once its batch is stored.
Its persistent session already exists (the parent made it) with the backlog queued. The drain
counts from the receipt of the first reading to the acknowledgement of the last one.
"""

from __future__ import annotations

import asyncio
import json
import time
import traceback
from collections.abc import Iterable
from operator import attrgetter, methodcaller
from pathlib import Path

from bench.ingest import registry
from core.settings import Settings
from device_profiles.loader import load_profiles
from firewatch.service import Service, freeze_start_up_heap
from ingest.envelope import Message
from ingest.topics import MessageKind

STALL_S = 30.0
SETTLE_S = 300.0  # longest wait, after the drain, for journaled alarms to reach the state store
TELEMETRY = "/" + MessageKind.TELEMETRY.value
_topic = attrgetter("topic")
_is_telemetry = methodcaller("endswith", TELEMETRY)


async def drain(port: int, client_id: str, devices: int, total: int, data: Path) -> dict[str, object]:
    # The environment's FIREWATCH_* settings apply (to try a setting in the drain, say
    # FIREWATCH_MQTT__RECEIVE_MAXIMUM), under the bench's own broker, data dir and liveness tick.
    base = Settings()
    settings = base.model_copy(
        update={
            "data_dir": data,
            "mqtt": base.mqtt.model_copy(update={"url": f"mqtt://127.0.0.1:{port}", "client_id": client_id}),
            "ingest": base.ingest.model_copy(update={"liveness_check_s": 5}),
        }
    )
    service = Service(settings, registry=registry(devices), profiles=load_profiles())
    freeze_start_up_heap()  # as `firewatch serve` does
    first: float | None = None
    last = 0.0
    acked = 0
    ack = service.source.ack

    def counting_ack(messages: Iterable[Message]) -> int:
        """The pipeline's acknowledgement, counting the readings it acknowledges (firewatch also
        receives its own alarm messages back on fw/v1/#; those are not part of the backlog)."""
        nonlocal first, last, acked
        batch = list(messages)
        sent = ack(batch)
        if sent:
            if first is None:
                first = min(m.received for m in batch)
            # Counted in C (map over the topics), not a generator per message: at 80,000 msg/s
            # the generator was about 2 % of the process's time with the GIL.
            acked += sum(map(_is_telemetry, map(_topic, batch)))
            last = time.time()
        return sent

    service.source.ack = counting_ack  # type: ignore[method-assign]  # before start(), which binds it
    await service.start()
    p = service.pipeline
    seen, seen_at = -1, time.monotonic()
    try:
        while acked < total:
            if acked != seen:
                seen, seen_at = acked, time.monotonic()
            elif time.monotonic() - seen_at > STALL_S:
                raise RuntimeError(
                    f"no progress for {STALL_S:.0f} s: acknowledged {acked}, accepted {p.accepted}, "
                    f"rejected {p.rejected}, stored samples {p.stored_samples}, "
                    f"received {service.queue.received}, dropped {service.queue.dropped}"
                )
            await asyncio.sleep(0.005)
        drained = {"transitions": p.transitions, "unrecorded": len(p.unrecorded)}
        # Alarms the state store could not take in time went to the local journal (durable, so their
        # readings could be acknowledged); the drain is over, but not the alarms' way to the store.
        settled = None
        deadline = time.monotonic() + SETTLE_S
        while time.monotonic() < deadline:
            if not len(p.unrecorded) and not p.telemetry.journal_size()[0]:
                settled = time.time()
                break
            await asyncio.sleep(0.05)
    finally:
        await service.stop()
    return {
        "first": first,
        "last": last,
        "acked": acked,
        "accepted": p.accepted,
        "rejected": p.rejected,
        "duplicates": p.duplicates,
        "stored_samples": p.stored_samples,
        # At the last acknowledgement: alarm transitions recorded in the state store, and alarms it
        # did not record within alarm_write_timeout_s (shown as unrecorded, kept in the journal).
        "transitions_at_drain": drained["transitions"],
        "unrecorded_at_drain": drained["unrecorded"],
        # When the journal recorder had recorded them all (None: not within SETTLE_S).
        "alarms_settled_s": None if settled is None or first is None else settled - first,
        "transitions": p.transitions,
    }


def main(port: int, client_id: str, devices: int, messages: int, data: Path, report: Path) -> int:
    try:
        result = asyncio.run(drain(port, client_id, devices, messages, data))
    except Exception:
        report.write_text(json.dumps({"error": traceback.format_exc()}), encoding="utf-8")
        return 1
    report.write_text(json.dumps(result), encoding="utf-8")
    return 0
