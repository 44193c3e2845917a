"""What partition leases cost and how fast a silent worker's partitions are taken over.

    python3 -m bench.lease_heartbeat --postgres-url postgresql+psycopg://USER@127.0.0.1/A_DATABASE_IT_MAY_CLEAR

Two measurements on one PostgreSQL database (its cluster tables are migrated and emptied first):

1. heartbeat cost: `--workers` lease keepers over `--partitions` partitions, each in its own thread
   with its own connection pool, heartbeat back to back `--beats` times each (far more often than
   the ttl/3 they would in service, so they contend for the same rows); wall time per heartbeat;
2. takeover: the keepers settle (every partition owned, none to release), heartbeating every ttl/3
   as a worker does; one stops without a word (a kill -9); the time from its last successful
   heartbeat until every one of its partitions has a new owner, `--rounds` times.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import threading
import time

from sqlalchemy import delete
from sqlalchemy.orm import sessionmaker

from firewatch.cluster.leases import LeaseKeeper
from storage.cluster_models import ClusterWorkerRow, PartitionLeaseRow
from storage.db import make_engine, open_store


def fresh(url: str) -> None:
    _, sessions = open_store(url)
    with sessions.begin() as s:
        s.execute(delete(PartitionLeaseRow))
        s.execute(delete(ClusterWorkerRow))


def keepers(url: str, n: int, partitions: int, ttl_s: float, tag: str) -> list[LeaseKeeper]:
    return [
        LeaseKeeper(sessionmaker(make_engine(url)), f"{tag}{i}", partitions, ttl_s=ttl_s) for i in range(n)
    ]


def heartbeat_cost(url: str, workers: int, partitions: int, beats: int) -> list[float]:
    fresh(url)
    ks = keepers(url, workers, partitions, 6.0, "cost")
    for k in ks:
        k.heartbeat()  # connections open, rows made
    times: list[float] = []
    lock = threading.Lock()

    def run(k: LeaseKeeper) -> None:
        mine = []
        for _ in range(beats):
            t = time.perf_counter()
            view = k.heartbeat()
            if view.to_release:
                k.release(view.to_release)
            mine.append(time.perf_counter() - t)
        with lock:
            times.extend(mine)

    threads = [threading.Thread(target=run, args=(k,)) for k in ks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in ks:
        k.leave()
    return times


def settle(ks: list[LeaseKeeper], partitions: int) -> None:
    while True:
        views = [k.heartbeat() for k in ks]
        for k, v in zip(ks, views, strict=True):
            if v.to_release:
                k.release(v.to_release)
        owned = [set(k.owned) for k in ks]
        if sum(map(len, owned)) == partitions and not any(v.to_release for v in views):
            return
        time.sleep(0.05)


def takeover(url: str, workers: int, partitions: int, ttl_s: float, rounds: int) -> list[float]:
    out = []
    for r in range(rounds):
        fresh(url)
        ks = keepers(url, workers, partitions, ttl_s, f"r{r}w")
        settle(ks, partitions)
        silent, others = ks[0], ks[1:]
        last_beat = time.monotonic()
        silent.heartbeat()
        orphans = set(silent.owned)
        stop = threading.Event()

        def beat(k: LeaseKeeper, stop: threading.Event = stop) -> None:
            while not stop.is_set():
                view = k.heartbeat()
                if view.to_release:
                    k.release(view.to_release)
                stop.wait(k.interval_s)

        threads = [threading.Thread(target=beat, args=(k,)) for k in others]
        for t in threads:
            t.start()
        while not orphans <= {p for k in others for p in k.owned}:
            time.sleep(0.01)
        out.append(time.monotonic() - last_beat)
        stop.set()
        for t in threads:
            t.join()
        for k in others:
            k.leave()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--postgres-url", required=True)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--beats", type=int, default=200)
    parser.add_argument("--ttl", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"{platform.node()} {platform.machine()}, {when}")
    cost = sorted(heartbeat_cost(args.postgres_url, args.workers, args.partitions, args.beats))
    p99 = cost[min(len(cost) - 1, int(0.99 * len(cost)))]
    print(
        f"heartbeat, {args.workers} keepers x {args.beats} back to back, P={args.partitions}: "
        f"median {statistics.median(cost) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
        f"max {cost[-1] * 1000:.1f} ms"
    )
    spans = takeover(args.postgres_url, args.workers, args.partitions, args.ttl, args.rounds)
    print(
        f"takeover, ttl {args.ttl:g} s, heartbeat every {args.ttl / 3:g} s: silent worker's partitions "
        f"all claimed after {', '.join(f'{s:.2f}' for s in spans)} s (from its last heartbeat's start)"
    )


if __name__ == "__main__":
    main()
