"""What mosquitto's database writes cost, and what a kill -9 loses: autosave_interval 60 (seconds)
against autosave_on_changes with autosave_interval 1 (after every pass that changed anything).

    python3 -m bench.broker_autosave --messages 20000 --publishers 20 --service stopped

A private mosquitto on a free loopback port (anonymous, unlike the deploy config, whose sign-in
rules do not change what is measured here), persistence on, the deploy config's queue settings. A
persistent session (the service's way: clean start off, session expiry) subscribes to the readings.
`--service stopped`: it disconnects first, so everything is queued for it; the publishers then send
N QoS 1 readings of ~190 bytes, each connection keeping up to 100 unacknowledged; the broker is
killed (SIGKILL) as soon as the last PUBACK is in, restarted on the same data, and the session
counts what it gets back. `--service connected`: it stays connected and acknowledges on receipt.
Prints, per setting: publish rate (first publish to last PUBACK), database writes, and (stopped)
the readings received after the kill. For numbers only: the test of the deploy config itself is
tests/test_mosquitto_acl.py::test_a_broker_crash_keeps_the_services_queue.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from firewatch.broker import free_port, mosquitto_binary, wait_for_port

SETTINGS = {
    "interval-60": "autosave_interval 60",
    "on-changes-1": "autosave_on_changes true\nautosave_interval 1",
}


def start(binary: str, conf: Path, port: int) -> subprocess.Popen[bytes]:
    with (conf.parent / "mosquitto.log").open("ab") as log:
        proc = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=log)
    wait_for_port("127.0.0.1", port)
    return proc


def session(port: int, received: list[bytes], ready: threading.Event) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-service", protocol=mqtt.MQTTv5)
    c.on_message = lambda _c, _u, msg: received.append(bytes(msg.payload))
    c.on_connect = lambda _c, _u, _f, _rc, _p: ready.set()
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    c.connect("127.0.0.1", port, clean_start=False, properties=props)
    c.loop_start()
    if not ready.wait(10):
        raise RuntimeError("the session did not connect")
    return c


def publish(port: int, count: int, publishers: int) -> float:
    """Seconds from the first publish to the last PUBACK."""
    cond = threading.Condition()
    acked = [0]

    def on_publish(_c: mqtt.Client, _u: object, _mid: int, _rc: object, _p: object) -> None:
        with cond:
            acked[0] += 1
            cond.notify_all()

    made = []
    for k in range(publishers):
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-dev-{k}", protocol=mqtt.MQTTv5)
        c.max_inflight_messages_set(100)
        c.max_queued_messages_set(0)
        c.on_publish = on_publish
        c.connect("127.0.0.1", port)
        c.loop_start()
        made.append(c)
    started = time.monotonic()
    for n in range(count):
        payload = f'{{"device":"dev-{n % publishers}","seq":{n},"v":"{"x" * 140}"}}'.encode()
        made[n % publishers].publish(f"fw/v1/s/dev-{n % publishers}/telemetry", payload, qos=1)
    with cond:
        if not cond.wait_for(lambda: acked[0] >= count, 900):
            raise RuntimeError(f"only {acked[0]} of {count} acknowledged")
    took = time.monotonic() - started
    for c in made:
        c.loop_stop()
    return took


def run(setting: str, count: int, publishers: int, stopped: bool) -> str:
    binary = mosquitto_binary()
    if binary is None:
        raise SystemExit("mosquitto is not installed")
    folder = Path(tempfile.mkdtemp(prefix="fw-bench-autosave-"))
    try:
        port = free_port()
        conf = folder / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {folder}/\nmax_queued_messages 1000000\nmax_queued_bytes 0\n"
            f"max_inflight_messages 0\nlog_dest stderr\nlog_type information\n{SETTINGS[setting]}\n"
            + ("user root\n" if os.geteuid() == 0 else ""),
            encoding="utf-8",
        )
        proc = start(binary, conf, port)
        received: list[bytes] = []
        service = session(port, received, threading.Event())
        service.subscribe("fw/v1/#", qos=1)
        time.sleep(0.3)
        if stopped:
            service.disconnect()
            service.loop_stop()
        took = publish(port, count, publishers)
        proc.kill()
        proc.wait()
        writes = (folder / "mosquitto.log").read_text(encoding="utf-8").count("Saving in-memory database")
        line = f"{setting:13} {count / took:8.0f} readings/s  {writes:6} writes"
        if not stopped:
            service.loop_stop()
            return line
        proc = start(binary, conf, port)
        received.clear()
        service = session(port, received, threading.Event())
        last = -1
        for _ in range(120):  # until nothing more arrives for 0.5 s, at most a minute
            time.sleep(0.5)
            if len(received) == last:
                break
            last = len(received)
        service.disconnect()
        service.loop_stop()
        proc.terminate()
        proc.wait(10)
        return f"{line}  after kill -9: {len(set(received))} of {count} received"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--publishers", type=int, default=20)
    parser.add_argument("--service", choices=["stopped", "connected"], default="stopped")
    args = parser.parse_args()
    print(f"{args.messages} QoS 1 readings from {args.publishers} connections, service {args.service}")
    for setting in SETTINGS:
        print(run(setting, args.messages, args.publishers, args.service == "stopped"), flush=True)


if __name__ == "__main__":
    main()
