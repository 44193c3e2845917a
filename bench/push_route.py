"""The MQTT alarm-topic push route's own cost: CPU and wall time per push of the dispatcher's rounds
(read the due rows, send them, record the attempts), with a real private mosquitto and SQLite.

    python3 -m bench.push_route --devices 500 --batches 1 10 100
    python3 -m bench.push_route --publisher    # the publisher alone: ms per batch of 1, 10, 50

The outbox is filled the way the service fills it: `bench.alarm_burst`'s crossings applied through
`AlarmService` with the service's alarm-topic route (`ALARM_TOPIC_ROUTE`: every transition and every
incident step), so payloads have their real shape and size. Then the rows are delivered by
`firewatch.dispatch.Dispatcher` over `MqttAlarmChannel` to a fresh private mosquitto (nobody
subscribed), one round after another: before each (untimed), `--batches` rows are made due, as a
commit owing that many would (the rest are held back, marked delivered until then). The drain's alarm
bursts owe tens of rows per round; the latency benchmark's single alarms one.

CPU is this process's (`time.process_time`, every thread: the dispatcher's, the route's worker,
and a network thread if the channel has one), which includes SQLite's work; mosquitto's is not
counted. One run per batch size on a fresh store.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path
from typing import cast

from rich.console import Console
from rich.table import Table
from sqlalchemy import Table as SqlTable
from sqlalchemy import select, update

from alarms.service import AlarmService
from alarms.tickets import TicketOpener
from bench.alarm_burst import T0, burst, registry
from core.settings import TicketPolicy
from device_profiles.loader import load_profiles
from firewatch.broker import Mosquitto
from firewatch.dispatch import Dispatcher
from firewatch.service import ALARM_TOPIC_ROUTE
from ingest.index import DeviceIndex
from storage.db import open_store
from storage.models import OutboxRow
from storage.registry_sync import sync_registry

console = Console()


def run(folder: Path, broker: Mosquitto, devices: int, batch: int) -> tuple[int, float, float, int]:
    """Pushes delivered, CPU s, wall s, rounds."""
    from firewatch.dispatch import MqttAlarmChannel

    reg = registry(devices)
    profiles = load_profiles()
    _, sessions = open_store(f"sqlite:///{folder / f'state-{batch}.sqlite'}")
    sync_registry(sessions, reg, profiles)
    index = DeviceIndex.build(reg, profiles)
    now = [T0]
    alarms = AlarmService(
        sessions, index, TicketOpener(index, TicketPolicy()), lambda: now[0], [ALARM_TOPIC_ROUTE]
    )
    events = burst(devices, 1)
    for i in range(0, len(events), 500):
        now[0] = events[i : i + 500][-1].ts
        alarms.apply(events[i : i + 500])
    channel = MqttAlarmChannel(
        broker.host, broker.port, prefix="fw/v1", client_id=f"bench-alarms-{batch}", timeout_s=10.0
    )
    dispatcher = Dispatcher(
        sessions, {ALARM_TOPIC_ROUTE.name: channel}, clock=lambda: now[0] + 1, batch=batch
    )
    channel.deliver({"transition": {"after": {"site": "warm-up"}}})  # connected before the clock starts
    # Every row held back (marked delivered), then `batch` of them made due before each round
    # (untimed), as a commit owing that many would: the outbox holds them all, only those are due.
    outbox = cast(SqlTable, OutboxRow.__table__)
    with sessions.begin() as s:
        s.execute(update(outbox).values(delivered_ts=0.0))
        ids = list(s.scalars(select(OutboxRow.id).order_by(OutboxRow.id)))
    delivered = rounds = 0
    cpu = wall = 0.0
    for i in range(0, len(ids), batch):
        with sessions.begin() as s:
            s.execute(update(outbox).where(outbox.c.id.in_(ids[i : i + batch])).values(delivered_ts=None))
        cpu0, wall0 = time.process_time(), time.perf_counter()
        delivered += dispatcher._round()
        cpu, wall = cpu + time.process_time() - cpu0, wall + time.perf_counter() - wall0
        rounds += 1
    assert dispatcher.pending() == 0, "rows left owed"
    dispatcher.close()
    sessions.kw["bind"].dispose()
    return delivered, cpu, wall, rounds


def publisher_alone(broker: Mosquitto) -> None:
    """`MqttPublisher.publish_many` alone: the mean wall time of 20 batches of 1, 10 and 50
    800-byte messages, on loopback."""
    from firewatch.mqtt_publish import MqttPublisher

    publisher = MqttPublisher(broker.host, broker.port, client_id="bench-publisher")
    message = ("fw/v1/bench/alarms", b"x" * 800)
    publisher.publish_many([message] * 10)  # connected before the clock starts
    for size in (1, 10, 50):
        started = time.perf_counter()
        for _ in range(20):
            done, reason = publisher.publish_many([message] * size)
            assert done == size, reason
        console.print(f"batch of {size}: {(time.perf_counter() - started) / 20 * 1000:.3f} ms")
    publisher.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=500, help="smoke detectors, one crossing each")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 10, 100], help="rows per round")
    ap.add_argument("--publisher", action="store_true", help="time the publisher alone, nothing else")
    args = ap.parse_args()
    if args.publisher:
        with (
            tempfile.TemporaryDirectory(prefix="fw-push-route-") as tmp,
            Mosquitto(data_dir=Path(tmp)) as broker,
        ):
            publisher_alone(broker)
        return
    table = Table(title="MQTT alarm-topic route: per push, read + send + record")
    for col in ("rows per round", "pushes", "rounds", "CPU µs/push", "wall µs/push"):
        table.add_column(col, justify="right")
    with (
        tempfile.TemporaryDirectory(prefix="fw-push-route-") as tmp,
        Mosquitto(data_dir=Path(tmp) / "mqtt") as broker,
    ):
        for batch in args.batches:
            delivered, cpu, wall, rounds = run(Path(tmp), broker, args.devices, batch)
            table.add_row(
                str(batch),
                f"{delivered:,}",
                f"{rounds:,}",
                f"{cpu / delivered * 1e6:,.0f}",
                f"{wall / delivered * 1e6:,.0f}",
            )
    console.print(table)
    console.print(
        f"machine: {platform.processor() or platform.machine()}, CPython {platform.python_version()}"
    )


if __name__ == "__main__":
    main()
