"""Idempotent producers (RFC 0006 §4) with real clients.

- Under faults: a confluent-kafka producer with `enable.idempotence=true` writes with acks=all
  to a 3-node cluster while partition leaders are killed (SIGKILL) and restarted, or paused
  past the election timeout (its requests time out and are retried at the new leader). The
  history checker of test_nemesis.py then reads every partition back: 0 acknowledged records
  lost, 0 inconsistent, and, idempotence's promise, 0 written twice and each partition in the
  order the producer sent.
- Each client's idempotent producer, on one node: kafka-python 3 (idempotent by default),
  librdkafka and aiokafka with idempotence on.
"""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer
from confluent_kafka import Producer
from kafka import KafkaProducer

from cluster import Cluster
from support import CALL_TIMEOUT_S, FIRST_OFFSET, create_topic, read_all, unique_topic
from test_nemesis import PRODUCER_CONFIG, check, on_cluster, run_faults

FAULTS = ["kill", "pause", "kill", "pause"]
IDEMPOTENT = {**PRODUCER_CONFIG, "enable.idempotence": True}


def out_of_order(records: dict[int, list]) -> list[str]:
    """Partitions whose records are not in the order they were sent (`w-<sequence>`)."""
    bad = []
    for partition, log in records.items():
        sequences = [int(r.value[2:]) for r in log]
        if sequences != sorted(sequences):
            bad.append(f"partition {partition}")
    return bad


@pytest.mark.timeout(600)
def test_idempotent_producer_writes_each_record_once_through_leader_kills(tmp_path):
    on_cluster(tmp_path, run)


def run(cluster: Cluster) -> None:
    run = run_faults(cluster, "idempotence", FAULTS, IDEMPOTENT)
    history, records = run.history, run.records
    lost, inconsistent, duplicated = check(history, records)
    summary = (
        f"{'; '.join(run.done)}; sent {len(history.sent)}, acknowledged {len(history.acked)}, "
        f"unknown {len(history.unknown)}, in the log {sum(len(r) for r in records.values())}"
    )
    print(summary)
    assert not lost, f"{len(lost)} acknowledged records lost, first {lost[:5]}; {summary}"
    assert not inconsistent, f"{len(inconsistent)} inconsistencies: {inconsistent[:5]}; {summary}"
    assert not duplicated, f"{len(duplicated)} written twice: {duplicated.most_common(5)}; {summary}"
    assert not out_of_order(records), f"{out_of_order(records)} out of order; {summary}"
    assert len(history.acked) > 0, summary


def test_kafka_python_default_producer_is_idempotent(broker):
    name = unique_topic("idem-kp")
    create_topic(broker.bootstrap, name)
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap,
        request_timeout_ms=int(CALL_TIMEOUT_S * 1000),
        max_block_ms=int(CALL_TIMEOUT_S * 1000),
    )
    try:
        assert producer.config["enable_idempotence"] is True
        futures = [producer.send(name, value=f"v{i}".encode()) for i in range(50)]
        offsets = [future.get(timeout=CALL_TIMEOUT_S).offset for future in futures]
    finally:
        producer.close(timeout=CALL_TIMEOUT_S)
    assert offsets == sorted(offsets) and offsets[0] == FIRST_OFFSET
    values = [r.value for r in read_all(broker.bootstrap, name, 1)[0]]
    assert values == [f"v{i}".encode() for i in range(50)]


def test_confluent_idempotent_producer(broker):
    name = unique_topic("idem-ck")
    create_topic(broker.bootstrap, name)
    delivered: list = []
    producer = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True})
    for i in range(50):
        producer.produce(name, value=f"v{i}".encode(), on_delivery=lambda e, m: delivered.append(e))
    assert producer.flush(CALL_TIMEOUT_S) == 0
    assert delivered == [None] * 50
    values = [r.value for r in read_all(broker.bootstrap, name, 1)[0]]
    assert values == [f"v{i}".encode() for i in range(50)]


def test_aiokafka_idempotent_producer(broker):
    name = unique_topic("idem-aio")
    create_topic(broker.bootstrap, name)

    async def produce():
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=True)
        await asyncio.wait_for(producer.start(), CALL_TIMEOUT_S)
        try:
            sent = [await producer.send(name, f"v{i}".encode()) for i in range(50)]
            return [(await asyncio.wait_for(s, CALL_TIMEOUT_S)).offset for s in sent]
        finally:
            await asyncio.wait_for(producer.stop(), CALL_TIMEOUT_S)

    offsets = asyncio.run(produce())
    assert offsets == sorted(offsets) and offsets[0] == FIRST_OFFSET
    values = [r.value for r in read_all(broker.bootstrap, name, 1)[0]]
    assert values == [f"v{i}".encode() for i in range(50)]
