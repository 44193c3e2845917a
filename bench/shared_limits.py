"""What counting the API's limits in PostgreSQL adds to a request (docs/scale.md, "Limits counted
together"): the staff report's rate limit (one statement per request) and the sign-in throttle
(one transaction at an attempt's start, one at its success), against the same limits in memory.

    flock /tmp/bench-heavy.lock python3 -m bench.shared_limits [--calls 2000] [--threads 8]
        [--postgres-url postgresql+psycopg://USER@127.0.0.1/A_DATABASE_IT_MAY_CLEAR]

Without --postgres-url a private PostgreSQL is started (fsync and synchronous commit on, as a
production server runs) and removed afterwards. Each case runs `--calls` calls:
- `1 thread`: back to back, one caller (the latency a request waits);
- `N threads`: `--threads` callers at once, half on each of two workers' engines (the throughput
  of one database for a cluster), every caller on addresses of its own;
- `one address (refused)`, `one pair (refused)`: the same, all on one address (or account and
  address) past its limit: each worker asks the store once, then answers from memory until the
  wait ends.
Rate limit: 5 per 600 s, the staff report's; each caller's addresses round-robin over 1,000, so
every call but in the `one address` case is an admission (a refusal costs the same statement).
Sign-in: one attempt counted, then forgiven as a right password's is (the password's Argon2
check, ~0.1 s, is not included).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from rich.console import Console
from rich.table import Table
from sqlalchemy import delete, text
from sqlalchemy.orm import Session, sessionmaker

from accounts.shared_throttle import SharedSignInThrottle
from accounts.throttle import SignInThrottle
from api.rate_limit import RateLimit, SharedRateLimit
from storage.cluster_models import RateLimitRow, SignInFailureRow
from storage.db import open_store
from tests.postgres import PrivatePostgres

console = Console()
T0 = 1_800_000_000.0
ADDRESSES = 1_000


@dataclass
class Result:
    case: str
    calls: int
    seconds: float
    latencies: list[float]  # seconds per call


def local_throttle() -> SignInThrottle:
    return SignInThrottle(per_account=5, per_address=50, first_wait_s=60, max_wait_s=900)


def run(case: str, calls: int, threads: int, call: Callable[[int, int], object]) -> Result:
    """`call(thread, i)` `calls` times, split over `threads` threads started together."""
    latencies: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(threads + 1)

    def work(t: int) -> None:
        mine = []
        start.wait()
        for i in range(t, calls, threads):
            began = time.perf_counter()
            call(t, i)
            mine.append(time.perf_counter() - began)
        with lock:
            latencies.extend(mine)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    start.wait()
    began = time.perf_counter()
    for w in workers:
        w.join()
    return Result(case, calls, time.perf_counter() - began, latencies)


def empty(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        s.execute(delete(RateLimitRow))
        s.execute(delete(SignInFailureRow))


def measure(url: str, calls: int, threads: int) -> list[Result]:
    two = [open_store(url)[1] for _ in range(2)]  # two workers' engines and pools
    empty(two[0])
    out: list[Result] = []

    def address(t: int, i: int) -> str:
        return f"10.{t}.{i % ADDRESSES // 256}.{i % 256}"

    memory = RateLimit(5, 600.0)
    out.append(run("rate limit, memory, 1 thread", calls, 1, lambda t, i: memory.wait_s(address(t, i), T0)))
    limits = [SharedRateLimit(s, "bench", 5, 600.0) for s in two]
    for n in (1, threads):
        empty(two[0])
        out.append(
            run(
                f"rate limit, PostgreSQL, {n} thread{'s' if n > 1 else ''}",
                calls,
                n,
                lambda t, i: limits[t % 2].wait_s(address(t, i), T0),
            )
        )
    empty(two[0])
    out.append(
        run(
            f"rate limit, PostgreSQL, {threads} threads, one address (refused)",
            calls,
            threads,
            lambda t, i: limits[t % 2].wait_s("10.0.0.1", T0),
        )
    )

    def sign_in(throttle: SignInThrottle | SharedSignInThrottle, t: int, i: int) -> None:
        name, where = f"user{i % 50}", address(t, i)
        throttle.begin(name, where, T0)
        throttle.succeeded(name, where)

    in_memory = local_throttle()
    out.append(run("sign-in, memory, 1 thread", calls, 1, lambda t, i: sign_in(in_memory, t, i)))
    throttles = [SharedSignInThrottle(s, local_throttle()) for s in two]
    for n in (1, threads):
        empty(two[0])
        out.append(
            run(
                f"sign-in, PostgreSQL, {n} thread{'s' if n > 1 else ''}",
                calls,
                n,
                lambda t, i: sign_in(throttles[t % 2], t, i),
            )
        )
    for t in throttles:
        for _ in range(5):
            t.begin("user0", "10.9.9.9", T0)  # the pair waits now
    out.append(
        run(
            f"sign-in, PostgreSQL, {threads} threads, one pair (refused)",
            calls,
            threads,
            lambda t, i: throttles[t % 2].begin("user0", "10.9.9.9", T0),
        )
    )
    for s in two:
        engine = s.kw["bind"]
        engine.dispose()
    return out


def cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=2_000)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--postgres-url", default="")
    args = p.parse_args()
    private = None
    url = args.postgres_url
    if not url:
        private = PrivatePostgres(durable=True).start()
        url = private.url(private.create_database())
    try:
        engine, _ = open_store(url)  # migrated here
        with engine.connect() as conn:
            server = conn.execute(text("SHOW server_version")).scalar_one()
            fsync = conn.execute(text("SHOW fsync")).scalar_one()
            sync = conn.execute(text("SHOW synchronous_commit")).scalar_one()
        engine.dispose()
        results = measure(url, args.calls, args.threads)
    finally:
        if private is not None:
            private.close()
    table = Table(title=f"{args.calls:,} calls per case")
    for column in ("case", "calls/s", "p50 us", "p99 us"):
        table.add_column(column, justify="left" if column == "case" else "right")
    for r in results:
        ordered = sorted(r.latencies)
        p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
        table.add_row(
            r.case,
            f"{r.calls / r.seconds:,.0f}",
            f"{statistics.median(ordered) * 1e6:,.0f}",
            f"{p99 * 1e6:,.0f}",
        )
    console.print(table)
    console.print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {cpu()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, PostgreSQL {server} (fsync {fsync}, synchronous_commit "
        f"{sync}), psycopg {psycopg.__version__}"
    )


if __name__ == "__main__":
    main()
