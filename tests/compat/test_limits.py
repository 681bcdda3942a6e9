"""The topic's `max.message.bytes` is enforced by the broker: a batch just under it is stored, a
record over it is refused with MESSAGE_TOO_LARGE (code 10), and the refusal leaves the log as
it was. The clients' own size limits are raised far above the topic's, so only the broker can
be the one refusing."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, Producer
from kafka import KafkaProducer
from kafka import errors as kafka_errors

from support import (
    CALL_TIMEOUT_S,
    FIRST_OFFSET,
    confluent_producer,
    create_topic,
    read_all,
    unique_topic,
    watermarks,
)

MAX_MESSAGE_BYTES = 100_000
# A record batch of one record adds about 80 bytes to the value (61 bytes of batch header, the
# record's varints, a one-byte key, 12 bytes of offset and length); 300 bytes of margin keeps the
# batch under the limit however the broker counts those.
UNDER_LIMIT_VALUE_BYTES = MAX_MESSAGE_BYTES - 300
OVER_LIMIT_VALUE_BYTES = MAX_MESSAGE_BYTES + 1
CLIENT_LIMIT_BYTES = 10_000_000


@pytest.fixture
def topic(broker) -> str:
    name = unique_topic("limits")
    create_topic(broker.bootstrap, name, config={"max.message.bytes": str(MAX_MESSAGE_BYTES)})
    return name


def confluent_send(producer: Producer, topic: str, value: bytes) -> tuple[KafkaError | None, int]:
    """Sends one record alone in its batch; returns the delivery error (None if stored) and the
    offset."""
    reports = []
    producer.produce(
        topic,
        key=b"k",
        value=value,
        partition=0,
        on_delivery=lambda e, m: reports.append((e, m.offset())),
    )
    assert producer.flush(timeout=CALL_TIMEOUT_S) == 0, "no delivery report in time"
    (report,) = reports
    return report


def test_confluent_kafka_record_over_topic_limit_is_message_too_large(broker, topic):
    config = {
        "bootstrap.servers": broker.bootstrap,
        "acks": "all",
        "compression.type": "none",
        "linger.ms": 0,
        "batch.num.messages": 1,
        "message.max.bytes": CLIENT_LIMIT_BYTES,
        # A refused record is not worth retrying; this also keeps the test short.
        "retries": 0,
        "message.timeout.ms": int(CALL_TIMEOUT_S * 1000),
    }
    with confluent_producer(config) as producer:
        error, offset = confluent_send(producer, topic, b"u" * UNDER_LIMIT_VALUE_BYTES)
        assert error is None, (
            f"a {UNDER_LIMIT_VALUE_BYTES}-byte record under the limit was refused: {error}"
        )
        assert offset == FIRST_OFFSET

        error, _ = confluent_send(producer, topic, b"o" * OVER_LIMIT_VALUE_BYTES)
        assert error is not None, "a record over max.message.bytes was stored"
        assert error.code() == KafkaError.MSG_SIZE_TOO_LARGE, error

        # The log is unharmed: the next small record gets the next offset, and only the
        # accepted records are there.
        error, offset = confluent_send(producer, topic, b"small")
        assert (error, offset) == (None, FIRST_OFFSET + 1)
    assert watermarks(broker.bootstrap, topic, 1) == {0: (0, FIRST_OFFSET + 2)}
    values = [r.value for r in read_all(broker.bootstrap, topic, 1)[0]]
    assert values == [b"u" * UNDER_LIMIT_VALUE_BYTES, b"small"]


def test_kafka_python_record_over_topic_limit_is_message_too_large(broker, topic):
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap,
        acks="all",
        linger_ms=0,
        max_request_size=CLIENT_LIMIT_BYTES,
        retries=0,
        request_timeout_ms=int(CALL_TIMEOUT_S * 1000),
        max_block_ms=int(CALL_TIMEOUT_S * 1000),
    )
    try:
        under = producer.send(topic, key=b"k", value=b"u" * UNDER_LIMIT_VALUE_BYTES, partition=0)
        assert under.get(timeout=CALL_TIMEOUT_S).offset == FIRST_OFFSET
        over = producer.send(topic, key=b"k", value=b"o" * OVER_LIMIT_VALUE_BYTES, partition=0)
        with pytest.raises(kafka_errors.MessageSizeTooLargeError):
            over.get(timeout=CALL_TIMEOUT_S)
        small = producer.send(topic, key=b"k", value=b"small", partition=0)
        assert small.get(timeout=CALL_TIMEOUT_S).offset == FIRST_OFFSET + 1
    finally:
        producer.close(timeout=CALL_TIMEOUT_S)
