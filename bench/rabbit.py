"""Private RabbitMQ 3.10 nodes with the MQTT plugin for the engine benchmarks: one node, or three
joined into a cluster, on free loopback ports with their own data, Erlang node names and cookie.

Never the machine's shared RabbitMQ (5672/25672/15672, node `rabbit@<host>`, its cookie in
/var/lib/rabbitmq): each node here runs Debian's /usr/lib/rabbitmq/bin scripts directly as the
`rabbitmq` user with HOME set to its own directory, so Erlang reads the cookie written there. The
nodes register with the machine's epmd (port 4369), which they share with the shared node and
leave running. Needs root (to run as `rabbitmq`).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType

from firewatch.broker import free_port

SBIN = Path("/usr/lib/rabbitmq/bin")


class PrivateRabbit:
    """One RabbitMQ node with the MQTT plugin on free loopback ports and a private directory.

    `durable_queue_type` is the plugin's `mqtt.durable_queue_type`: the queue a QoS 1 subscription
    of a persistent session (clean_session=False) gets — classic (one node's) or quorum (Raft,
    replicated over the cluster's nodes)."""

    def __init__(self, base: Path, cookie: str, durable_queue_type: str = "classic") -> None:
        self.base = base
        self.cookie = cookie
        self.durable_queue_type = durable_queue_type
        self.amqp, self.mqtt, self.dist, self.mgmt = (free_port() for _ in range(4))
        self.name = f"fwbench{self.amqp}@localhost"
        self.proc: subprocess.Popen[bytes] | None = None

    def _env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(self.base),  # the cookie: $HOME/.erlang.cookie
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.amqp),
            "RABBITMQ_DIST_PORT": str(self.dist),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_FEATURE_FLAGS_FILE": str(self.base / "mnesia" / "feature_flags"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq"),
            "RABBITMQ_PID_FILE": str(self.base / "pid"),
        }

    def launch(self) -> PrivateRabbit:
        """Start the node without waiting for it (see `wait_started`)."""
        for d in ("mnesia", "log"):
            (self.base / d).mkdir(parents=True, exist_ok=True)
        (self.base / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
        (self.base / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.amqp}\n"
            f"mqtt.listeners.tcp.default = 127.0.0.1:{self.mqtt}\n"
            f"mqtt.durable_queue_type = {self.durable_queue_type}\n"
            f"management.tcp.port = {self.mgmt}\n"
        )
        cookie = self.base / ".erlang.cookie"
        cookie.write_text(self.cookie)
        cookie.chmod(0o400)  # Erlang refuses a cookie others can read
        for path in [self.base, *self.base.rglob("*")]:
            shutil.chown(path, "rabbitmq", "rabbitmq")
        with (self.base / "out.log").open("wb") as out:
            self.proc = subprocess.Popen(
                [str(SBIN / "rabbitmq-server")],
                env=self._env(),
                cwd=self.base,
                user="rabbitmq",
                group="rabbitmq",
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def wait_started(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if b"Starting broker... completed" in (self.base / "out.log").read_bytes():
                return
            if self.proc is not None and self.proc.poll() is not None:
                break
            time.sleep(0.5)
        log = (self.base / "out.log").read_text()[-800:]
        raise RuntimeError(f"RabbitMQ {self.name} did not start: {log}")

    def start(self, timeout_s: float = 120.0) -> PrivateRabbit:
        self.launch()
        try:
            self.wait_started(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def ctl(self, *args: str, timeout_s: float = 120.0) -> str:
        """rabbitmqctl against this node, with its cookie."""
        done = subprocess.run(
            [str(SBIN / "rabbitmqctl"), "-n", self.name, *args],
            env=self._env(),
            cwd=self.base,
            user="rabbitmq",
            group="rabbitmq",
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} on {self.name}: {done.stdout}{done.stderr}")
        return done.stdout

    def vm_pids(self) -> list[int]:
        """The node's processes: its Erlang VM runs as `rabbitmq` and only its environment names
        the node (the rabbitmqctl VMs name it too, but they have exited by now)."""
        mark = f"RABBITMQ_NODENAME={self.name}".encode()
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if mark in (entry / "environ").read_bytes().split(b"\0"):
                        pids.append(int(entry.name))
        return pids

    def beam_pid(self) -> int:
        for pid in self.vm_pids():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/comm").read_text().strip() == "beam.smp":
                    return pid
        raise RuntimeError(f"no Erlang VM found for {self.name}")

    def kill(self) -> None:
        """kill -9 of the node's Erlang VM (the failover benchmark's fault)."""
        os.kill(self.beam_pid(), 9)

    def stop(self) -> None:
        for pid in self.vm_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 15)
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, 9)
                self.proc.wait(10)
        deadline = time.monotonic() + 20
        while pids := self.vm_pids():
            if time.monotonic() > deadline:
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, 9)
                break
            time.sleep(0.2)


class RabbitCluster:
    """Three (by default) private nodes sharing one cookie, joined with `rabbitmqctl join_cluster`
    to the first; QoS 1 subscriptions of persistent sessions in quorum queues (replicated on every
    node) unless told otherwise."""

    def __init__(self, base: Path, nodes: int = 3, durable_queue_type: str = "quorum") -> None:
        cookie = secrets.token_hex(16).upper()
        self.nodes = [PrivateRabbit(base / f"node{i}", cookie, durable_queue_type) for i in range(nodes)]

    @property
    def mqtt_ports(self) -> list[int]:
        return [n.mqtt for n in self.nodes]

    def start(self) -> RabbitCluster:
        try:
            for node in self.nodes:
                node.launch()
            for node in self.nodes:
                node.wait_started()
            first = self.nodes[0]
            for node in self.nodes[1:]:
                node.ctl("stop_app")
                node.ctl("join_cluster", first.name)
                node.ctl("start_app")
            status = first.ctl("cluster_status", "--formatter", "json")
            missing = [n.name for n in self.nodes if f'"{n.name}"' not in status.split('"running_nodes"')[1]]
            if missing:
                raise RuntimeError(f"not running in the cluster: {missing}: {status}")
        except BaseException:
            self.stop()
            raise
        return self

    def queues(self, node: int = 0) -> list[dict[str, object]]:
        """name, type, leader and members of every queue, as one node sees them."""
        out = self.nodes[node].ctl(
            "list_queues", "name", "type", "leader", "members", "messages", "--formatter", "json"
        )
        rows: list[dict[str, object]] = json.loads(out)
        return rows

    def stop(self) -> None:
        for node in self.nodes:  # each stop is self-contained; one failing must not skip the rest
            with contextlib.suppress(Exception):
                node.stop()

    def __enter__(self) -> RabbitCluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
