"""Draining a QoS 1 backlog: firewatch beside a Node-RED 4.1 flow and the raw C client.

    python -m bench.peer_drain [--messages 200000] [--devices 1000] [--rounds 3] [--json PATH]

Three consumers drain the same backlog of smoke-detector readings (firewatch's envelope, on its
topics, in time order) from one private mosquitto, each through a persistent session made for it
just before its backlog is published:
- firewatch: the whole service in a process of its own (decode, de-duplicate, detect, store to
  SQLite, acknowledge each batch only once it is stored), as `bench.ingest` runs it;
- node-red: a Node-RED 4.1 flow, mqtt in (QoS 1) -> json -> threshold with hysteresis -> mqtt out
  on an alarm topic, installed from npm into ~/.cache/firewatch-bench/node-red on first use;
- raw: `mosquitto_sub -c -q 1 -C N` writing to /dev/null, which acknowledges on receipt and does
  nothing else.
Each round runs all three on both datasets ("crossings": every device crosses the fire level three
times, whatever its number of readings, so a smaller backlog per device has denser alarms;
"quiet": no value near it), the consumers' order rotated from round to round. Reported per
run: msg/s from first to last message (raw: from process start to exit, since printing a timestamp
per message with `-F %U` cost it a fifth to a third of its rate here), CPU time per message of the
whole process and its children (start-up included) and of the drain window alone, and peak RSS;
and per round the ratios firewatch/raw and firewatch/Node-RED. firewatch also reports how many
alarm transitions it recorded and when the last alarm reached its state store.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from bench import node_red
from bench.peer_backlog import DATASETS, FIRE_AT, FIRE_CLEAR, make_backlog, publish
from bench.proc_usage import Usage, run_measured
from firewatch.broker import Mosquitto, free_port

CONSUMERS = ("firewatch", "raw", "node-red")
RUN_TIMEOUT_S = 600.0
console = Console(stderr=True)  # progress and status
out = Console(width=None if sys.stdout.isatty() else 132)  # the results: wide enough when redirected


@dataclass
class Run:
    consumer: str
    dataset: str
    round: int
    messages: int
    seconds: float  # first to last message
    cpu_s: float  # whole process and its children
    drain_cpu_s: float  # the process tree between the first and the last message
    peak_rss_mib: float
    details: dict[str, object] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    @property
    def cpu_us(self) -> float:
        return self.cpu_s / self.messages * 1e6

    @property
    def drain_cpu_us(self) -> float:
        return self.drain_cpu_s / self.messages * 1e6


# --- sessions -----------------------------------------------------------------------------------
def _sub(broker: Mosquitto, *args: str) -> None:
    base = ["mosquitto_sub", "-h", broker.host, "-p", str(broker.port)]
    subprocess.run([*base, *args], check=True, timeout=30, capture_output=True)


def make_session(broker: Mosquitto, client_id: str, topic: str, mqtt5: bool) -> None:
    """A persistent QoS 1 session subscribed to `topic`, left disconnected: the backlog queues in it."""
    version = ["-V", "5", "-x", "3600"] if mqtt5 else []
    _sub(broker, *version, "-c", "-q", "1", "-i", client_id, "-t", topic, "-E")


def drop_session(broker: Mosquitto, client_id: str, mqtt5: bool) -> None:
    """Connect with a clean start, which discards the session: nothing more queues for it."""
    _sub(broker, *(["-V", "5"] if mqtt5 else []), "-i", client_id, "-t", "fw/v1/none", "-E")


# --- the three consumers ------------------------------------------------------------------------
def _check(usage: Usage, what: str, log: Path | None = None) -> None:
    if usage.returncode not in (0, -15):  # -15: Node-RED, stopped by us once done
        tail = log.read_text(errors="replace")[-2000:] if log is not None and log.exists() else ""
        raise RuntimeError(f"{what} exited with {usage.returncode}\n{tail}")


def drain_raw(broker: Mosquitto, n: int, fill: Callable[[], None]) -> Run:
    client_id = f"peer-raw-{uuid.uuid4().hex[:6]}"
    topic = "fw/v1/#"
    make_session(broker, client_id, topic, mqtt5=False)
    fill()  # the backlog queues in the session, before the consumer connects
    cmd = ["mosquitto_sub", "-c", "-q", "1", "-i", client_id, "-t", topic, "-C", str(n)]
    usage = run_measured([*cmd, "-h", broker.host, "-p", str(broker.port)], timeout=RUN_TIMEOUT_S)
    _check(usage, "mosquitto_sub")
    drop_session(broker, client_id, mqtt5=False)
    seconds = usage.ended - usage.started
    return Run("raw", "", 0, n, seconds, usage.cpu_s, usage.cpu_s, usage.peak_rss_mib)


def drain_firewatch(broker: Mosquitto, n: int, fill: Callable[[], None], devices: int, tmp: Path) -> Run:
    client_id = f"peer-fw-{uuid.uuid4().hex[:6]}"
    make_session(broker, client_id, "fw/v1/#", mqtt5=True)  # what MqttSource subscribes, MQTT 5
    fill()  # the backlog queues in the session, before the consumer connects
    work = Path(tempfile.mkdtemp(prefix="fw-", dir=tmp))
    report, log = work / "report.json", work / "firewatch.log"
    cmd = [
        sys.executable, "-m", "bench.peer_drain", "--role", "firewatch",
        "--port", str(broker.port), "--client-id", client_id, "--devices", str(devices),
        "--messages", str(n), "--data", str(work / "data"), "--report", str(report),
    ]  # fmt: skip
    with log.open("wb") as out:
        usage = run_measured(cmd, timeout=RUN_TIMEOUT_S, stdout=out, stderr=out)
    result = json.loads(report.read_text()) if report.exists() else {"error": "no report"}
    if "error" in result:
        raise RuntimeError(f"firewatch role failed:\n{result['error']}\n{log.read_text()[-2000:]}")
    _check(usage, "firewatch", log)
    drop_session(broker, client_id, mqtt5=True)
    first, last = float(result.pop("first")), float(result.pop("last"))
    if result["acked"] != n or result["stored_samples"] != 2 * n:
        raise RuntimeError(f"firewatch did not store and acknowledge all {n}: {result}")
    shutil.rmtree(work / "data", ignore_errors=True)
    return Run(
        "firewatch", "", 0, n, last - first, usage.cpu_s, usage.cpu_between(first, last),
        usage.peak_rss_mib, result,
    )  # fmt: skip


def drain_node_red(broker: Mosquitto, n: int, fill: Callable[[], None], tmp: Path) -> Run:
    client_id = f"peer-nr-{uuid.uuid4().hex[:6]}"
    topic = "fw/v1/+/+/telemetry"  # not fw/v1/#: the flow publishes its alarms under fw/v1
    make_session(broker, client_id, topic, mqtt5=False)
    fill()  # the backlog queues in the session, before the consumer connects
    user_dir = Path(tempfile.mkdtemp(prefix="node-red-", dir=tmp))
    done = user_dir / "done.json"
    nodes = node_red.flow(
        host=broker.host, port=broker.port, client_id=client_id, topic=topic, total=n,
        at=FIRE_AT, clear=FIRE_CLEAR, done_file=done,
    )  # fmt: skip
    settings = node_red.write_user_dir(user_dir, free_port(), nodes)
    log = user_dir / "node-red.log"
    with log.open("wb") as out:
        usage = run_measured(
            node_red.command(user_dir, settings),
            timeout=RUN_TIMEOUT_S,
            done=lambda: done.exists() and done.stat().st_size > 0,
            stdout=out,
            stderr=out,
        )
    _check(usage, "node-red", log)
    if not done.exists():
        raise RuntimeError(f"node-red stopped before the end:\n{log.read_text()[-2000:]}")
    result = json.loads(done.read_text().splitlines()[0])
    drop_session(broker, client_id, mqtt5=False)
    first, last = float(result["first"]), float(result["last"])
    if result["count"] != n:
        raise RuntimeError(f"node-red counted {result['count']} of {n}")
    return Run(
        "node-red", "", 0, n, last - first, usage.cpu_s, usage.cpu_between(first, last), usage.peak_rss_mib
    )


# --- orchestration ------------------------------------------------------------------------------
def run_benchmark(
    *,
    messages: int,
    devices: int,
    rounds: int,
    consumers: Sequence[str] = CONSUMERS,
    datasets: Sequence[str] = DATASETS,
    progress: Progress | None = None,
) -> list[Run]:
    backlogs = {d: make_backlog(d, devices, messages).messages() for d in datasets}
    runs: list[Run] = []
    bar = progress.add_task("draining", total=rounds * len(datasets) * len(consumers)) if progress else None
    with tempfile.TemporaryDirectory(prefix="peer-drain-") as tmp_name:
        tmp = Path(tmp_name)
        with Mosquitto(data_dir=tmp / "mq", max_queued_messages=max(1_000_000, 2 * messages)) as broker:
            for r in range(rounds):
                order = [*consumers[r % len(consumers) :], *consumers[: r % len(consumers)]]
                for dataset in datasets:
                    for consumer in order:

                        def fill(dataset: str = dataset, consumer: str = consumer, r: int = r) -> None:
                            if progress is not None and bar is not None:
                                progress.update(bar, description=f"round {r + 1}, {dataset}: backlog")
                            publish(broker.host, broker.port, backlogs[dataset])
                            if progress is not None and bar is not None:
                                progress.update(bar, description=f"round {r + 1}, {dataset}: {consumer}")

                        if consumer == "raw":
                            run = drain_raw(broker, messages, fill)
                        elif consumer == "firewatch":
                            run = drain_firewatch(broker, messages, fill, devices, tmp)
                        else:
                            run = drain_node_red(broker, messages, fill, tmp)
                        run.dataset, run.round = dataset, r + 1
                        runs.append(run)
                        if progress is not None and bar is not None:
                            progress.advance(bar)
    return runs


def ratios(runs: list[Run], dataset: str, peer: str) -> list[float]:
    """firewatch's rate over `peer`'s, round by round."""
    by = {(x.consumer, x.round): x.rate for x in runs if x.dataset == dataset}
    rounds = sorted({x.round for x in runs})
    return [by["firewatch", r] / by[peer, r] for r in rounds if ("firewatch", r) in by and (peer, r) in by]


def _spread(values: list[float], fmt: str) -> str:
    med = statistics.median(values)
    return f"{med:{fmt}} ({min(values):{fmt}}–{max(values):{fmt}})" if len(values) > 1 else f"{med:{fmt}}"


def machine() -> dict[str, str]:
    model = ""
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    for line in lscpu.splitlines():
        if line.startswith("Model name"):
            model = line.split(":", 1)[1].strip()
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "cpus": str(os.cpu_count()),
        "model": model,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "mosquitto": Mosquitto.version(),
        "node": node,
        "node-red": node_red.installed_version() or "not installed",
    }


def report(runs: list[Run], messages: int, devices: int) -> None:
    table = Table(title=f"draining {messages:,} QoS 1 readings from {devices:,} devices: median (range)")
    for col in ("dataset", "consumer", "msg/s", "CPU µs/msg (process)", "CPU µs/msg (drain)", "peak RSS MiB"):
        table.add_column(col, justify="left" if col in ("dataset", "consumer") else "right")
    for dataset in dict.fromkeys(x.dataset for x in runs):
        for consumer in dict.fromkeys(x.consumer for x in runs):
            sel = [x for x in runs if x.dataset == dataset and x.consumer == consumer]
            if sel:
                table.add_row(
                    dataset,
                    consumer,
                    _spread([x.rate for x in sel], ",.0f"),
                    _spread([x.cpu_us for x in sel], ".1f"),
                    _spread([x.drain_cpu_us for x in sel], ".1f"),
                    _spread([x.peak_rss_mib for x in sel], ".0f"),
                )
    out.print(table)
    ratio_table = Table(title="firewatch's rate over its peer's, per round")
    for col in ("dataset", "ratio", "rounds", "median (range)"):
        ratio_table.add_column(col)
    for dataset in dict.fromkeys(x.dataset for x in runs):
        for peer, label in (("raw", "fw / raw"), ("node-red", "fw / Node-RED")):
            values = ratios(runs, dataset, peer)
            if values:
                ratio_table.add_row(
                    dataset, label, "  ".join(f"{v:.2f}" for v in values), _spread(values, ".2f")
                )
    out.print(ratio_table)
    out.print(", ".join(f"{k} {v}" for k, v in machine().items()))


def write_json(path: Path, runs: list[Run], args: argparse.Namespace) -> None:
    datasets = list(dict.fromkeys(x.dataset for x in runs))
    doc = {
        "messages": args.messages,
        "devices": args.devices,
        "rounds": args.rounds,
        "machine": machine(),
        "runs": [
            asdict(x) | {"rate": x.rate, "cpu_us": x.cpu_us, "drain_cpu_us": x.drain_cpu_us} for x in runs
        ],
        "ratios": {d: {peer: ratios(runs, d, peer) for peer in ("raw", "node-red")} for d in datasets},
    }
    path.write_text(json.dumps(doc, indent=1), encoding="utf-8")


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=200_000, help="backlog per drain (default 200000)")
    parser.add_argument(
        "--devices", type=int, default=1000, help="devices; divides --messages (default 1000)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--consumers", nargs="+", choices=CONSUMERS, default=list(CONSUMERS))
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    # The firewatch consumer's own process (started by the benchmark, not by hand).
    parser.add_argument("--role", choices=["firewatch"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--client-id", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--report", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "firewatch":
        from bench import peer_firewatch  # only the child needs the service's imports

        sys.exit(
            peer_firewatch.main(
                args.port, args.client_id, args.devices, args.messages, args.data, args.report
            )
        )
    if args.messages % args.devices:
        parser.error("--messages must be a multiple of --devices (each device sends the same number)")
    if "node-red" in args.consumers:
        node_red.ensure_installed(console)
    with Progress(console=console, transient=True) as progress:
        runs = run_benchmark(
            messages=args.messages,
            devices=args.devices,
            rounds=args.rounds,
            consumers=args.consumers,
            datasets=args.datasets,
            progress=progress,
        )
    report(runs, args.messages, args.devices)
    if args.json:
        write_json(args.json, runs, args)


if __name__ == "__main__":
    cli()
