"""ListOffsets (earliest, latest, by timestamp) through three client APIs, and fetching at or
past the end of a partition: at the end is no error, past it is OFFSET_OUT_OF_RANGE."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import OffsetSpec
from kafka import KafkaConsumer
from kafka import TopicPartition as KafkaPythonTopicPartition
from kafka import errors as kafka_errors

from support import (
    CALL_TIMEOUT_S,
    FIRST_OFFSET,
    Deadline,
    admin_client,
    confluent_producer,
    consumer_config,
    create_topic,
    unique_topic,
)

RECORD_COUNT = 10
BASE_TIMESTAMP_MS = 1_700_000_000_000
# Record i has create time BASE_TIMESTAMP_MS + i * STEP_MS.
STEP_MS = 1000
PAST_END = 1000


@pytest.fixture(scope="module")
def topic(broker) -> str:
    """A one-partition topic with RECORD_COUNT records at known timestamps."""
    name = unique_topic("offsets")
    create_topic(broker.bootstrap, name)
    config = {"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 0}
    with confluent_producer(config) as producer:
        for i in range(RECORD_COUNT):
            timestamp = BASE_TIMESTAMP_MS + i * STEP_MS
            producer.produce(name, value=b"%d" % i, partition=0, timestamp=timestamp)
        assert producer.flush(timeout=CALL_TIMEOUT_S) == 0
    return name


# Timestamp asked for -> the offset ListOffsets must answer: the first record at or after it.
# Record i is at offset FIRST_OFFSET + i; the log ends at END.
BY_TIMESTAMP = [
    (BASE_TIMESTAMP_MS - 5 * STEP_MS, FIRST_OFFSET),
    (BASE_TIMESTAMP_MS, FIRST_OFFSET),
    (BASE_TIMESTAMP_MS + 3 * STEP_MS, FIRST_OFFSET + 3),
    (BASE_TIMESTAMP_MS + 3 * STEP_MS + 500, FIRST_OFFSET + 4),
    (BASE_TIMESTAMP_MS + (RECORD_COUNT - 1) * STEP_MS, FIRST_OFFSET + RECORD_COUNT - 1),
]
END = FIRST_OFFSET + RECORD_COUNT
AFTER_LAST = BASE_TIMESTAMP_MS + RECORD_COUNT * STEP_MS


def test_confluent_consumer_watermarks_and_offsets_for_times(broker, topic):
    consumer = Consumer(consumer_config(broker.bootstrap))
    try:
        tp = TopicPartition(topic, 0)
        assert consumer.get_watermark_offsets(tp, timeout=CALL_TIMEOUT_S, cached=False) == (
            0,
            END,
        )
        for timestamp, offset in BY_TIMESTAMP:
            (answer,) = consumer.offsets_for_times(
                [TopicPartition(topic, 0, timestamp)], timeout=CALL_TIMEOUT_S
            )
            assert answer.error is None, answer.error
            assert answer.offset == offset, f"timestamp {timestamp}"
        # No record at or after the timestamp: Kafka answers offset -1 (librdkafka's OFFSET_END).
        (answer,) = consumer.offsets_for_times(
            [TopicPartition(topic, 0, AFTER_LAST)], timeout=CALL_TIMEOUT_S
        )
        assert answer.offset == -1
    finally:
        consumer.close()


def test_confluent_admin_list_offsets(broker, topic):
    admin = admin_client(broker.bootstrap)
    tp = TopicPartition(topic, 0)

    def ask(spec):
        return admin.list_offsets({tp: spec}, request_timeout=CALL_TIMEOUT_S)[tp].result(
            timeout=CALL_TIMEOUT_S
        )

    assert ask(OffsetSpec.earliest()).offset == 0
    assert ask(OffsetSpec.latest()).offset == END
    answer = ask(OffsetSpec.for_timestamp(BASE_TIMESTAMP_MS + 3 * STEP_MS + 500))
    assert (answer.offset, answer.timestamp) == (FIRST_OFFSET + 4, BASE_TIMESTAMP_MS + 4 * STEP_MS)
    # The record with the largest timestamp (ListOffsets v7+, timestamp -3).
    newest = ask(OffsetSpec.max_timestamp())
    assert (newest.offset, newest.timestamp) == (
        END - 1,
        BASE_TIMESTAMP_MS + (RECORD_COUNT - 1) * STEP_MS,
    )


def test_kafka_python_offsets(broker, topic):
    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        group_id=None,
        request_timeout_ms=int(CALL_TIMEOUT_S * 1000),
    )
    try:
        tp = KafkaPythonTopicPartition(topic, 0)
        timeout_ms = int(CALL_TIMEOUT_S * 1000)
        assert consumer.beginning_offsets([tp], timeout_ms=timeout_ms) == {tp: 0}
        assert consumer.end_offsets([tp], timeout_ms=timeout_ms) == {tp: END}
        for timestamp, offset in BY_TIMESTAMP:
            answer = consumer.offsets_for_times({tp: timestamp}, timeout_ms=timeout_ms)[tp]
            assert answer is not None and answer.offset == offset, (
                f"timestamp {timestamp}: {answer}"
            )
            assert answer.timestamp == BASE_TIMESTAMP_MS + (offset - FIRST_OFFSET) * STEP_MS
        assert consumer.offsets_for_times({tp: AFTER_LAST}, timeout_ms=timeout_ms)[tp] is None
    finally:
        consumer.close(autocommit=False)


def test_confluent_fetch_at_end_is_end_of_partition(broker, topic):
    consumer = Consumer(consumer_config(broker.bootstrap))
    try:
        consumer.assign([TopicPartition(topic, 0, END)])
        deadline = Deadline(CALL_TIMEOUT_S, "end-of-partition event")
        while True:
            deadline.check()
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            assert error is not None, f"a record past the end: offset {message.offset()}"
            assert error.code() == KafkaError._PARTITION_EOF, error
            assert message.offset() == END
            return
    finally:
        consumer.close()


def test_confluent_fetch_past_end_is_offset_out_of_range(broker, topic):
    consumer = Consumer(consumer_config(broker.bootstrap, **{"auto.offset.reset": "error"}))
    try:
        consumer.assign([TopicPartition(topic, 0, PAST_END)])
        deadline = Deadline(CALL_TIMEOUT_S, "an offset-out-of-range error")
        while True:
            deadline.check()
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            assert error is not None, f"a record past the end: offset {message.offset()}"
            # librdkafka turns the broker's OFFSET_OUT_OF_RANGE into _AUTO_OFFSET_RESET when the
            # reset policy is `error`; its text names the broker error.
            assert error.code() in (
                KafkaError._AUTO_OFFSET_RESET,
                KafkaError.OFFSET_OUT_OF_RANGE,
            ), error
            assert "out of range" in error.str().lower(), error
            return
    finally:
        consumer.close()


def test_kafka_python_fetch_past_end_raises_offset_out_of_range(broker, topic):
    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="none",
        fetch_max_wait_ms=100,
        request_timeout_ms=int(CALL_TIMEOUT_S * 1000),
    )
    try:
        tp = KafkaPythonTopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, PAST_END)
        deadline = Deadline(CALL_TIMEOUT_S, "OffsetOutOfRangeError from kafka-python")
        with pytest.raises(kafka_errors.OffsetOutOfRangeError):
            while True:
                deadline.check()
                records = consumer.poll(timeout_ms=500)
                assert not records, f"records past the end: {records}"
    finally:
        consumer.close(autocommit=False)
