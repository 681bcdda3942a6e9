"""The client settings the README's "Client settings" section documents, pinned against each
client's defaults: every client's default producer works, idempotent (test_idempotence.py) or
not, with any acks; a transactional producer is refused at once, with a fatal error. Consumer
groups work (test_groups.py)."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaProducer
from confluent_kafka import KafkaError, KafkaException, Producer
from kafka import KafkaProducer

from support import (
    CALL_TIMEOUT_S,
    FIRST_OFFSET,
    confluent_producer,
    create_topic,
    read_all,
    unique_topic,
)

# Seconds within which a refused setting must fail: fast, not after a client timeout.
FAIL_FAST_S = 10.0


@pytest.fixture(scope="module")
def topic(broker) -> str:
    """A topic with one record in partition 0, for the consumers to (fail to) read."""
    name = unique_topic("settings")
    create_topic(broker.bootstrap, name)
    delivered: list = []
    with confluent_producer({"bootstrap.servers": broker.bootstrap, "acks": "all"}) as producer:
        producer.produce(name, value=b"seed", on_delivery=lambda e, m: delivered.append(e))
        producer.flush(CALL_TIMEOUT_S)
    assert delivered == [None], delivered
    return name


@pytest.mark.parametrize("acks", [1, "all"], ids=lambda acks: f"acks={acks}")
def test_kafka_python_producer_without_idempotence(broker, acks):
    name = unique_topic(f"settings-kp-{acks}")
    create_topic(broker.bootstrap, name)
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap,
        acks=acks,
        enable_idempotence=False,
        request_timeout_ms=int(CALL_TIMEOUT_S * 1000),
        max_block_ms=int(CALL_TIMEOUT_S * 1000),
    )
    try:
        metadata = producer.send(name, value=b"stored").get(timeout=CALL_TIMEOUT_S)
    finally:
        producer.close(timeout=CALL_TIMEOUT_S)
    assert metadata.offset == FIRST_OFFSET
    assert [r.value for r in read_all(broker.bootstrap, name, 1)[0]] == [b"stored"]


def test_confluent_default_producer_works(broker):
    """librdkafka's default is enable.idempotence=false."""
    name = unique_topic("settings-ck-default")
    create_topic(broker.bootstrap, name)
    delivered: list = []
    with confluent_producer({"bootstrap.servers": broker.bootstrap}) as producer:
        producer.produce(name, value=b"stored", on_delivery=lambda e, m: delivered.append(e))
        assert producer.flush(CALL_TIMEOUT_S) == 0
    assert delivered == [None]
    assert [r.value for r in read_all(broker.bootstrap, name, 1)[0]] == [b"stored"]


def test_confluent_transactional_producer_fails_fast(broker):
    config = {"bootstrap.servers": broker.bootstrap, "transactional.id": "settings-txn"}
    started = time.monotonic()
    producer = Producer(config)
    with pytest.raises(KafkaException) as raised:
        producer.init_transactions(CALL_TIMEOUT_S)
    # The fatal error stays the producer's: closing it raises it again.
    with pytest.raises(KafkaException):
        producer.close()
    error = raised.value.args[0]
    assert error.code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, error
    assert time.monotonic() - started < FAIL_FAST_S


def test_aiokafka_default_producer_works(broker):
    """aiokafka's default is enable_idempotence=False."""
    name = unique_topic("settings-aio-default")
    create_topic(broker.bootstrap, name)

    async def produce():
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        await asyncio.wait_for(producer.start(), CALL_TIMEOUT_S)
        try:
            return await asyncio.wait_for(producer.send_and_wait(name, b"stored"), CALL_TIMEOUT_S)
        finally:
            await asyncio.wait_for(producer.stop(), CALL_TIMEOUT_S)

    assert asyncio.run(produce()).offset == FIRST_OFFSET
