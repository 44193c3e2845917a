"""An MQTT broker of firewatch's own: a private mosquitto on a free loopback port, or, where
mosquitto is not installed, an in-process amqtt broker.

Used by `firewatch demo` when no broker is configured, by the test fixtures and by the benchmarks,
so none of them touches a broker somebody else started.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class BrokerError(RuntimeError):
    """The embedded broker could not be started; the message says why and what to do."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def stop_process(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """Ask a child server to stop (SIGTERM), and kill it if it has not within `timeout`. Always
    reaps it (a child that died earlier is a zombie until waited for), and returns within about
    `timeout` + 2 s: a child that survives SIGKILL (uninterruptible sleep) is logged and left."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
        return
    except subprocess.TimeoutExpired:
        logger.warning("pid %d did not stop within %.1f s of SIGTERM; killing it", proc.pid, timeout)
    proc.kill()
    try:
        proc.wait(timeout=2.0)
    except subprocess.TimeoutExpired:
        logger.error("pid %d is still there 2 s after SIGKILL; leaving it", proc.pid)


def _parent_death_signal() -> Callable[[], None] | None:
    """A `preexec_fn` asking Linux to SIGTERM the child when its parent thread ends
    (prctl PR_SET_PDEATHSIG); None elsewhere. What the child runs is resolved here, before the fork."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def in_child() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))
        if os.getppid() != parent:  # the parent died before the request: nobody will stop us
            os._exit(1)

    return in_child


def parse_broker_url(url: str) -> tuple[str, int]:
    """(host, port) of `mqtt://host:port` (`tcp://` too; 1883 when the port is left out); a
    ValueError that says what it should look like otherwise."""
    parts = urlsplit(url)
    try:
        port = parts.port or 1883
    except ValueError:
        port = -1
    if parts.scheme not in ("mqtt", "tcp") or not parts.hostname or port < 1:
        raise ValueError(f"--broker must look like mqtt://host:port, got {url!r}")
    return parts.hostname, port


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.02)
    raise BrokerError(f"nothing is listening on {host}:{port} after {timeout:.0f} s")


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None
    )


@dataclass
class Mosquitto:
    """A private mosquitto process. Use as a context manager, or call start()/stop().

    Persistence is on, so a restart of the *service* keeps its queued QoS 1 messages, and
    `restart()` of the broker keeps them too (mosquitto writes its database on shutdown).
    """

    port: int = 0
    host: str = "127.0.0.1"
    data_dir: Path | None = None
    max_queued_messages: int = 1_000_000
    queue_qos0: bool = False  # benchmarks: let offline sessions queue QoS 0 too
    # Linux: SIGTERM the broker when the thread that started it ends, the process killed included
    # (the demo: no broker left running after a kill -9). Start it from a thread that lives as long.
    die_with_parent: bool = False
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @staticmethod
    def version() -> str:
        binary = mosquitto_binary()
        if binary is None:
            return "not installed"
        out = subprocess.run([binary, "-h"], capture_output=True, text=True, check=False).stdout
        return out.splitlines()[0].removeprefix("mosquitto version ").strip() if out else "unknown"

    def _write_config(self) -> Path:
        assert self.data_dir is not None
        conf = self.data_dir / "mosquitto.conf"
        conf.write_text(
            "\n".join(
                [
                    f"listener {self.port} {self.host}",
                    # Started as root, mosquitto would drop to the `mosquitto` user, which cannot write
                    # its persistence file under our (often 0700) data dir: sessions would silently not
                    # survive a broker restart. This private loopback broker keeps the invoking user.
                    *(["user root"] if os.geteuid() == 0 else []),
                    "allow_anonymous true",
                    "persistence true",
                    f"persistence_location {self.data_dir}/",
                    # A persistent session must hold everything published while the service is down.
                    f"max_queued_messages {self.max_queued_messages}",
                    "max_queued_bytes 0",
                    # v3 clients: no cap on unacknowledged QoS 1 in flight towards a subscriber;
                    # MQTT 5 clients set their own cap with Receive Maximum.
                    "max_inflight_messages 0",
                    f"queue_qos0_messages {'true' if self.queue_qos0 else 'false'}",
                    "log_dest stderr",
                    "log_type error",
                    "log_type warning",
                    "",
                ]
            ),
            encoding="utf-8",
        )
        return conf

    def start(self) -> Mosquitto:
        binary = mosquitto_binary()
        if binary is None:
            raise BrokerError("mosquitto is not installed: install it (apt-get install -y mosquitto)")
        if self.data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="fw-mosquitto-")
            self.data_dir = Path(self._tmp.name)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port(self.host)
        conf = self._write_config()
        log = (self.data_dir / "mosquitto.log").open("ab")
        # A session of its own: Ctrl-C in a terminal (SIGINT to the foreground process group) must
        # not take the broker away before the service using it has stopped; its owner stops it.
        self._proc = subprocess.Popen(
            [binary, "-c", str(conf)],
            stdout=log,
            stderr=log,
            start_new_session=True,
            preexec_fn=_parent_death_signal() if self.die_with_parent else None,
        )
        log.close()  # the child has its own copy
        try:
            wait_for_port(self.host, self.port)
        except BrokerError:
            self.stop()
            raise BrokerError(
                f"mosquitto did not start on {self.host}:{self.port}; see {self.data_dir}/mosquitto.log"
            ) from None
        logger.info("mosquitto listening on %s:%d", self.host, self.port)
        return self

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (mosquitto saves its persistence file and exits), SIGKILL after `timeout`."""
        if self._proc is not None:
            stop_process(self._proc, timeout)
        self._proc = None

    def kill(self) -> None:
        """Stop abruptly (SIGKILL): what a crash looks like to clients."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(timeout=5.0)
            self._proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class InProcessBroker:
    """amqtt running inside this process's event loop: the demo's fallback when mosquitto is absent.

    It speaks MQTT 3.1.1 only, so clients must connect with protocol 4. Not for production.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._broker: object | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    async def start(self) -> InProcessBroker:
        from amqtt.broker import Broker  # imported here: only the fallback path needs it

        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        broker = Broker(config)
        await broker.start()
        self._broker = broker
        logger.info("in-process amqtt broker listening on %s:%d", self.host, self.port)
        return self

    async def stop(self) -> None:
        if self._broker is not None:
            await self._broker.shutdown()  # type: ignore[attr-defined]
            self._broker = None
