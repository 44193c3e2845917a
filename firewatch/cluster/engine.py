"""The engine: a NATS JetStream cluster whose MQTT listener takes the devices' messages and whose
subject mapping sends each site's messages, in order, to one partition (docs/scale.md,
docs/decisions/0015-engine.md).

A device publishes MQTT `fw/v1/{site}/{device}/{kind}`; NATS's MQTT listener turns the topic
into the subject `fw.v1.{site}.{device}.{kind}` ('/' -> '.'), and the server's subject mapping
rewrites it to `fwp.{partition}.fw.v1.{site}.{device}.{kind}` with `partition = fnv1a32(site) % P`
(a site is one worker's: decision 0016). One stream, `FW`, stores `fwp.>`; a worker reads the
partitions it owns from it. Topics under `fw/v1` of any other depth go to partition 0 unchanged,
so the worker that owns partition 0 rejects them visibly as bad_topic instead of them vanishing.

`partition_of` and the configuration are pure; `NatsCluster` starts private servers for the
tests, the benchmarks and `firewatch cluster engine`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import nats
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

STREAM = "FW"
PARTITIONED = "fwp"  # subject prefix of the stream: fwp.<partition>.<original subject>
SOURCE_PREFIX = ("fw", "v1")  # the topic scheme's prefix (ingest/topics.py), as subject tokens
SCHEME_LEVELS = 5  # fw/v1/{site}/{device}/{kind}
SITE_TOKEN = 1  # 1-based wildcard index of {site} in `fw.v1.*.*.*`: the partition key (decision 0016)
BAD_TOPIC_PARTITION = 0
DEFAULT_PARTITIONS = 12
CLUSTER_NAME = "firewatch"

_FNV32_OFFSET = 0x811C9DC5  # FNV-1a 32-bit parameters (IETF draft-eastlake-fnv, §2)
_FNV32_PRIME = 0x01000193


def fnv1a_32(data: bytes) -> int:
    h = _FNV32_OFFSET
    for byte in data:
        h = ((h ^ byte) * _FNV32_PRIME) & 0xFFFFFFFF
    return h


def partition_of(site: str, partitions: int) -> int:
    """The partition nats-server's `{{partition(partitions, 1)}}` mapping gives the messages of
    this site's devices (docs/decisions/0016-partition-by-site.md): FNV-1a 32 of the token's UTF-8
    bytes modulo the count (the server's
    getHashPartition hashes the selected tokens' bytes with Go's hash/fnv New32a; checked against a
    running 2.9.10 in tests/test_cluster_engine.py)."""
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, got {partitions}")
    return fnv1a_32(site.encode()) % partitions


def partition_subject(partition: int) -> str:
    """The stream's subjects of one partition: the filter a worker's consumer uses."""
    return f"{PARTITIONED}.{partition}.>"


def mqtt_topic_of(subject: str) -> str:
    """The MQTT topic a stream subject came from: `fwp.<p>.` dropped, then NATS's MQTT topic
    conversion undone ('.' separates levels; an empty MQTT level travels as the token '/')."""
    tokens = subject.split(".")
    if len(tokens) < 3 or tokens[0] != PARTITIONED:
        raise ValueError(f"not a partitioned subject: {subject!r}")
    return "/".join("" if t == "/" else t for t in tokens[2:])


def partition_mappings(partitions: int) -> dict[str, str]:
    """The server's `mappings` block. Sources differ in their number of tokens, so exactly one
    applies to any subject (nats-server picks among overlapping wildcard mappings in no fixed
    order). The scheme's depth is hashed by site; every other depth under fw.v1 (the topic
    levels from 2 up that a broken device might use) keeps its subject and goes to partition 0."""
    prefix = ".".join(SOURCE_PREFIX)
    scheme_wildcards = SCHEME_LEVELS - len(SOURCE_PREFIX)
    rules = {
        f"{prefix}.*.*.*": (
            f"{PARTITIONED}.{{{{partition({partitions},{SITE_TOKEN})}}}}.{prefix}."
            + ".".join(f"{{{{wildcard({i})}}}}" for i in range(1, scheme_wildcards + 1))
        )
    }
    rules[prefix] = f"{PARTITIONED}.{BAD_TOPIC_PARTITION}.{prefix}"
    for wildcards in (1, 2, 4):
        rules[prefix + ".*" * wildcards] = _to_partition_0(prefix, wildcards, rest=False)
    # 7 levels and more: a mapping's destination must use every wildcard of its source, and may end
    # with '>' for the remaining tokens (nats-server 2.9.10 refuses a bare '>' destination otherwise).
    rules[prefix + ".*" * 4 + ".>"] = _to_partition_0(prefix, 4, rest=True)
    return rules


def _to_partition_0(prefix: str, wildcards: int, rest: bool) -> str:
    tokens = [f"{{{{wildcard({i})}}}}" for i in range(1, wildcards + 1)] + ([">"] if rest else [])
    return f"{PARTITIONED}.{BAD_TOPIC_PARTITION}.{prefix}." + ".".join(tokens)


@dataclass(frozen=True)
class NodePorts:
    """One node's loopback ports: clients, cluster routes, the devices' MQTT and monitoring HTTP."""

    client: int
    cluster: int
    mqtt: int
    http: int


def node_name(index: int) -> str:
    return f"fw-engine-{index + 1}"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def node_config(
    index: int,
    nodes: Sequence[NodePorts],
    store_dir: Path,
    partitions: int,
    host: str = "127.0.0.1",
) -> str:
    """nats-server configuration for node `index` of the cluster `nodes` (all on `host`)."""
    me = nodes[index]
    routes = ", ".join(_quote(f"nats-route://{host}:{n.cluster}") for i, n in enumerate(nodes) if i != index)
    mappings = "\n".join(f"  {_quote(s)}: {_quote(d)}" for s, d in partition_mappings(partitions).items())
    replicas = min(3, len(nodes))
    cluster = (
        f"cluster {{\n  name: {CLUSTER_NAME}\n  listen: {_quote(f'{host}:{me.cluster}')}\n"
        f"  routes: [{routes}]\n}}\n"
        if len(nodes) > 1
        else ""
    )
    return (
        f"server_name: {_quote(node_name(index))}\n"
        f"listen: {_quote(f'{host}:{me.client}')}\n"
        f"http: {_quote(f'{host}:{me.http}')}\n"
        # A PUBLISH of up to 1 MiB (the MQTT listener's limit is the server's max_payload).
        "max_payload: 1048576\n"
        f"jetstream {{\n  store_dir: {_quote(str(store_dir))}\n}}\n"
        f"{cluster}"
        # The MQTT sessions of the devices live in JetStream streams of the server's own; with
        # stream_replicas they survive the loss of a node like the data does.
        f"mqtt {{\n  listen: {_quote(f'{host}:{me.mqtt}')}\n  stream_replicas: {replicas}\n}}\n"
        f"mappings {{\n{mappings}\n}}\n"
    )


async def ensure_stream(js: JetStreamContext, partitions: int, replicas: int, max_age_s: float) -> None:
    """Create the stream `FW`, or update its retention and replicas. The partition count is written
    into its description: a deployment's count is fixed (a device's partition is its hash modulo the
    count), so a stream made for another count is refused rather than silently reshuffled."""
    description = f"firewatch devices' messages by partition; partitions={partitions}"
    config = StreamConfig(
        name=STREAM,
        description=description,
        subjects=[f"{PARTITIONED}.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        num_replicas=replicas,
        max_age=max_age_s,
        discard=DiscardPolicy.OLD,
    )
    try:
        info = await js.stream_info(STREAM)
    except NotFoundError:
        await js.add_stream(config)
        return
    existing = info.config.description or ""
    if existing != description:
        raise ValueError(
            f"stream {STREAM} exists with description {existing!r}: it was made for another partition "
            f"count than {partitions}; a deployment's partition count cannot change in place"
        )
    await js.update_stream(config)


class EngineError(RuntimeError):
    """The engine cluster could not be started or did not become ready; the message says why."""


def nats_server_binary() -> str | None:
    return shutil.which("nats-server") or next(
        (p for p in ("/usr/sbin/nats-server", "/usr/local/bin/nats-server") if Path(p).exists()), None
    )


def _free_ports(count: int, host: str) -> list[int]:
    """`count` distinct free ports, all held open together while chosen so none repeats."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            s.bind((host, 0))
            ports.append(int(s.getsockname()[1]))
        return ports


def _get_json(url: str, timeout: float = 1.0) -> dict[str, Any] | None:
    """The JSON a monitoring endpoint answers, its error answers (503 of /healthz) included."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data: dict[str, Any] = json.load(response)
            return data
    except urllib.error.HTTPError as exc:
        try:
            error: dict[str, Any] = json.load(exc)
            return error
        except ValueError:
            return None
    except (OSError, ValueError):
        return None


@dataclass
class NatsCluster:
    """N nats-server processes clustered on free loopback ports, each with its own config, log and
    JetStream store under `base_dir/<node name>/`. Use as a context manager, or start()/stop().

    stop() always reaps every process it started. kill(i) is a SIGKILL (no flush, no goodbye to
    the cluster); restart(i) starts the node again on the same ports and store."""

    base_dir: Path
    nodes: int = 3
    partitions: int = DEFAULT_PARTITIONS
    host: str = "127.0.0.1"
    ports: list[NodePorts] = field(default_factory=list)
    _procs: list[subprocess.Popen[bytes] | None] = field(default_factory=list, init=False, repr=False)
    _down: set[int] = field(default_factory=set, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.nodes < 1:
            raise ValueError(f"nodes must be at least 1, got {self.nodes}")
        if not self.ports:
            flat = _free_ports(4 * self.nodes, self.host)
            self.ports = [NodePorts(*flat[4 * i : 4 * i + 4]) for i in range(self.nodes)]
        self._procs = [None] * self.nodes

    @property
    def client_urls(self) -> list[str]:
        return [f"nats://{self.host}:{p.client}" for p in self.ports]

    @property
    def mqtt_ports(self) -> list[int]:
        return [p.mqtt for p in self.ports]

    @property
    def monitor_urls(self) -> list[str]:
        return [f"http://{self.host}:{p.http}" for p in self.ports]

    def node_dir(self, index: int) -> Path:
        return self.base_dir / node_name(index)

    def log_path(self, index: int) -> Path:
        return self.node_dir(index) / "nats-server.log"

    def alive(self, index: int) -> bool:
        proc = self._procs[index]
        return proc is not None and proc.poll() is None

    def start(self, timeout: float = 30.0) -> NatsCluster:
        try:
            for i in range(self.nodes):
                self._launch(i)
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _launch(self, index: int) -> None:
        binary = nats_server_binary()
        if binary is None:
            raise EngineError("nats-server is not installed (Debian: apt-get install nats-server)")
        node_dir = self.node_dir(index)
        node_dir.mkdir(parents=True, exist_ok=True)
        conf = node_dir / "nats-server.conf"
        self._down.discard(index)
        conf.write_text(node_config(index, self.ports, node_dir / "jetstream", self.partitions, self.host))
        with self.log_path(index).open("ab") as log:
            self._procs[index] = subprocess.Popen(
                [binary, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until every live node answers and sees the same JetStream meta leader: only then can
        streams and consumers be created. (Not /healthz: after a restart a node's /healthz can stay
        503 for minutes while an R1 consumer of the MQTT listener's own streams is "not current",
        though the node serves clients and the stream FW; seen with 2.9.10.)"""
        deadline = time.monotonic() + timeout
        while True:
            problem = self._not_ready()
            if problem is None:
                return
            if time.monotonic() > deadline:
                raise EngineError(f"engine cluster not ready after {timeout:.0f} s: {problem}")
            time.sleep(0.1)

    def _not_ready(self) -> str | None:
        leaders = set()
        for i, url in enumerate(self.monitor_urls):
            if i in self._down:
                continue  # killed on purpose: the others must do
            proc = self._procs[i]
            if proc is None:
                return f"{node_name(i)} is not running"
            if proc.poll() is not None:
                return f"{node_name(i)} exited; see {self.log_path(i)}"
            jsz = _get_json(f"{url}/jsz")
            if jsz is None:
                return f"{node_name(i)} does not answer on {url}"
            meta = jsz.get("meta_cluster") or {}
            leader = meta.get("leader") if self.nodes > 1 else node_name(i)
            if not leader:
                return f"{node_name(i)} sees no JetStream meta leader yet"
            leaders.add(leader)
        if len(leaders) != 1:
            return f"nodes disagree on the meta leader: {sorted(leaders)}"
        return None

    def kill(self, index: int) -> None:
        """SIGKILL node `index` and reap it: what a power cut or an OOM kill does."""
        proc = self._procs[index]
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10.0)
        self._down.add(index)

    def restart(self, index: int, timeout: float = 30.0) -> None:
        """Start node `index` again (after kill or stop) on its ports and store, and wait until the
        cluster is ready with it."""
        proc = self._procs[index]
        if proc is not None and proc.poll() is None:
            raise EngineError(f"{node_name(index)} is still running")
        self._launch(index)
        self.wait_ready(timeout)

    def stream_leader(self) -> int:
        """The index of the node leading the stream FW (asked through any live node)."""

        async def ask() -> str:
            nc = await nats.connect(servers=self.client_urls)
            try:
                info = await nc.jetstream().stream_info(STREAM)
            finally:
                await nc.close()
            if info.cluster is None or not info.cluster.leader:
                raise EngineError(f"the stream {STREAM} has no leader now")
            return info.cluster.leader

        return [node_name(i) for i in range(self.nodes)].index(asyncio.run(ask()))

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL if needed) and reap them all."""
        errors: list[BaseException] = []
        for proc in self._procs:
            if proc is None:
                continue
            try:
                if proc.poll() is None:
                    proc.terminate()
                try:
                    proc.wait(timeout=10.0)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5.0)
            except BaseException as exc:  # reap the others before reporting
                errors.append(exc)
        self._procs = [None] * self.nodes
        if errors:
            raise errors[0]

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


async def prepare_stream(
    servers: Sequence[str], partitions: int, replicas: int, max_age_s: float, patience_s: float = 30.0
) -> None:
    """`ensure_stream` through a connection of its own, tried again on no answer: a cluster that
    has just elected its meta leader may still let a request go unanswered (or the machine is busy).
    Tried until `patience_s` has passed."""
    deadline = time.monotonic() + patience_s
    nc = await nats.connect(servers=list(servers))
    try:
        while True:
            try:
                await ensure_stream(nc.jetstream(timeout=5.0), partitions, replicas, max_age_s)
                return
            except (TimeoutError, NatsError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
    finally:
        await nc.close()
