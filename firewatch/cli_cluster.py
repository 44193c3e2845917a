"""`firewatch cluster`: the clustered deployment's commands (docs/scale.md)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

cluster_app = typer.Typer(
    help="Several firewatch workers on one NATS JetStream engine. See docs/scale.md.",
    no_args_is_help=True,
)
console = Console()
err = Console(stderr=True)


@cluster_app.command()
def engine(
    nodes: Annotated[int, typer.Option(min=1, max=9, help="nats-server processes in the cluster")] = 3,
    dir: Annotated[
        Path, typer.Option("--dir", help="each node's config, log and JetStream store go under DIR/<node>/")
    ] = Path("data/engine"),
    partitions: Annotated[
        int, typer.Option(min=1, help="partitions of the stream FW; fixed for a deployment's lifetime")
    ] = 12,
    replicas: Annotated[int, typer.Option(min=1, max=5, help="copies of each message (at most --nodes)")] = 3,
    retention_h: Annotated[float, typer.Option(help="hours the stream keeps a message")] = 72.0,
) -> None:
    """Run a private NATS JetStream cluster on free loopback ports, for trying the clustered
    deployment on one machine (docs/scale.md says how to run it in production).

    Each node gets a client port (the workers), a route port (the other nodes), an MQTT port (the
    devices: publish QoS 1 to fw/v1/<site>/<device>/<kind>) and a monitoring port. The subject
    mapping sends each site's messages to partition fnv1a32(site) % PARTITIONS of the stream FW,
    which this command creates (file storage, --replicas copies, --retention-h hours).

    Prints the client URLs and MQTT ports, then runs until Ctrl-C, which stops and reaps every node.
    Needs nats-server (Debian: apt-get install nats-server).
    """
    import asyncio

    from firewatch.cluster.engine import EngineError, NatsCluster, node_name, prepare_stream

    if replicas > nodes:
        err.print(f"[red]--replicas {replicas} needs at least that many --nodes (got {nodes})[/]")
        raise typer.Exit(2)
    cluster = NatsCluster(dir.resolve(), nodes=nodes, partitions=partitions)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        with console.status(f"starting {nodes} nats-server node(s) in {escape(str(dir))} ..."):
            cluster.start()
            asyncio.run(prepare_stream(cluster.client_urls, partitions, replicas, retention_h * 3600.0))
    except (EngineError, OSError, TimeoutError) as exc:
        cluster.stop()
        err.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(1) from exc
    try:
        table = Table(title=f"engine: {nodes} node(s), stream FW with {partitions} partitions, R{replicas}")
        for column in ("node", "clients (workers)", "MQTT (devices)", "monitoring", "log"):
            table.add_column(column)
        for i, ports in enumerate(cluster.ports):
            table.add_row(
                node_name(i),
                cluster.client_urls[i],
                f"mqtt://127.0.0.1:{ports.mqtt}",
                cluster.monitor_urls[i],
                str(cluster.log_path(i)),
            )
        console.print(table)
        console.print(f"NATS servers: {','.join(cluster.client_urls)}")
        console.print("running; Ctrl-C stops every node")
        while not stop.wait(0.5):
            pass
    finally:
        with console.status("stopping ..."):
            cluster.stop()
    console.print("stopped")
