"""Shared helpers of the compat suite: deadlines, unique topic names, topic creation and reading
a topic back in full, all with bounded waits.

Nothing here sleeps to synchronize: every wait is a poll of a real condition (a metadata answer,
a consumer event) up to a deadline, and a missed deadline fails the test with what was seen.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

# The group id of consumers that only assign: librdkafka requires `group.id` for any consumer;
# these never subscribe or commit, so the group coordinator hears of it only through the
# coordinator lookups librdkafka makes on its own (test_groups.py tests the groups).
UNUSED_GROUP_ID = "cairn-compat-unused"

# Where a new partition's first record lands: every partition is a Raft group, and its log
# starts with the group's membership entry (offset 0) and its first leader's blank entry
# (offset 1), both control batches that consumers skip.
FIRST_OFFSET = 2

# Seconds a client call that talks to the broker may take before the test fails.
CALL_TIMEOUT_S = 30.0


class Deadline:
    """A point in time, `seconds` from now, that a polling loop must not pass."""

    def __init__(self, seconds: float, what: str):
        self.what = what
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.end

    def check(self, detail: str = "") -> None:
        """Fails the test if the deadline has passed."""
        if self.expired():
            suffix = f": {detail}" if detail else ""
            raise AssertionError(
                f"timed out after {self.seconds:.0f}s waiting for {self.what}{suffix}"
            )


def unique_topic(prefix: str) -> str:
    """A topic name no other test (or earlier run on the same data dir) uses."""
    return f"compat-{prefix}-{uuid.uuid4().hex[:12]}"


@contextlib.contextmanager
def confluent_producer(config: dict) -> Iterator[Producer]:
    """A confluent-kafka Producer closed on the way out. Whatever it still holds (only when the
    test already failed) is dropped first, so closing does not wait, and no producer of a
    finished test keeps reconnecting to a stopped broker."""
    producer = Producer(config)
    try:
        yield producer
    finally:
        producer.purge()
        producer.close()


def admin_client(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000})


def create_topic(
    bootstrap: str,
    name: str,
    partitions: int = 1,
    config: dict[str, str] | None = None,
    replicas: int = 1,
) -> None:
    """Creates topic `name` through CreateTopics and waits until metadata shows every partition
    with a leader."""
    admin = admin_client(bootstrap)
    topic = NewTopic(
        name, num_partitions=partitions, replication_factor=replicas, config=config or {}
    )
    futures = admin.create_topics(
        [topic],
        operation_timeout=CALL_TIMEOUT_S,
        request_timeout=CALL_TIMEOUT_S,
    )
    futures[name].result(timeout=CALL_TIMEOUT_S)
    wait_for_partitions(admin, name, partitions)


def wait_for_partitions(admin: AdminClient, name: str, partitions: int) -> None:
    """Polls metadata until topic `name` has `partitions` partitions, each with a leader."""
    deadline = Deadline(CALL_TIMEOUT_S, f"topic {name} with {partitions} led partitions")
    seen = None
    while True:
        metadata = admin.list_topics(topic=name, timeout=max(1.0, deadline.remaining()))
        topic = metadata.topics.get(name)
        if topic is not None and topic.error is None:
            seen = {p.id: p.leader for p in topic.partitions.values()}
            if len(seen) == partitions and all(leader >= 0 for leader in seen.values()):
                return
        else:
            seen = topic.error if topic is not None else "absent"
        deadline.check(f"last seen {seen}")


@dataclass(frozen=True)
class Record:
    """One record as a consumer returned it."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    timestamp_ms: int | None = None


def watermarks(bootstrap: str, topic: str, partitions: int) -> dict[int, tuple[int, int]]:
    """`(low, high)` watermark of every partition, asked of the broker (ListOffsets)."""
    consumer = Consumer(consumer_config(bootstrap))
    try:
        return _watermarks(consumer, topic, partitions, Deadline(60.0, f"watermarks of {topic}"))
    finally:
        consumer.close()


def _watermarks(
    consumer: Consumer, topic: str, partitions: int, deadline: Deadline
) -> dict[int, tuple[int, int]]:
    """Each partition's (low, high) watermarks, asked again while the answer is transient: a
    node just back from a fault may not know the topic's leaders yet."""
    transient = (KafkaError._UNKNOWN_PARTITION, KafkaError._TIMED_OUT)
    marks = {}
    for p in range(partitions):
        while p not in marks:
            try:
                marks[p] = consumer.get_watermark_offsets(
                    TopicPartition(topic, p), timeout=CALL_TIMEOUT_S, cached=False
                )
            except KafkaException as error:
                code = error.args[0].code()
                if code not in transient and not error.args[0].retriable():
                    raise
                deadline.check(f"watermarks of partition {p}: {error}")
                time.sleep(0.2)
    return marks


def consumer_config(bootstrap: str, **extra) -> dict:
    """confluent-kafka consumer settings for assign()-only use: no subscription, no commits."""
    config = {
        "bootstrap.servers": bootstrap,
        "group.id": UNUSED_GROUP_ID,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "error",
        "enable.partition.eof": True,
        "socket.timeout.ms": 10000,
        "fetch.wait.max.ms": 100,
    }
    config.update(extra)
    return config


def group_consumer(bootstrap: str, group: str, **extra) -> Consumer:
    """A confluent-kafka consumer of `group` that commits only when told: a 10 s session,
    heartbeats every 500 ms, short fetch waits; `extra` settings on top."""
    config = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 500,
        "fetch.wait.max.ms": 100,
    }
    config.update(extra)
    return Consumer(config)


def read_all(
    bootstrap: str, topic: str, partitions: int, timeout_s: float = 60.0, min_count: int = 0
) -> dict[int, list[Record]]:
    """Every record of `topic`, per partition in offset order, read with a confluent-kafka
    consumer assigned at the log start of each partition.

    Reads up to each partition's high watermark (ListOffsets). With `min_count`, keeps reading
    (the consumer's fetches long-poll for new data) until at least that many records arrived in
    all, then up to the high watermarks asked again: for acks=0, where the producer gets no
    answer to wait for.
    """
    deadline = Deadline(timeout_s, f"all records of {topic}")
    consumer = Consumer(consumer_config(bootstrap))
    try:
        marks = _watermarks(consumer, topic, partitions, deadline)
        consumer.assign([TopicPartition(topic, p, marks[p][0]) for p in range(partitions)])
        records: dict[int, list[Record]] = {p: [] for p in range(partitions)}
        # The offset each partition has been read up to (exclusive).
        position = {p: marks[p][0] for p in range(partitions)}
        while True:
            total = sum(len(r) for r in records.values())
            if total >= min_count and all(position[p] >= marks[p][1] for p in position):
                fresh = _watermarks(consumer, topic, partitions, deadline)
                if all(position[p] >= fresh[p][1] for p in position):
                    return records
                marks = fresh
            deadline.check(
                f"read { ({p: len(r) for p, r in records.items()}) } (at least {min_count} "
                f"wanted), positions {position}, watermarks {marks}"
            )
            for message in consumer.consume(num_messages=10000, timeout=0.5):
                error = message.error()
                partition = message.partition()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        # The offset of an end-of-partition event is the high watermark.
                        position[partition] = max(position[partition], message.offset())
                        continue
                    raise KafkaException(error)
                records[partition].append(to_record(message))
                position[partition] = message.offset() + 1
    finally:
        consumer.close()


def to_record(message) -> Record:
    """A confluent-kafka `Message` as a `Record`."""
    timestamp_type, timestamp = message.timestamp()
    return Record(
        partition=message.partition(),
        offset=message.offset(),
        key=message.key(),
        value=message.value(),
        headers=list(message.headers() or []),
        timestamp_ms=timestamp if timestamp_type != 0 else None,
    )


def assert_contiguous(records: list[Record], low: int = FIRST_OFFSET) -> None:
    """Offsets of one partition's records are `low, low + 1, ...` with no gap or repeat."""
    offsets = [r.offset for r in records]
    expected = list(range(low, low + len(records)))
    if offsets != expected:
        first_bad = next(
            i for i, (a, b) in enumerate(zip(offsets, expected, strict=True)) if a != b
        )
        raise AssertionError(
            f"offsets not contiguous from {low}: at index {first_bad} got "
            f"{offsets[first_bad : first_bad + 5]}, expected {expected[first_bad : first_bad + 5]}"
        )


def kafka_python_read(
    bootstrap: str, topic: str, partition: int, count: int, timeout_s: float = 60.0
) -> list[Record]:
    """At least the first `count` records of one partition (all that the last poll returned),
    read with kafka-python's KafkaConsumer (no group: `assign` and `seek_to_beginning`), as
    `Record`s. Fails if fewer arrive in time."""
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KafkaPythonTopicPartition

    deadline = Deadline(timeout_s, f"{count} records of {topic}[{partition}] through kafka-python")
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="none",
        fetch_max_wait_ms=100,
        request_timeout_ms=int(CALL_TIMEOUT_S * 1000),
    )
    try:
        tp = KafkaPythonTopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        records: list[Record] = []
        while len(records) < count:
            deadline.check(f"{len(records)} read")
            batch = consumer.poll(timeout_ms=500)
            for message in batch.get(tp, []):
                records.append(
                    Record(
                        partition=message.partition,
                        offset=message.offset,
                        key=message.key,
                        value=message.value,
                        headers=[(k, v) for k, v in message.headers],
                        timestamp_ms=message.timestamp,
                    )
                )
        return records
    finally:
        consumer.close(autocommit=False)


def cli(bootstrap: str, *args: str) -> str:
    """`cairn ARGS --bootstrap B`'s standard output; fails unless it exits 0."""
    command = [os.environ.get("CAIRN_BIN", "target/debug/cairn"), *args, "--bootstrap", bootstrap]
    result = subprocess.run(command, capture_output=True, text=True, timeout=CALL_TIMEOUT_S)
    assert result.returncode == 0, f"{command}: {result.stderr}"
    return result.stdout


# Seconds a group may take to form, rebalance or drain: above the 3 s initial rebalance delay
# and a 10 s session timeout, far below the test timeout.
GROUP_TIMEOUT_S = 60.0


def produce_values(bootstrap: str, topic: str, values: list[bytes]) -> None:
    """Writes each value (as its own key too) with acks=all."""
    config = {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5}
    with confluent_producer(config) as producer:
        for value in values:
            producer.produce(topic, key=value, value=value)
        assert producer.flush(timeout=CALL_TIMEOUT_S) == 0


def poll_each(consumers: list[Consumer], seen: dict[bytes, int]) -> None:
    """One poll of every consumer; counts each delivered value in `seen`."""
    for consumer in consumers:
        message = consumer.poll(0.1)
        if message is None:
            continue
        if message.error() is not None:
            assert message.error().code() == KafkaError._PARTITION_EOF, message.error()
            continue
        seen[message.value()] = seen.get(message.value(), 0) + 1


def drain(consumers: list[Consumer], want: set[bytes], seen: dict[bytes, int]) -> None:
    """Polls the consumers until each value of `want` was consumed."""
    deadline = Deadline(GROUP_TIMEOUT_S, f"{len(want)} records through the group")
    while not want.issubset(seen):
        deadline.check(f"{sorted(want - seen.keys())[:5]} not consumed yet")
        poll_each(consumers, seen)
