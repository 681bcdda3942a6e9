"""Produce with acks 0, 1 and all from kafka-python and aiokafka, then read everything back.

acks=1 and acks=all must report offsets 0..n-1; acks=0 gets no answer, so the records are
checked by consuming them (with a bounded wait). aiokafka's consumer reads one topic back too."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition as AioTopicPartition
from kafka import KafkaProducer

from support import (
    CALL_TIMEOUT_S,
    FIRST_OFFSET,
    Deadline,
    assert_contiguous,
    create_topic,
    read_all,
    unique_topic,
)

RECORD_COUNT = 500
ACKS = [0, 1, "all"]


def record(i: int) -> tuple[bytes, bytes]:
    return f"k{i}".encode(), f"v{i}".encode()


def check_topic(bootstrap: str, topic: str) -> None:
    """The topic holds exactly the RECORD_COUNT records, in order, once each."""
    records = read_all(bootstrap, topic, 1, min_count=RECORD_COUNT)[0]
    assert len(records) == RECORD_COUNT, f"read {len(records)} records, produced {RECORD_COUNT}"
    assert_contiguous(records)
    assert [(r.key, r.value) for r in records] == [record(i) for i in range(RECORD_COUNT)]


@pytest.mark.parametrize("acks", ACKS, ids=lambda acks: f"acks={acks}")
def test_kafka_python_producer(broker, acks):
    topic = unique_topic(f"acks-kp-{acks}")
    create_topic(broker.bootstrap, topic)
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap,
        acks=acks,
        linger_ms=5,
        # kafka-python 3 enables idempotence by default, which needs acks=all.
        enable_idempotence=False,
        request_timeout_ms=int(CALL_TIMEOUT_S * 1000),
        max_block_ms=int(CALL_TIMEOUT_S * 1000),
    )
    try:
        futures = [
            producer.send(topic, key=k, value=v, partition=0)
            for k, v in map(record, range(RECORD_COUNT))
        ]
        producer.flush(timeout=CALL_TIMEOUT_S)
        deadline = Deadline(CALL_TIMEOUT_S, "kafka-python send results")
        metadata = [future.get(timeout=max(0.1, deadline.remaining())) for future in futures]
    finally:
        producer.close(timeout=CALL_TIMEOUT_S)
    if acks != 0:
        assert [m.offset for m in metadata] == list(range(FIRST_OFFSET, FIRST_OFFSET + RECORD_COUNT))
    check_topic(broker.bootstrap, topic)


@pytest.mark.parametrize("acks", ACKS, ids=lambda acks: f"acks={acks}")
def test_aiokafka_producer(broker, acks):
    topic = unique_topic(f"acks-aio-{acks}")
    create_topic(broker.bootstrap, topic)

    async def produce():
        producer = AIOKafkaProducer(
            bootstrap_servers=broker.bootstrap,
            acks=acks,
            linger_ms=5,
            request_timeout_ms=int(CALL_TIMEOUT_S * 1000),
        )
        await asyncio.wait_for(producer.start(), CALL_TIMEOUT_S)
        try:
            futures = [
                await producer.send(topic, key=k, value=v, partition=0)
                for k, v in map(record, range(RECORD_COUNT))
            ]
            return await asyncio.wait_for(asyncio.gather(*futures), CALL_TIMEOUT_S)
        finally:
            await asyncio.wait_for(producer.stop(), CALL_TIMEOUT_S)

    metadata = asyncio.run(produce())
    if acks != 0:
        assert [m.offset for m in metadata] == list(range(FIRST_OFFSET, FIRST_OFFSET + RECORD_COUNT))
    check_topic(broker.bootstrap, topic)


def test_aiokafka_consumer_reads_back(broker):
    """aiokafka's consumer (assign, no group) reads what confluent-kafka's would."""
    topic = unique_topic("acks-aio-consumer")
    create_topic(broker.bootstrap, topic)

    async def roundtrip():
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        await asyncio.wait_for(producer.start(), CALL_TIMEOUT_S)
        try:
            batch = [
                await producer.send(topic, key=k, value=v, partition=0)
                for k, v in map(record, range(RECORD_COUNT))
            ]
            await asyncio.wait_for(asyncio.gather(*batch), CALL_TIMEOUT_S)
        finally:
            await asyncio.wait_for(producer.stop(), CALL_TIMEOUT_S)

        consumer = AIOKafkaConsumer(
            bootstrap_servers=broker.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="none",
            fetch_max_wait_ms=100,
            request_timeout_ms=int(CALL_TIMEOUT_S * 1000),
        )
        await asyncio.wait_for(consumer.start(), CALL_TIMEOUT_S)
        try:
            tp = AioTopicPartition(topic, 0)
            consumer.assign([tp])
            await asyncio.wait_for(consumer.seek_to_beginning(tp), CALL_TIMEOUT_S)
            received = []
            deadline = Deadline(CALL_TIMEOUT_S, f"{RECORD_COUNT} records through aiokafka")
            while len(received) < RECORD_COUNT:
                deadline.check(f"{len(received)} read")
                batches = await consumer.getmany(tp, timeout_ms=500)
                received.extend(batches.get(tp, []))
            return received
        finally:
            await asyncio.wait_for(consumer.stop(), CALL_TIMEOUT_S)

    received = asyncio.run(roundtrip())
    assert [m.offset for m in received] == list(range(FIRST_OFFSET, FIRST_OFFSET + RECORD_COUNT))
    assert [(m.key, m.value) for m in received] == [record(i) for i in range(RECORD_COUNT)]
