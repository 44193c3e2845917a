"""How fast one, two and three workers drain the same backlog from the engine (docs/scale.md).

    python -m bench.scale_out [--messages 300000] [--sites 48] [--per-site 25] [--workers 1,3]
                              [--worker-cpu CORES[,CORES...]] [--settle-s 10] [--json PATH]

A three-node engine (nats-server, JetStream R3, the site-partitioning mapping) on loopback holds a
backlog of smoke-detector readings of a city of small sites (simulators/city.py), published before
any worker runs. For each worker count, in one invocation: a fresh PostgreSQL database (a private
server started here), that many `firewatch serve` processes in cluster mode, and the rate at which
the backlog is stored in PostgreSQL from `--settle-s` after every worker holds its share of the
partitions (the first to start reads alone until the others have theirs, and a partition handed on
takes a few seconds to settle) to the last reading. Reported per run: messages/s, CPU seconds the
workers used (their /proc times) and messages per worker CPU second over the whole run (start-up
included; a CPU figure over the measured window alone would count work done before it, as the
pipeline reads ahead); and the ratio of each run's rate to the one-worker rate under the same
quota. The backlog has no fire, so this is the steady ingest path (decode, detect, store by key),
not the alarm path.

On the 2-core development machine the workers, the three engine nodes and PostgreSQL share two
cores: three workers cannot run three times as fast as one when one worker, PostgreSQL and the
engine already keep both busy. `--worker-cpu 0.25` confines each worker to a quarter of a core (a
cgroup v1 CPU quota; needs root), as if each ran on a small machine of its own while the engine and
PostgreSQL keep the rest: then what the workers add is what is measured. The per-CPU-second figure
is what a sizing projection can use (docs/scale.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from tempfile import TemporaryDirectory

import nats
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from core.registry import write_registry_text
from firewatch.cluster.engine import NatsCluster, ensure_stream
from firewatch.cluster.local import ClusterState, WorkerProcess, start_worker
from simulators.city import CLEAN_AIR, city_registry, device_ids, reading
from tests.postgres import PrivatePostgres

PARTITIONS = 12
console = Console(stderr=True)


@dataclass
class Run:
    workers: int
    messages: int  # drained once every worker held its share
    seconds: float  # from every worker holding its share to every reading stored
    owned_after_s: float  # from the workers' start until every partition had an owner
    cpu_s: float  # the workers' user + system time over the whole run
    worker_cpu: float = 0.0  # each worker's quota in cores (0: none)
    rate: float = 0.0
    per_cpu_s: float = 0.0  # messages per worker CPU second, the whole run (start-up included)


CGROUP_CPU = Path("/sys/fs/cgroup/cpu")  # cgroup v1's CPU controller (what this machine mounts)


class CpuQuota:
    """A CPU quota for one worker process and what it forks: `cores` of CPU time per wall second
    (cgroup v1 cpu.cfs_quota_us), as if the worker ran on a machine of its own that size."""

    def __init__(self, pid: int, cores: float) -> None:
        self.path = CGROUP_CPU / f"fw-scale-{pid}"
        self.path.mkdir()
        period = int((self.path / "cpu.cfs_period_us").read_text())
        (self.path / "cpu.cfs_quota_us").write_text(str(int(period * cores)))
        (self.path / "cgroup.procs").write_text(str(pid))

    def remove(self) -> None:
        # Its processes have exited (or are moved back to the root first).
        try:
            for pid in (self.path / "cgroup.procs").read_text().split():
                (CGROUP_CPU / "cgroup.procs").write_text(pid)
            self.path.rmdir()
        except OSError:
            pass


def cpu_seconds(pid: int) -> float:
    """User + system time of a process (and its waited-for children), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(f) for f in fields[11:15]) / ticks


async def preload(urls: list[str], sites: int, per_site: int, messages: int) -> None:
    """The backlog: round after round of every device's reading, published straight to the engine
    (the MQTT listener maps the same subjects), each acknowledged by the stream."""
    nc = await nats.connect(servers=urls)
    js = nc.jetstream()
    await ensure_stream(js, PARTITIONS, replicas=3, max_age_s=86_400.0)
    devices = device_ids(sites, per_site)
    t0 = time.time() - messages / len(devices) * 10.0
    sent = 0
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("publishing the backlog", total=messages)
        seq = 0
        while sent < messages:
            seq += 1
            futures = []
            for site, device in devices[: messages - sent]:
                subject = f"fw.v1.{site}.{device}.telemetry"
                futures.append(js.publish(subject, reading(seq, t0 + seq * 10.0, CLEAN_AIR)))
            await asyncio.gather(*futures)
            sent += len(futures)
            progress.update(task, completed=sent)
    await nc.close()


def run(
    n: int,
    engine: NatsCluster,
    pg: PrivatePostgres,
    registry: Path,
    messages: int,
    work: Path,
    worker_cpu: float,
    settle_s: float,
) -> Run:
    # A worker's name and local files are its run's own: a later run reusing a data directory would
    # take the backlog for messages already seen (its local de-duplication state) and store nothing.
    tag = f"{n}w-{round(worker_cpu * 100)}pc"  # no dot: a worker id may name a NATS subject
    url = pg.url(pg.create_database()).replace("postgresql://", "postgresql+psycopg://")
    state = ClusterState(url)
    password = f"bench-{uuid.uuid4().hex}"
    workers: list[WorkerProcess] = []
    quotas: list[CpuQuota] = []
    began = time.monotonic()
    try:
        for i in range(n):
            workers.append(
                start_worker(
                    f"bench-{tag}-{i + 1}",
                    engine=engine.client_urls,
                    database_url=url,
                    registry=registry,
                    data_dir=work / f"run-{tag}-w{i + 1}",
                    partitions=PARTITIONS,
                    admin_password=password,
                )
            )
            if worker_cpu > 0:
                quotas.append(CpuQuota(workers[-1].proc.pid, worker_cpu))
        # Confined workers start slowly (imports, the schema): up to a few minutes for three.
        owned_after = state.wait_owned({w.worker_id for w in workers}, PARTITIONS, timeout_s=600)
        # The workers start some seconds apart and the first ones read until the rest have their
        # share; a partition handed on is then finished by its old owner (what it had queued) while
        # its new owner reads it again from the stored mark. The rate counts only what is drained
        # from `settle_s` after every worker holds its share.
        time.sleep(settle_s)
        t0 = time.monotonic()
        target = 2 * messages  # two channels per reading
        at_start = state.readings()
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task(f"{n} worker(s) draining", total=target)
            while (stored := state.readings()) < target:
                progress.update(task, completed=stored)
                if time.monotonic() - t0 > 600:
                    raise TimeoutError(f"{n} workers stored {stored} of {target} readings in 600 s")
                if dead := [w for w in workers if not w.alive]:
                    raise RuntimeError(f"worker {dead[0].worker_id} died:\n{dead[0].tail()}")
                time.sleep(0.2)
        seconds = time.monotonic() - t0
        cpu = sum(cpu_seconds(w.proc.pid) for w in workers)
        del began
        drained = (target - at_start) // 2
        result = Run(n, drained, seconds, owned_after, cpu, worker_cpu)
        result.rate = drained / seconds
        result.per_cpu_s = messages / cpu if cpu else 0.0  # the whole run's CPU: every message read once
        return result
    finally:
        for w in workers:
            w.stop()
        for q in quotas:
            q.remove()
        state.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=300_000)
    ap.add_argument("--sites", type=int, default=48)
    ap.add_argument("--per-site", type=int, default=25)
    ap.add_argument("--workers", default="1,3", help="worker counts to run, in order (comma-separated)")
    ap.add_argument(
        "--worker-cpu",
        default="0",
        help="confine each worker to this many cores (cgroup quota; 0: no limit), as if each ran on a "
        "machine of its own that size while the engine and PostgreSQL have the rest; several "
        "(comma-separated) run every worker count under each, on one backlog",
    )
    ap.add_argument(
        "--settle-s",
        type=float,
        default=10.0,
        help="seconds after every worker holds its share before the rate is measured (hand-ons settle)",
    )
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    # A SIGTERM (a `timeout`, a kill) ends the run through its clean-up like Ctrl-C: no worker, engine
    # node or PostgreSQL server is left running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    counts = [int(c) for c in args.workers.split(",")]
    quotas = [float(q) for q in args.worker_cpu.split(",")]
    runs: list[Run] = []
    with TemporaryDirectory(prefix="fw-scale-") as tmp:
        work = Path(tmp)
        registry = work / "city.yaml"
        write_registry_text(registry, city_registry(args.sites, args.per_site))
        pg = PrivatePostgres().start()
        engine = NatsCluster(work / "engine", nodes=3, partitions=PARTITIONS).start()
        try:
            asyncio.run(preload(engine.client_urls, args.sites, args.per_site, args.messages))
            for quota in quotas:
                for n in counts:
                    runs.append(run(n, engine, pg, registry, args.messages, work, quota, args.settle_s))
                    console.print(f"{n} worker(s), quota {quota:g}: {runs[-1].rate:,.0f} msg/s")
        finally:
            engine.stop()
            pg.close()
    table = Table(title=f"draining {args.messages:,} readings of {args.sites * args.per_site:,} devices")
    for col in (
        "worker cores",
        "workers",
        "seconds",
        "msg/s",
        "× one",
        "worker CPU s",
        "msg per CPU s",
    ):
        table.add_column(col, justify="right")
    one = {r.worker_cpu: r.rate for r in runs if r.workers == 1}
    for r in runs:
        base = one.get(r.worker_cpu)
        table.add_row(
            f"{r.worker_cpu:g}" if r.worker_cpu else "no limit",
            str(r.workers),
            f"{r.seconds:.1f}",
            f"{r.rate:,.0f}",
            f"{r.rate / base:.2f}" if base else "",
            f"{r.cpu_s:.1f}",
            f"{r.per_cpu_s:,.0f}",
        )
    Console().print(table)
    info = {
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs",
        "date": time.strftime("%Y-%m-%d"),
        "worker_cpu": quotas,
        "runs": [asdict(r) for r in runs],
    }
    if args.json is not None:
        args.json.write_text(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
