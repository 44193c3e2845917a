"""Prometheus metrics of one service instance (own registry: tests can run several side by side)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


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
        self.handoff_waits = Counter(
            "fw_telemetry_handoff_waits",
            "times detection waited because too many messages were waiting for the telemetry writer",
            registry=r,
        )
