"""Consumer groups through real clients (RFC 0006): confluent-kafka, kafka-python and aiokafka
consumers subscribe, share a topic's partitions, rebalance when members come and go, commit,
and resume from their commits; the admin APIs list, describe and delete groups; the offsets
topic is internal. The last test kills the coordinator of a group on a 3-node cluster.
"""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka import ConsumerGroupTopicPartitions

from cluster import Cluster
from support import (
    CALL_TIMEOUT_S,
    Deadline,
    GROUP_TIMEOUT_S,
    admin_client,
    cli,
    confluent_producer,
    create_topic,
    drain,
    group_consumer,
    poll_each,
    produce_values,
    unique_topic,
    watermarks,
)

OFFSETS_TOPIC = "__consumer_offsets"
PARTITIONS = 6


def wait_assigned(consumers: list[Consumer], partitions: int, seen: dict[bytes, int]) -> None:
    """Polls until the consumers' assignments are disjoint and cover every partition."""
    deadline = Deadline(GROUP_TIMEOUT_S, f"{partitions} partitions assigned across the group")
    while True:
        poll_each(consumers, seen)
        owned = [p.partition for c in consumers for p in c.assignment()]
        if sorted(owned) == list(range(partitions)):
            return
        deadline.check(f"assignments {[sorted(p.partition for p in c.assignment()) for c in consumers]}")


def test_a_group_shares_the_partitions_and_resumes_from_its_commits(broker):
    topic = unique_topic("group")
    group = f"group-{topic}"
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    first = [b"first-%d" % i for i in range(300)]
    produce_values(broker.bootstrap, topic, first)
    consumers = [group_consumer(broker.bootstrap, group) for _ in range(3)]
    try:
        for consumer in consumers:
            consumer.subscribe([topic])
        seen: dict[bytes, int] = {}
        wait_assigned(consumers, PARTITIONS, seen)
        for consumer in consumers:
            assert len(consumer.assignment()) == 2, "three members share six partitions"
        drain(consumers, set(first), seen)
        for consumer in consumers:
            consumer.commit(asynchronous=False)
        # One member leaves: the other two take its partitions over.
        consumers.pop().close()
        wait_assigned(consumers, PARTITIONS, {})
    finally:
        for consumer in consumers:
            consumer.close()
    second = [b"second-%d" % i for i in range(60)]
    produce_values(broker.bootstrap, topic, second)
    resumed = group_consumer(broker.bootstrap, group)
    try:
        resumed.subscribe([topic])
        again: dict[bytes, int] = {}
        drain([resumed], set(second), again)
        assert not set(first) & again.keys(), "records before the commits were consumed again"
    finally:
        resumed.close()


def test_committed_offsets_are_fetched_and_altered_through_the_admin_client(broker):
    topic = unique_topic("group-admin")
    group = f"group-{topic}"
    create_topic(broker.bootstrap, topic, partitions=2)
    produce_values(broker.bootstrap, topic, [b"%d" % i for i in range(20)])
    admin = admin_client(broker.bootstrap)
    wanted = [TopicPartition(topic, 0, 5), TopicPartition(topic, 1, 7)]
    altered = admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, wanted)])
    altered[group].result(timeout=CALL_TIMEOUT_S)
    listed = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])
    offsets = {p.partition: p.offset for p in listed[group].result(timeout=CALL_TIMEOUT_S).topic_partitions}
    assert offsets == {0: 5, 1: 7}
    consumer = group_consumer(broker.bootstrap, group)
    try:
        consumer.subscribe([topic])
        wait_assigned([consumer], 2, {})
        committed = consumer.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=CALL_TIMEOUT_S)
        assert [p.offset for p in committed] == [5, 7]
        description = admin.describe_consumer_groups([group])[group].result(timeout=CALL_TIMEOUT_S)
        assert description.state.name == "STABLE"
        assert len(description.members) == 1
        assert description.coordinator is not None
        member = description.members[0].member_id
        # The CLI shows the member, its partitions, and each partition's lag (20 records over
        # two partitions, commits at 5 and 7).
        shown = cli(broker.bootstrap, "group", "describe", group)
        assert "state: Stable" in shown and f"{member} " in shown, shown
        lines = shown.splitlines()
        heading = next(i for i, line in enumerate(lines) if line.startswith("topic "))
        rows = [line.split() for line in lines[heading + 1 :]]
        ends = {int(r[1]): int(r[3]) for r in rows}
        assert [(int(r[1]), int(r[2]), int(r[4]), r[5]) for r in rows] == [
            (0, 5, ends[0] - 5, member),
            (1, 7, ends[1] - 7, member),
        ], shown
        deleting = admin.delete_consumer_groups([group])[group]
        with pytest.raises(KafkaException) as refused:
            deleting.result(timeout=CALL_TIMEOUT_S)
        assert refused.value.args[0].code() == KafkaError.NON_EMPTY_GROUP
    finally:
        consumer.close()
    groups = admin.list_consumer_groups().result(timeout=CALL_TIMEOUT_S)
    assert group in {g.group_id for g in groups.valid}
    admin.delete_consumer_groups([group])[group].result(timeout=CALL_TIMEOUT_S)
    listed = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0)])])
    after = listed[group].result(timeout=CALL_TIMEOUT_S).topic_partitions
    assert [p.offset for p in after] == [-1001], "a deleted group's offsets are gone"


def group_metrics(admin_url: str, group: str) -> dict[tuple[str, int], int]:
    """The node's `cairn_group_*` series of `group`: (metric, partition) -> value."""
    with urllib.request.urlopen(f"{admin_url}/metrics", timeout=CALL_TIMEOUT_S) as answer:
        text = answer.read().decode()
    series = re.compile(r'^(cairn_group_\w+)\{group="([^"]*)",topic="[^"]*",partition="(\d+)"\} (\S+)$')
    found = {}
    for line in text.splitlines():
        match = series.match(line)
        if match and match.group(2) == group:
            found[(match.group(1), int(match.group(3)))] = int(float(match.group(4)))
    return found


def test_committed_offsets_and_lag_are_published_in_metrics(fresh_broker):
    """On a node that served no group yet: the first commit creates the offsets topic and
    succeeds (no coordinator error while its partitions open), and its coordinator publishes
    the offsets and the lag, then drops them with the group."""
    broker = fresh_broker
    topic = unique_topic("group-lag")
    group = f"group-{topic}"
    create_topic(broker.bootstrap, topic, partitions=2)
    produce_values(broker.bootstrap, topic, [b"%d" % i for i in range(20)])
    ends = {p: high for p, (_, high) in watermarks(broker.bootstrap, topic, 2).items()}
    admin = admin_client(broker.bootstrap)
    wanted = [TopicPartition(topic, 0, 5), TopicPartition(topic, 1, 7)]
    altered = admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, wanted)])
    committed = altered[group].result(timeout=CALL_TIMEOUT_S).topic_partitions
    assert [p.error for p in committed] == [None, None]
    expected = {
        ("cairn_group_committed_offset", 0): 5,
        ("cairn_group_committed_offset", 1): 7,
        ("cairn_group_lag", 0): ends[0] - 5,
        ("cairn_group_lag", 1): ends[1] - 7,
    }
    # Published every 5 s.
    deadline = Deadline(GROUP_TIMEOUT_S, f"the offsets of {group} in /metrics")
    while (found := group_metrics(broker.admin_url, group)) != expected:
        deadline.check(f"found {found}, expected {expected}")
        time.sleep(0.5)
    admin.delete_consumer_groups([group])[group].result(timeout=CALL_TIMEOUT_S)
    deadline = Deadline(GROUP_TIMEOUT_S, f"the series of the deleted {group} to go")
    while found := group_metrics(broker.admin_url, group):
        deadline.check(f"still {found}")
        time.sleep(0.5)


def test_kafka_python_and_aiokafka_groups_consume_and_commit(broker):
    from kafka import KafkaConsumer

    topic = unique_topic("group-py")
    create_topic(broker.bootstrap, topic, partitions=2)
    values = [b"py-%d" % i for i in range(40)]
    produce_values(broker.bootstrap, topic, values)

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap,
        group_id=f"kp-{topic}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
    )
    try:
        got: set[bytes] = set()
        deadline = Deadline(GROUP_TIMEOUT_S, "kafka-python to consume the topic")
        while got != set(values):
            deadline.check(f"{len(got)} consumed")
            for records in consumer.poll(timeout_ms=500).values():
                got.update(r.value for r in records)
        consumer.commit()
        committed = {tp.partition: consumer.committed(tp) for tp in consumer.assignment()}
        assert sum(committed.values()) >= len(values)
    finally:
        consumer.close()

    async def aiokafka_group() -> set[bytes]:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=broker.bootstrap,
            group_id=f"aio-{topic}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            got: set[bytes] = set()
            deadline = Deadline(GROUP_TIMEOUT_S, "aiokafka to consume the topic")
            while got != set(values):
                deadline.check(f"{len(got)} consumed")
                batches = await consumer.getmany(timeout_ms=500)
                got.update(r.value for records in batches.values() for r in records)
            await consumer.commit()
            return got
        finally:
            await consumer.stop()

    assert asyncio.run(aiokafka_group()) == set(values)


def test_the_offsets_topic_is_internal(broker):
    group_consumer(broker.bootstrap, "make-the-offsets-topic").close()
    admin = admin_client(broker.bootstrap)
    deadline = Deadline(GROUP_TIMEOUT_S, f"{OFFSETS_TOPIC} to exist")
    while OFFSETS_TOPIC not in admin.list_topics(timeout=CALL_TIMEOUT_S).topics:
        deadline.check()
        # A coordinator lookup starts the creation.
        admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions("make-the-offsets-topic")])
    config = {"bootstrap.servers": broker.bootstrap, "acks": "all", "retries": 0}
    with confluent_producer(config) as producer:
        errors = []
        producer.produce(OFFSETS_TOPIC, value=b"x", partition=0, on_delivery=lambda e, _m: errors.append(e))
        producer.flush(timeout=CALL_TIMEOUT_S)
        assert errors and errors[0] is not None
        assert errors[0].code() == KafkaError.TOPIC_EXCEPTION
    deleting = admin.delete_topics([OFFSETS_TOPIC])[OFFSETS_TOPIC]
    with pytest.raises(KafkaException) as refused:
        deleting.result(timeout=CALL_TIMEOUT_S)
    assert refused.value.args[0].code() == KafkaError.TOPIC_EXCEPTION


@pytest.mark.timeout(300)
def test_committed_offsets_survive_killing_the_coordinator(tmp_path):
    cluster = Cluster(tmp_path)
    cluster.start()
    try:
        topic = unique_topic("group-failover")
        group = f"group-{topic}"
        admin = cluster.new_admin()
        create_topic(cluster.bootstrap, topic, partitions=3, replicas=3)
        values = [b"v-%d" % i for i in range(90)]
        produce_values(cluster.bootstrap, topic, values)
        consumer = group_consumer(cluster.bootstrap, group)
        try:
            consumer.subscribe([topic])
            seen: dict[bytes, int] = {}
            drain([consumer], set(values), seen)
            consumer.commit(asynchronous=False)
            committed = consumer.committed([TopicPartition(topic, p) for p in range(3)], timeout=CALL_TIMEOUT_S)
        finally:
            consumer.close()
        coordinator = admin.describe_consumer_groups([group])[group].result(timeout=CALL_TIMEOUT_S).coordinator
        cluster.nodes[coordinator.id].kill()
        # The coordinator's partition elects a new leader, which loads the group from the log.
        deadline = Deadline(GROUP_TIMEOUT_S, "the committed offsets from a new coordinator")
        while True:
            deadline.check()
            listed = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])
            try:
                found = listed[group].result(timeout=CALL_TIMEOUT_S).topic_partitions
            except KafkaException:
                continue
            by_partition = {p.partition: p.offset for p in found}
            if by_partition:
                break
        assert by_partition == {p.partition: p.offset for p in committed}
        more = [b"after-%d" % i for i in range(30)]
        produce_values(cluster.bootstrap, topic, more)
        resumed = group_consumer(cluster.bootstrap, group)
        try:
            resumed.subscribe([topic])
            again: dict[bytes, int] = {}
            drain([resumed], set(more), again)
            assert not set(values) & again.keys(), "records before the commit were consumed again"
        finally:
            resumed.close()
    except BaseException:
        print(cluster.log_tails())
        raise
    finally:
        cluster.stop()
