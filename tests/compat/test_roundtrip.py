"""100k records with keys, headers and timestamps through confluent-kafka (librdkafka) and back:
no loss, no duplicates, per-partition order, every byte equal. And the order of pipelined produce
requests on one connection, from librdkafka and kafka-python."""

from __future__ import annotations

import itertools

import pytest
from confluent_kafka import KafkaError

from support import (
    FIRST_OFFSET,
    Deadline,
    assert_contiguous,
    confluent_producer,
    create_topic,
    read_all,
    unique_topic,
)

RECORD_COUNT = 100_000
PARTITIONS = 3
# A fixed base for the records' create timestamps, so the test can compare them exactly.
BASE_TIMESTAMP_MS = 1_700_000_000_000


def key(i: int) -> bytes:
    return f"key-{i:06d}".encode()


def value(i: int) -> bytes:
    # Varied sizes (20 to ~200 bytes), not all alike, so batches differ in shape.
    return (f"value-{i}-" + "x" * (i % 191)).encode()


def headers(i: int) -> list[tuple[str, bytes | None]]:
    result = [("seq", str(i).encode()), ("source", b"compat")]
    if i % 7 == 0:
        result.append(("nullable", None))  # a header with a null value
    if i % 11 == 0:
        result.append(("seq", b"repeated"))  # header keys may repeat, in order
    return result


@pytest.mark.timeout(600)
def test_100k_records_roundtrip_with_keys_and_headers(broker):
    topic = unique_topic("roundtrip")
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)

    config = {
        "bootstrap.servers": broker.bootstrap,
        "acks": "all",
        "linger.ms": 20,
        "batch.size": 256 * 1024,
        "compression.type": "none",
        "message.timeout.ms": 120_000,
    }
    # delivered[i] = (partition, offset) from the delivery report; errors collects the failures.
    delivered: dict[int, tuple[int, int]] = {}
    errors: list[tuple[int, KafkaError]] = []

    def on_delivery(error, message):
        i = int(message.key()[4:])
        if error is not None:
            errors.append((i, error))
        else:
            delivered[i] = (message.partition(), message.offset())

    deadline = Deadline(300, f"producing {RECORD_COUNT} records")
    with confluent_producer(config) as producer:
        for i in range(RECORD_COUNT):
            while True:
                try:
                    producer.produce(
                        topic,
                        key=key(i),
                        value=value(i),
                        headers=headers(i),
                        timestamp=BASE_TIMESTAMP_MS + i,
                        on_delivery=on_delivery,
                    )
                    break
                except BufferError:
                    # The client's queue is full: serve delivery reports until it has room.
                    deadline.check(f"{len(delivered)} delivered, local queue full")
                    producer.poll(0.1)
            producer.poll(0)
        remaining = producer.flush(timeout=deadline.remaining())
    assert remaining == 0, f"{remaining} records still undelivered after the deadline"
    assert not errors, f"{len(errors)} delivery errors, first: {errors[:5]}"
    assert len(delivered) == RECORD_COUNT

    # What each partition should hold, in offset order.
    expected: dict[int, list[int]] = {p: [] for p in range(PARTITIONS)}
    for i, (partition, _offset) in sorted(delivered.items(), key=lambda item: item[1]):
        expected[partition].append(i)
    assert all(expected.values()), f"some partition got no record: {expected.keys()}"

    records = read_all(broker.bootstrap, topic, PARTITIONS, timeout_s=180)

    for partition in range(PARTITIONS):
        got = records[partition]
        want = expected[partition]
        assert len(got) == len(want), (
            f"partition {partition}: read {len(got)} records, {len(want)} were acknowledged"
        )
        assert_contiguous(got, low=FIRST_OFFSET)
        # Acknowledged offsets are the offsets the records are read back at.
        assert [r.offset for r in got] == [delivered[i][1] for i in want]
        # Records of one partition come back in the order they were sent.
        descents = [(a, b) for a, b in itertools.pairwise(want) if a > b]
        assert not descents, (
            f"partition {partition}: send order not kept {len(descents)} times; first pairs of "
            f"neighbouring records (stored first, stored next) by send number: {descents[:5]}"
        )
        for record, i in zip(got, want, strict=True):
            assert record.key == key(i), f"partition {partition} offset {record.offset}"
            assert record.value == value(i), f"partition {partition} offset {record.offset}"
            assert record.headers == headers(i), f"partition {partition} offset {record.offset}"
            assert record.timestamp_ms == BASE_TIMESTAMP_MS + i


PIPELINED_RECORD_COUNT = 5000


@pytest.mark.parametrize("client", ["confluent-kafka", "kafka-python"])
def test_pipelined_produce_requests_keep_send_order(broker, client):
    """Kafka processes the requests of one connection one at a time, in order, so a producer
    with several produce requests in flight (and no retries) gets its records stored in send
    order. Small batches, no linger and 5 requests in flight make many pipelined requests."""
    topic = unique_topic(f"pipelined-{client}")
    create_topic(broker.bootstrap, topic)
    offsets: list[int] = []
    if client == "confluent-kafka":
        config = {
            "bootstrap.servers": broker.bootstrap,
            "acks": "all",
            "linger.ms": 0,
            "batch.num.messages": 10,
            "max.in.flight.requests.per.connection": 5,
            "retries": 0,
            "message.timeout.ms": 60_000,
        }
        errors = []

        def on_delivery(error, message):
            if error is not None:
                errors.append(error)
            else:
                offsets.append((int(message.value()), message.offset()))

        with confluent_producer(config) as producer:
            for i in range(PIPELINED_RECORD_COUNT):
                producer.produce(topic, value=b"%d" % i, partition=0, on_delivery=on_delivery)
                producer.poll(0)
            assert producer.flush(timeout=60) == 0
        assert not errors, errors[:5]
        offsets = [offset for _, offset in sorted(offsets)]
    else:
        from kafka import KafkaProducer

        producer = KafkaProducer(
            bootstrap_servers=broker.bootstrap,
            acks="all",
            linger_ms=0,
            batch_size=512,
            max_in_flight_requests_per_connection=5,
            retries=0,
            request_timeout_ms=30_000,
            max_block_ms=30_000,
        )
        try:
            futures = [
                producer.send(topic, value=b"%d" % i, partition=0)
                for i in range(PIPELINED_RECORD_COUNT)
            ]
            producer.flush(timeout=60)
            offsets = [future.get(timeout=30).offset for future in futures]
        finally:
            producer.close(timeout=30)

    misplaced = [(i, offset) for i, offset in enumerate(offsets) if offset != FIRST_OFFSET + i]
    assert not misplaced, (
        f"{len(misplaced)} of {PIPELINED_RECORD_COUNT} records stored out of send order; "
        f"first (sent as, stored at): {misplaced[:10]}"
    )
    values = [r.value for r in read_all(broker.bootstrap, topic, 1)[0]]
    assert values == [b"%d" % i for i in range(PIPELINED_RECORD_COUNT)]
