"""The embedded broker, as a user starts it: `salespulse broker --port P`."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from salespulse.streams.tools.broker import free_port, port_open
from tests.conftest import REPO


def test_broker_command_serves_kafka_clients_and_stops_on_sigterm() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "salespulse.streams", "broker", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert f"127.0.0.1:{port}" in line, line
        producer = KafkaProducer(bootstrap_servers=f"127.0.0.1:{port}")
        producer.send("roundtrip", b"hello, tansu", partition=0).get(timeout=10)
        producer.close()
        consumer = KafkaConsumer(bootstrap_servers=f"127.0.0.1:{port}", enable_auto_commit=False)
        tp = TopicPartition("roundtrip", 0)
        consumer.assign([tp])
        consumer.seek(tp, 0)
        values: list[bytes] = []
        deadline = time.monotonic() + 10
        while not values and time.monotonic() < deadline:
            for records in consumer.poll(500).values():
                values += [r.value for r in records]
        consumer.close()
        assert values == [b"hello, tansu"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    assert not port_open("127.0.0.1", port)


def test_broker_command_stops_on_sigint() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "salespulse.streams", "broker", "--port", str(port)],
        stdout=subprocess.PIPE,
        cwd=REPO,
    )
    assert proc.stdout is not None
    assert "ready" in proc.stdout.readline().decode()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(15) == 0
    assert not port_open("127.0.0.1", port)
