"""Prometheus metrics of one service instance (own registry: tests can run several side by side)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

if TYPE_CHECKING:
    from storage.influx import SinkStatus
    from storage.pg_telemetry import SpoolStatus


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages = Counter("fw_ingest_messages", "MQTT messages taken off the queue", registry=r)
        self.readings = Counter("fw_ingest_readings", "telemetry messages accepted", registry=r)
        self.samples = Counter("fw_ingest_samples", "channel values accepted", registry=r)
        self.rejects = Counter("fw_ingest_rejects", "messages rejected, by reason", ["reason"], registry=r)
        self.duplicates = Counter(
            "fw_ingest_duplicates", "redelivered messages dropped by (device, seq)", registry=r
        )
        self.queue_dropped = Gauge(
            "fw_ingest_queue_dropped", "QoS 0 messages dropped by the full receive queue", registry=r
        )
        self.queue_overflow = Gauge(
            "fw_ingest_queue_overflow",
            "QoS 1 messages kept beyond the queue bound (a broker not honouring Receive Maximum)",
            registry=r,
        )
        self.queue_depth = Gauge("fw_ingest_queue_depth", "messages waiting in the receive queue", registry=r)
        self.batch_seconds = Histogram(
            "fw_ingest_batch_seconds",
            "decode + detect + alarm time per batch",
            registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )
        # Batch sizes tell whether per-batch fixed costs dominate (small live batches) or not (a
        # drained backlog's batches of `ingest.batch_max`).
        self.batch_messages = Histogram(
            "fw_ingest_batch_messages",
            "messages per batch taken off the queue",
            registry=r,
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 3500, 5000),
        )
        self.alarm_write_seconds = Histogram(
            "fw_alarm_write_seconds",
            "a batch's alarm write in the state store, its commit included, as the batch waits for it",
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5),
        )
        self.alarm_latency = Histogram(
            "fw_alarm_latency_seconds",
            "message receipt -> alarm transition persisted",
            registry=r,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, 10.0),
        )
        self.transitions = Counter(
            "fw_alarm_transitions", "alarm transitions", ["action", "category"], registry=r
        )
        self.tickets_opened = Counter("fw_tickets_opened", "hazard tickets opened automatically", registry=r)
        self.active_alarms = Gauge(
            "fw_alarms_active", "active alarms by category", ["category", "system"], registry=r
        )
        self.mqtt_connected = Gauge("fw_mqtt_connected", "1 while connected to the broker", registry=r)
        self.mqtt_rebuilds = Gauge(
            "fw_mqtt_client_rebuilds",
            "MQTT clients replaced because their reconnect loop stopped (ingest/mqtt.py watchdog)",
            registry=r,
        )
        self.telemetry_lag = Gauge(
            "fw_telemetry_pending_messages",
            "messages detected and waiting for the telemetry writer",
            registry=r,
        )
        # Fault safety (docs/reliability.md).
        self.storage_failing = Gauge(
            "fw_state_store_failing",
            "1 while the state store cannot record alarms (they are journaled)",
            registry=r,
        )
        self.journal_pending = Gauge(
            "fw_journal_pending",
            "journal entries (alarm events, rejects) not yet in the state store",
            registry=r,
        )
        self.unrecorded_alarms = Gauge(
            "fw_unrecorded_alarms", "alarms shown live that the state store has not recorded yet", registry=r
        )
        # Clustered: readings waiting in the local spool while PostgreSQL is away (storage/pg_spool.py).
        self.pg_spool_batches = Gauge(
            "fw_pg_spool_batches",
            "clustered: batches of readings waiting in the local spool for PostgreSQL",
            registry=r,
        )
        self.pg_spool_oldest = Gauge(
            "fw_pg_spool_oldest_seconds",
            "clustered: how long the oldest spooled batch has waited for PostgreSQL (0 when none)",
            registry=r,
        )
        self.pg_spool_refused = Gauge(
            "fw_pg_spool_refused",
            "clustered: spooled batches PostgreSQL refused for their data, kept apart in the spool",
            registry=r,
        )
        self.isolated = Counter(
            "fw_ingest_isolated",
            "messages that failed their batch and were rejected on their own",
            registry=r,
        )
        self.unacked_age = Gauge(
            "fw_ingest_oldest_unacked_seconds",
            "age of the oldest received message not yet acknowledged",
            registry=r,
        )
        self.ingest_stalled = Gauge(
            "fw_ingest_stalled",
            "1 while messages wait but no batch has been acknowledged for a while",
            registry=r,
        )
        self.fault_conditions = Gauge(
            "fw_fault_condition",
            "1 while a readiness condition holds (docs/reliability.md)",
            ["condition"],
            registry=r,
        )
        self.handoff_waits = Counter(
            "fw_telemetry_handoff_waits",
            "times detection waited because too many messages were waiting for the telemetry writer",
            registry=r,
        )
        # The InfluxDB sink (storage/influx.py): copies of the worker's cumulative counters, set
        # when scraped (and every second by the sink's clock), so they are gauges like queue_dropped.
        self.influx_offered = Gauge(
            "fw_influx_points_offered", "points handed to the InfluxDB sink", registry=r
        )
        self.influx_written = Gauge("fw_influx_points_written", "points InfluxDB accepted", registry=r)
        self.influx_dropped = Gauge(
            "fw_influx_points_dropped",
            "points the InfluxDB sink gave up on, by reason (handoff: the hand-off was full; buffer: "
            "the oldest beyond influx.buffer_points; rejected: refused as malformed; invalid: could "
            "not be encoded; stopped: still buffered at stop; worker_exit: lost with a dead worker)",
            ["reason"],
            registry=r,
        )
        self.influx_buffered = Gauge(
            "fw_influx_points_buffered", "points waiting to be written to InfluxDB", registry=r
        )
        self.influx_failures = Gauge(
            "fw_influx_write_failures", "write requests to InfluxDB that failed", registry=r
        )
        self.influx_failing = Gauge(
            "fw_influx_failing_seconds",
            "how long writes to InfluxDB have been failing (0 while they succeed)",
            registry=r,
        )
        self.influx_restarts = Gauge(
            "fw_influx_worker_restarts", "times the InfluxDB sink's worker process was restarted", registry=r
        )
        # Gauges set from the forwarder's own counts (it has no access to this registry).
        self.gb_forwarded = Gauge(
            "fw_gb26875_forwarded", "clustered: GB/T 26875.3 messages stored in the engine", registry=r
        )
        self.gb_forward_failures = Gauge(
            "fw_gb26875_forward_failures",
            "clustered: publishes of GB/T 26875.3 messages to the engine that failed (each retried)",
            registry=r,
        )
        self.gb_forward_refused = Gauge(
            "fw_gb26875_forward_refused",
            "clustered: GB/T 26875.3 messages refused, the forwarding backlog full (left unconfirmed)",
            registry=r,
        )
        self.gb_forward_backlog = Gauge(
            "fw_gb26875_forward_backlog",
            "clustered: GB/T 26875.3 messages waiting to be stored in the engine (unconfirmed)",
            registry=r,
        )
        self.roster_gaps = Counter(
            "fw_push_roster_gaps",
            "pushes of a roster route that found nobody on duty in a role (sent to the route's url, "
            "or kept owed without one)",
            ["route", "role"],
            registry=r,
        )

    def observe_gb_forward(self, forwarded: int, failures: int, refused: int, backlog: int) -> None:
        """Clustered, GB/T 26875.3 uploads forwarded to the engine (firewatch/cluster/forward.py)."""
        self.gb_forwarded.set(forwarded)
        self.gb_forward_failures.set(failures)
        self.gb_forward_refused.set(refused)
        self.gb_forward_backlog.set(backlog)

    def observe_pg_spool(self, status: SpoolStatus) -> None:
        """Clustered, the readings' spool for PostgreSQL outages (storage/pg_spool.py)."""
        self.pg_spool_batches.set(status.pending)
        self.pg_spool_oldest.set(status.oldest_age_s)
        self.pg_spool_refused.set(status.refused)

    def roster_gap(self, route: str, role: str) -> None:
        """A roster route's push found nobody on duty in `role` (firewatch/roster_channel.py)."""
        self.roster_gaps.labels(route, role).inc()

    def observe_influx(self, status: SinkStatus, now: float) -> None:
        self.influx_offered.set(status.offered)
        self.influx_written.set(status.written)
        for reason, n in status.dropped.items():
            self.influx_dropped.labels(reason).set(n)
        self.influx_buffered.set(status.buffered)
        self.influx_failures.set(status.failures)
        since = status.failing_since
        self.influx_failing.set(0.0 if since is None else max(0.0, now - since))
        self.influx_restarts.set(status.restarts)
