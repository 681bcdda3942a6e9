"""The next-generation rebalance protocol (RFC 0008, KIP-848) through librdkafka's
`group.protocol=consumer` on a 3-node cluster: members share a topic's partitions as the
coordinator assigns them, each record is consumed, a member that leaves or crashes hands its
partitions on, the group and its offsets survive killing the coordinator's node, and classic
and consumer-protocol groups consume the same topic side by side.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition

from cluster import Cluster, consumer_protocol_args
from support import (
    CALL_TIMEOUT_S,
    Deadline,
    GROUP_TIMEOUT_S,
    cli,
    create_topic,
    drain,
    group_consumer,
    poll_each,
    produce_values,
    unique_topic,
)

PARTITIONS = 6
# The broker's consumer-protocol session and heartbeat interval: a crashed member is fenced
# after SESSION_MS.
SESSION_MS = 6000
HEARTBEAT_MS = 500


def start_cluster(tmp_path) -> Cluster:
    cluster = Cluster(tmp_path, extra_args=consumer_protocol_args(SESSION_MS, HEARTBEAT_MS))
    cluster.start()
    return cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = start_cluster(tmp_path_factory.mktemp("consumer-protocol"))
    try:
        yield cluster
    except BaseException:
        print(cluster.log_tails())
        raise
    finally:
        cluster.stop()


def member(bootstrap: str, group: str, **extra) -> Consumer:
    """A consumer of `group` speaking the consumer protocol; commits only when told."""
    config = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "group.protocol": "consumer",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "fetch.wait.max.ms": 100,
    }
    config.update(extra)
    return Consumer(config)


def assignments(consumers: list[Consumer]) -> list[list[int]]:
    return [sorted(p.partition for p in c.assignment()) for c in consumers]


def wait_shared(consumers: list[Consumer], seen: dict[bytes, int]) -> None:
    """Polls until the consumers' assignments are disjoint, cover every partition and are
    balanced within one."""
    deadline = Deadline(GROUP_TIMEOUT_S, f"{PARTITIONS} partitions shared by the group")
    while True:
        poll_each(consumers, seen)
        owned = assignments(consumers)
        sizes = [len(o) for o in owned]
        if sorted(p for o in owned for p in o) == list(range(PARTITIONS)) and max(sizes) - min(sizes) <= 1:
            return
        deadline.check(f"assignments {owned}")


def commit_all(consumers: list[Consumer]) -> dict[int, int]:
    """Commits every consumer's positions; what they committed, by partition."""
    made = {}
    for consumer in consumers:
        for p in consumer.commit(asynchronous=False) or []:
            made[p.partition] = p.offset
    return made


def committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    probe = member(bootstrap, group)
    try:
        found = probe.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=CALL_TIMEOUT_S)
        return {p.partition: p.offset for p in found}
    finally:
        probe.close()


def test_members_share_the_partitions_and_a_leaver_hands_its_partitions_on(cluster):
    topic = unique_topic("kip848")
    group = f"group-{topic}"
    create_topic(cluster.bootstrap, topic, partitions=PARTITIONS, replicas=3)
    first = [b"first-%d" % i for i in range(300)]
    produce_values(cluster.bootstrap, topic, first)
    consumers = [member(cluster.bootstrap, group) for _ in range(3)]
    try:
        for consumer in consumers:
            consumer.subscribe([topic])
        seen: dict[bytes, int] = {}
        wait_shared(consumers, seen)
        assert [len(a) for a in assignments(consumers)] == [2, 2, 2]
        drain(consumers, set(first), seen)
        made = commit_all(consumers)
        admin = cluster.new_admin()
        described = admin.describe_consumer_groups([group])[group].result(timeout=CALL_TIMEOUT_S)
        assert len(described.members) == 3
        owned = sorted(tp.partition for m in described.members for tp in m.assignment.topic_partitions)
        assert owned == list(range(PARTITIONS)), described
        one = cluster.nodes[1].bootstrap
        shown = cli(one, "group", "describe", group)
        assert "protocol: consumer uniform" in shown and "members: 3" in shown, shown
        rows = [line.split() for line in shown.splitlines() if line.startswith(topic)]
        assert len(rows) == PARTITIONS and all(row[-1] != "-" for row in rows), shown
        assert f"{group}\tStable\tconsumer" in cli(one, "group", "list")
        consumers.pop().close()
        wait_shared(consumers, {})
        second = [b"second-%d" % i for i in range(120)]
        produce_values(cluster.bootstrap, topic, second)
        again: dict[bytes, int] = {}
        drain(consumers, set(second), again)
        assert not set(first) & again.keys(), "records before the commits were consumed again"
    finally:
        for consumer in consumers:
            consumer.close()
    assert committed(cluster.bootstrap, group, topic) == made


CRASHING_MEMBER = textwrap.dedent(
    """
    import sys
    from confluent_kafka import Consumer
    bootstrap, group, topic = sys.argv[1:4]
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "group.protocol": "consumer", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    while True:
        consumer.poll(0.1)
    """
)


def test_a_crashed_member_s_partitions_move_on_after_its_session_and_it_rejoins(cluster):
    topic = unique_topic("kip848-crash")
    group = f"group-{topic}"
    create_topic(cluster.bootstrap, topic, partitions=PARTITIONS, replicas=3)
    survivor = member(cluster.bootstrap, group)
    rejoined = None
    crashing = subprocess.Popen(
        [sys.executable, "-c", CRASHING_MEMBER, cluster.bootstrap, group, topic],
    )
    try:
        survivor.subscribe([topic])
        # The survivor is polled meanwhile: it must give up half its partitions.
        deadline = Deadline(GROUP_TIMEOUT_S, "the two members sharing the partitions")
        while len(survivor.assignment()) != PARTITIONS // 2:
            deadline.check(f"survivor has {assignments([survivor])}")
            survivor.poll(0.1)
        crashing.send_signal(signal.SIGKILL)
        crashing.wait(timeout=CALL_TIMEOUT_S)
        # Fenced after its session; its partitions go to the survivor.
        deadline = Deadline(SESSION_MS / 1000 + 20, "the crashed member's partitions at the survivor")
        while len(survivor.assignment()) != PARTITIONS:
            deadline.check(f"survivor has {assignments([survivor])}")
            survivor.poll(0.1)
        values = [b"after-crash-%d" % i for i in range(60)]
        produce_values(cluster.bootstrap, topic, values)
        drain([survivor], set(values), {})
        # The crashed member comes back (a new process, a new member id): the two share again.
        rejoined = member(cluster.bootstrap, group)
        rejoined.subscribe([topic])
        wait_shared([survivor, rejoined], {})
        more = [b"after-rejoin-%d" % i for i in range(60)]
        produce_values(cluster.bootstrap, topic, more)
        drain([survivor, rejoined], set(more), {})
    finally:
        crashing.kill()
        crashing.wait(timeout=CALL_TIMEOUT_S)
        survivor.close()
        if rejoined is not None:
            rejoined.close()


def test_classic_and_consumer_protocol_groups_consume_one_topic_side_by_side(cluster):
    topic = unique_topic("kip848-mixed")
    create_topic(cluster.bootstrap, topic, partitions=PARTITIONS, replicas=3)
    values = [b"v-%d" % i for i in range(200)]
    produce_values(cluster.bootstrap, topic, values)
    classic = [group_consumer(cluster.bootstrap, f"classic-{topic}") for _ in range(2)]
    modern = [member(cluster.bootstrap, f"consumer-{topic}") for _ in range(2)]
    try:
        for consumer in classic + modern:
            consumer.subscribe([topic])
        for consumers in (classic, modern):
            seen: dict[bytes, int] = {}
            drain(consumers, set(values), seen)
        admin = cluster.new_admin()
        listed = admin.list_consumer_groups().result(timeout=CALL_TIMEOUT_S).valid
        types = {g.group_id: g.type.name for g in listed if g.group_id.endswith(topic)}
        assert types == {f"classic-{topic}": "CLASSIC", f"consumer-{topic}": "CONSUMER"}, types
    finally:
        for consumer in classic + modern:
            consumer.close()


def test_a_regular_expression_subscription_is_matched_by_the_coordinator(cluster):
    prefix = unique_topic("kip848-re")
    matching = [f"{prefix}-a", f"{prefix}-b"]
    for topic in [*matching, f"other-{prefix}"]:
        create_topic(cluster.bootstrap, topic, partitions=2, replicas=3)
        produce_values(cluster.bootstrap, topic, [topic.encode() + b"-%d" % i for i in range(20)])
    consumers = [member(cluster.bootstrap, f"group-{prefix}") for _ in range(2)]
    try:
        for consumer in consumers:
            consumer.subscribe([f"^{prefix}-.*"])
        want = {topic.encode() + b"-%d" % i for topic in matching for i in range(20)}
        seen: dict[bytes, int] = {}
        drain(consumers, want, seen)
        owned = {p.topic for c in consumers for p in c.assignment()}
        assert owned == set(matching), owned
        assert set(seen) == want, "only the matching topics' records"
    finally:
        for consumer in consumers:
            consumer.close()


@pytest.mark.timeout(300)
def test_the_group_and_its_offsets_survive_killing_the_coordinator(tmp_path):
    cluster = start_cluster(tmp_path)
    try:
        topic = unique_topic("kip848-failover")
        group = f"group-{topic}"
        create_topic(cluster.bootstrap, topic, partitions=PARTITIONS, replicas=3)
        first = [b"first-%d" % i for i in range(120)]
        produce_values(cluster.bootstrap, topic, first)
        consumers = [member(cluster.bootstrap, group) for _ in range(2)]
        try:
            for consumer in consumers:
                consumer.subscribe([topic])
            seen: dict[bytes, int] = {}
            drain(consumers, set(first), seen)
            before = commit_all(consumers)
            admin = cluster.new_admin()
            described = admin.describe_consumer_groups([group])[group].result(timeout=CALL_TIMEOUT_S)
            cluster.nodes[described.coordinator.id].kill()
            # A new coordinator loads the group from the log: the members carry on.
            second = [b"second-%d" % i for i in range(120)]
            produce_values(cluster.bootstrap, topic, second)
            again: dict[bytes, int] = {}
            drain(consumers, set(second), again)
            assert not set(first) & again.keys(), "records before the commits were consumed again"
            made = commit_all(consumers)
        finally:
            for consumer in consumers:
                consumer.close()
        deadline = Deadline(GROUP_TIMEOUT_S, "the committed offsets from the new coordinator")
        found = None
        while True:
            deadline.check(f"found {found}")
            listed = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])
            try:
                found = listed[group].result(timeout=CALL_TIMEOUT_S).topic_partitions
            except Exception as error:  # noqa: BLE001 - retried until the deadline
                found = error
                continue
            if {p.partition: p.offset for p in found} == made:
                break
        assert all(made[p] >= offset for p, offset in before.items()), (before, made)
    except BaseException:
        print(cluster.log_tails())
        raise
    finally:
        cluster.stop()
