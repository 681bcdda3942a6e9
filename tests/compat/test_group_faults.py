"""A consumer group as a work queue on three nodes while its coordinator is killed, a member
hangs and is replaced, and the whole cluster restarts (RFC 0006 §7).

Three confluent-kafka members share a six-partition, three-replica topic and commit as they go.
Checked: every acknowledged record is consumed at least once; the offsets commits report for a
partition never go backwards; the group's committed offsets survive a restart of every node.
"""

from __future__ import annotations

import threading

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from cluster import Cluster
from support import (
    CALL_TIMEOUT_S,
    Deadline,
    confluent_producer,
    create_topic,
    group_consumer,
    unique_topic,
)

PARTITIONS = 6
RECORDS = 3000
# Seconds for the group to catch up after a fault: a new coordinator's election and load, a
# session timeout, a rebalance.
CATCH_UP_S = 90.0


class Ledger:
    """What the members consumed and what their commits reported, shared by their threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.consumed: dict[bytes, int] = {}
        # Per partition, the offsets successful commits reported, in the order they returned.
        self.commits: dict[int, list[int]] = {p: [] for p in range(PARTITIONS)}

    def count(self) -> int:
        with self.lock:
            return len(self.consumed)


class Member:
    """A thread polling one consumer of the group and committing every 50 records."""

    def __init__(self, bootstrap: str, group: str, topic: str, ledger: Ledger):
        self.consumer = group_consumer(bootstrap, group, **{"max.poll.interval.ms": 10000})
        self.consumer.subscribe([topic])
        self.ledger = ledger
        self.stopping = threading.Event()
        # While set, the member stops polling: a hung process, which leaves the group once
        # max.poll.interval.ms passes.
        self.hung = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        since_commit = 0
        while not self.stopping.is_set():
            if self.hung.is_set():
                self.stopping.wait(0.1)
                continue
            message = self.consumer.poll(0.2)
            if message is not None and message.error() is None:
                with self.ledger.lock:
                    self.ledger.consumed[message.value()] = self.ledger.consumed.get(message.value(), 0) + 1
                since_commit += 1
            if since_commit >= 50:
                since_commit = 0 if self.commit() else since_commit

    def commit(self) -> bool:
        """A synchronous commit of the positions; records what it reports. A failure (a
        rebalance, a coordinator moving) is retried with the next records."""
        try:
            committed = self.consumer.commit(asynchronous=False)
        except KafkaException as error:
            code = error.args[0].code()
            assert code != KafkaError.UNKNOWN_TOPIC_OR_PART, error
            return False
        with self.ledger.lock:
            for tp in committed or []:
                if tp.error is None and tp.offset >= 0:
                    self.ledger.commits[tp.partition].append(tp.offset)
        return True

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "a member's thread did not stop"
        if not self.hung.is_set():
            self.commit()
        self.consumer.close()


def produce(bootstrap: str, topic: str, start: int, count: int) -> set[bytes]:
    acknowledged: set[bytes] = set()

    def delivered(error, message) -> None:
        if error is None:
            acknowledged.add(message.value())

    config = {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5}
    with confluent_producer(config) as producer:
        for i in range(start, start + count):
            producer.produce(topic, value=b"r-%d" % i, partition=i % PARTITIONS, on_delivery=delivered)
        assert producer.flush(timeout=CALL_TIMEOUT_S) == 0
    assert len(acknowledged) == count
    return acknowledged


def wait_consumed(ledger: Ledger, wanted: set[bytes], what: str) -> None:
    deadline = Deadline(CATCH_UP_S, what)
    while True:
        with ledger.lock:
            missing = len(wanted - ledger.consumed.keys())
        if missing == 0:
            return
        deadline.check(f"{missing} of {len(wanted)} not consumed yet")
        threading.Event().wait(0.05)


def committed_offsets(cluster: Cluster, group: str, topic: str) -> dict[int, int]:
    """The group's committed offsets through a consumer that does not join."""
    probe = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": group})
    try:
        wanted = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        deadline = Deadline(CATCH_UP_S, "the committed offsets")
        while True:
            try:
                return {tp.partition: tp.offset for tp in probe.committed(wanted, timeout=10)}
            except KafkaException as error:
                deadline.check(str(error))
    finally:
        probe.close()


@pytest.mark.timeout(600)
def test_a_work_queue_group_survives_coordinator_kills_member_hangs_and_restarts(tmp_path):
    cluster = Cluster(tmp_path)
    cluster.start()
    members: list[Member] = []
    try:
        topic = unique_topic("work-queue")
        group = f"queue-{topic}"
        create_topic(cluster.bootstrap, topic, partitions=PARTITIONS, replicas=3)
        acknowledged = produce(cluster.bootstrap, topic, 0, RECORDS)
        ledger = Ledger()
        members = [Member(cluster.bootstrap, group, topic, ledger) for _ in range(3)]
        deadline = Deadline(CATCH_UP_S, "the group to start consuming")
        while ledger.count() < RECORDS // 4:
            deadline.check(f"{ledger.count()} consumed")
            threading.Event().wait(0.05)

        # The coordinator dies mid-stream; its partition's new leader takes the group over.
        admin = cluster.new_admin()
        coordinator = admin.describe_consumer_groups([group])[group].result(timeout=CALL_TIMEOUT_S).coordinator
        cluster.nodes[coordinator.id].kill()
        more = produce(cluster.bootstrap, topic, RECORDS, RECORDS // 2)
        wait_consumed(ledger, acknowledged | more, "every record after the coordinator died")
        cluster.nodes[coordinator.id].start()

        # A member hangs: the others take its partitions, then a new member joins.
        members[0].hung.set()
        later = produce(cluster.bootstrap, topic, RECORDS * 2, RECORDS // 2)
        wait_consumed(ledger, later, "every record while a member hangs")
        members.append(Member(cluster.bootstrap, group, topic, ledger))
        last = produce(cluster.bootstrap, topic, RECORDS * 3, RECORDS // 2)
        wait_consumed(ledger, last, "every record after a new member joined")

        for member in members:
            member.stop()
        members = []
        before = committed_offsets(cluster, group, topic)
        for node in cluster.nodes.values():
            node.stop()
        cluster.start()
        after = committed_offsets(cluster, group, topic)
    except BaseException:
        print(cluster.log_tails())
        raise
    finally:
        for member in members:
            member.stopping.set()
        cluster.stop()

    for partition, offsets in ledger.commits.items():
        backwards = [(a, b) for a, b in zip(offsets, offsets[1:]) if b < a]
        assert not backwards, f"partition {partition}: commits went back: {backwards[:5]}"
        assert offsets, f"partition {partition}: no commit succeeded"
    assert after == before, "committed offsets changed across a restart of every node"
    assert all(offset > 0 for offset in after.values()), after
