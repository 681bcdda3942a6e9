"""Log compaction (RFC 0007) seen through Kafka clients: a topic created with
`cleanup.policy=compact` keeps the latest record of each key below the cleaner's point, at its
offset, and the rest as written; a kill -9 in the middle of a round loses nothing, and the
round ends after the restart; a keyless record to it is refused with INVALID_RECORD; and
IncrementalAlterConfigs' APPEND and SUBTRACT edit `cleanup.policy`.

The broker's cleaner looks every 200 ms (`--log-cleaner-backoff-ms`) instead of Kafka's 15 s,
so that the test waits for rounds briefly; the wait is bounded by a deadline, polling what a
consumer reads."""

from __future__ import annotations

import time
import urllib.request

import pytest
from confluent_kafka import KafkaError
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

from conftest import Broker, cairn_binary, running_broker
from support import (
    CALL_TIMEOUT_S,
    Deadline,
    admin_client,
    confluent_producer,
    create_topic,
    read_all,
    unique_topic,
)

KEYS = 10
RECORDS = 600
COMPACTION_WAIT_S = 60.0


@pytest.fixture(scope="module")
def cleaning_broker(tmp_path_factory):
    """A broker whose cleaner looks every 200 ms."""
    yield from running_broker(
        tmp_path_factory.mktemp("cairn-compaction"), ("--log-cleaner-backoff-ms", "200")
    )


def produce(
    bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes]], codec: str = "none"
) -> list:
    """Produces `records` (key, value) with acks=all, in order, compressed with `codec`; the
    delivery errors (None for each record delivered)."""
    errors: list = [None] * len(records)

    def delivered(index):
        def callback(error, _message):
            errors[index] = error

        return callback

    config = {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": codec,
    }
    with confluent_producer(config) as producer:
        for index, (key, value) in enumerate(records):
            producer.produce(topic, key=key, value=value, on_delivery=delivered(index))
            producer.poll(0)
        assert producer.flush(CALL_TIMEOUT_S) == 0, "every record answered"
    return errors


def test_a_compacted_topic_keeps_the_latest_record_of_each_key(cleaning_broker):
    bootstrap = cleaning_broker.bootstrap
    topic = unique_topic("compacted")
    create_topic(bootstrap, topic, config={"cleanup.policy": "compact", "segment.bytes": "1024"})
    written = [(f"k{i % KEYS}".encode(), f"v{i}".encode()) for i in range(RECORDS)]
    assert produce(bootstrap, topic, written) == [None] * RECORDS
    before = read_all(bootstrap, topic, 1)[0]
    assert [(r.key, r.value) for r in before] == written

    after = wait_compacted(bootstrap, topic, before, f"a compaction round of {topic}")
    check_compacted(before, after)
    # The counters move once the cleaner's pass ends, just after the rewrite shows.
    deadline = Deadline(COMPACTION_WAIT_S, "the cleaner's counters")
    while metric(cleaning_broker, "cairn_log_cleaner_dropped_bytes_total") == 0:
        deadline.check()
        time.sleep(0.2)
    assert metric(cleaning_broker, "cairn_log_cleaner_rounds_total") >= 1


def metric(broker, name: str) -> float:
    """The value of the unlabelled metric `name` in the broker's `/metrics`."""
    with urllib.request.urlopen(f"{broker.admin_url}/metrics", timeout=CALL_TIMEOUT_S) as answer:
        text = answer.read().decode()
    for line in text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"no {name} in /metrics")


def wait_compacted(bootstrap: str, topic: str, before: list, what: str) -> list:
    """Reads `topic` until a round dropped at least half of `before`; what is left."""
    deadline = Deadline(COMPACTION_WAIT_S, what)
    while True:
        after = read_all(bootstrap, topic, 1)[0]
        if len(after) < len(before) // 2:
            return after
        deadline.check(f"{len(after)} of {len(before)} records left")
        time.sleep(0.2)


def check_compacted(before: list, after: list) -> None:
    """`after` is what compaction may leave of `before`: records at their offsets, every key's
    latest one, and none gone but behind a newer record of its key."""
    by_offset = {record.offset: record for record in before}
    offsets = [record.offset for record in after]
    assert offsets == sorted(set(offsets)), "offsets increase"
    for record in after:
        kept = by_offset[record.offset]
        assert (record.key, record.value) == (kept.key, kept.value), "each record at its offset"
    latest = {record.key: record.value for record in before}
    assert {record.key: record.value for record in after} == latest, "every key's latest"
    newest = {record.key: record.offset for record in before}
    gone = set(by_offset) - set(offsets)
    assert all(offset < newest[by_offset[offset].key] for offset in gone)


def test_a_kill_in_the_middle_of_a_round_loses_nothing(tmp_path):
    """The cleaner at its slowest (1 MiB/s) is killed while a segment's rewritten copy is being
    written; after a restart at full speed the round is carried out again, whole."""
    slow = ("--log-cleaner-backoff-ms", "100", "--log-cleaner-io-bytes-per-sec", "1048576")
    instance = Broker(cairn_binary(), tmp_path, slow)
    instance.start()
    try:
        topic = unique_topic("killed")
        config = {"cleanup.policy": "compact", "segment.bytes": str(256 * 1024)}
        create_topic(instance.bootstrap, topic, config=config)
        value = b"x" * 1000
        written = [(f"k{i % 50}".encode(), value + str(i).encode()) for i in range(3000)]
        assert produce(instance.bootstrap, topic, written) == [None] * len(written)
        before = read_all(instance.bootstrap, topic, 1)[0]
        deadline = Deadline(COMPACTION_WAIT_S, "a rewritten copy being written")
        while not list(instance.data_dir.rglob("*.log.cleaned")):
            deadline.check()
            time.sleep(0.05)
        instance.kill()
        instance.extra_args = ["--log-cleaner-backoff-ms", "100"]
        instance.start()
        after = wait_compacted(instance.bootstrap, topic, before, "the round after the restart")
        check_compacted(before, after)
    finally:
        instance.kill()


@pytest.mark.parametrize("codec", ["none", "lz4"])
def test_a_compacted_topic_refuses_keyless_records(cleaning_broker, codec):
    bootstrap = cleaning_broker.bootstrap
    topic = unique_topic("keyless")
    create_topic(bootstrap, topic, config={"cleanup.policy": "compact"})
    # Values that compress, so that librdkafka does send lz4 batches compressed.
    kept, refused = b"kept" * 100, b"refused" * 100
    assert produce(bootstrap, topic, [(b"k", kept)], codec) == [None]
    [error] = produce(bootstrap, topic, [(None, refused)], codec)
    assert error is not None and error.code() == KafkaError.INVALID_RECORD, error
    assert [(r.key, r.value) for r in read_all(bootstrap, topic, 1)[0]] == [(b"k", kept)]


def test_append_and_subtract_edit_the_cleanup_policy(cleaning_broker):
    bootstrap = cleaning_broker.bootstrap
    topic = unique_topic("policy")
    create_topic(bootstrap, topic)
    admin = admin_client(bootstrap)
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)

    def edit(op: AlterConfigOpType, value: str) -> str:
        entry = ConfigEntry("cleanup.policy", value, incremental_operation=op)
        change = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[entry])
        admin.incremental_alter_configs([change])[change].result(timeout=CALL_TIMEOUT_S)
        described = admin.describe_configs([resource])[resource].result(timeout=CALL_TIMEOUT_S)
        return described["cleanup.policy"].value

    assert edit(AlterConfigOpType.APPEND, "compact") == "compact,delete"
    assert edit(AlterConfigOpType.APPEND, "delete") == "compact,delete"
    assert edit(AlterConfigOpType.SUBTRACT, "delete") == "compact"
    with pytest.raises(Exception, match="INVALID_CONFIG|cleanup.policy"):
        edit(AlterConfigOpType.SUBTRACT, "compact")
    assert edit(AlterConfigOpType.SET, "delete") == "delete"
