"""Every codec (none, gzip, snappy, lz4, zstd) from two independent implementations:
librdkafka (confluent-kafka) and pure Python (kafka-python). Each producer's records are read
back by the *other* client, so both clients' decoders see what the broker stored and served. A
topic-level `compression.type` makes the broker recompress: both clients read those batches too."""

from __future__ import annotations

import pytest
from kafka import KafkaProducer

from support import (
    CALL_TIMEOUT_S,
    FIRST_OFFSET,
    Deadline,
    assert_contiguous,
    confluent_producer,
    create_topic,
    kafka_python_read,
    read_all,
    unique_topic,
)

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
RECORD_COUNT = 2000


def record(i: int) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """Key, value and headers of record `i`: compressible values, several records per batch."""
    value = (f"record {i} " + "abcdefgh" * (1 + i % 50)).encode()
    return f"k{i}".encode(), value, [("i", str(i).encode())]


def check(records, count: int) -> None:
    assert len(records) == count, f"read {len(records)} records, {count} were produced"
    assert_contiguous(records)
    for i, got in enumerate(records):
        key, value, headers = record(i)
        assert (got.key, got.value, got.headers) == (key, value, headers), f"record {i}"


def confluent_produce_records(bootstrap: str, topic: str, codec: str) -> None:
    """Produces RECORD_COUNT records to partition 0 with librdkafka's `codec`, acks=all, one
    request at a time (the order of pipelined requests is test_roundtrip.py's), and checks that
    every one was delivered."""
    config = {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "compression.type": codec,
        "linger.ms": 50,
        "max.in.flight.requests.per.connection": 1,
        "message.timeout.ms": int(CALL_TIMEOUT_S * 1000),
    }
    errors = []

    def on_delivery(error, _message):
        if error is not None:
            errors.append(error)

    with confluent_producer(config) as producer:
        for i in range(RECORD_COUNT):
            key, value, headers = record(i)
            producer.produce(
                topic, key=key, value=value, headers=headers, partition=0, on_delivery=on_delivery
            )
        assert producer.flush(timeout=CALL_TIMEOUT_S) == 0, "records left undelivered"
    assert not errors, f"delivery errors: {errors[:5]}"


@pytest.mark.parametrize("codec", CODECS)
def test_confluent_kafka_producer(broker, codec):
    topic = unique_topic(f"codec-ck-{codec}")
    create_topic(broker.bootstrap, topic)
    confluent_produce_records(broker.bootstrap, topic, codec)

    # Read back by the other implementation.
    check(kafka_python_read(broker.bootstrap, topic, 0, RECORD_COUNT), RECORD_COUNT)


@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_producer(broker, codec):
    topic = unique_topic(f"codec-kp-{codec}")
    create_topic(broker.bootstrap, topic)
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap,
        acks="all",
        compression_type=None if codec == "none" else codec,
        linger_ms=50,
        # One request at a time: this test is about codecs; the order of pipelined requests is
        # test_roundtrip.py's.
        max_in_flight_requests_per_connection=1,
        request_timeout_ms=int(CALL_TIMEOUT_S * 1000),
        max_block_ms=int(CALL_TIMEOUT_S * 1000),
    )
    try:
        futures = []
        for i in range(RECORD_COUNT):
            key, value, headers = record(i)
            futures.append(producer.send(topic, key=key, value=value, headers=headers, partition=0))
        producer.flush(timeout=CALL_TIMEOUT_S)
        deadline = Deadline(CALL_TIMEOUT_S, "kafka-python acknowledgements")
        offsets = [future.get(timeout=max(0.1, deadline.remaining())).offset for future in futures]
    finally:
        producer.close(timeout=CALL_TIMEOUT_S)
    assert offsets == list(range(FIRST_OFFSET, FIRST_OFFSET + RECORD_COUNT))

    # Read back by the other implementation.
    records = read_all(broker.bootstrap, topic, 1)[0]
    check(records, RECORD_COUNT)


@pytest.mark.parametrize("topic_codec", ["zstd", "uncompressed", "lz4"])
def test_topic_compression_type_recompresses_gzip_batches(broker, topic_codec):
    """A topic-level `compression.type` (accepted since issue 9): librdkafka produces gzip, the
    broker stores the batches recompressed to the topic's codec, and both clients decode them
    with every key, value, header and offset intact."""
    topic = unique_topic(f"topic-codec-{topic_codec}")
    create_topic(broker.bootstrap, topic, config={"compression.type": topic_codec})
    confluent_produce_records(broker.bootstrap, topic, "gzip")

    check(kafka_python_read(broker.bootstrap, topic, 0, RECORD_COUNT), RECORD_COUNT)
    check(read_all(broker.bootstrap, topic, 1)[0], RECORD_COUNT)
