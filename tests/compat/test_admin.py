"""Topic administration through confluent-kafka's AdminClient and kafka-python's
KafkaAdminClient: create, list, describe, alter configs, add partitions, delete; and the error
codes of the usual mistakes."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
)
from kafka import errors as kafka_errors
from kafka.admin import ConfigResource as KafkaPythonConfigResource
from kafka.admin import KafkaAdminClient

from support import (
    CALL_TIMEOUT_S,
    FIRST_OFFSET,
    Deadline,
    admin_client,
    confluent_producer,
    create_topic,
    unique_topic,
    wait_for_partitions,
    watermarks,
)

TIMEOUTS = {"request_timeout": CALL_TIMEOUT_S}
OPERATION_TIMEOUTS = {"operation_timeout": CALL_TIMEOUT_S, "request_timeout": CALL_TIMEOUT_S}


def topic_configs(admin, topic: str) -> dict[str, ConfigEntry]:
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    return admin.describe_configs([resource], **TIMEOUTS)[resource].result(timeout=CALL_TIMEOUT_S)


def alter(admin, topic: str, *entries: ConfigEntry) -> None:
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=list(entries))
    admin.incremental_alter_configs([resource], **TIMEOUTS)[resource].result(timeout=CALL_TIMEOUT_S)


def source(entry: ConfigEntry) -> ConfigSource:
    """An entry's source as the enum (the C binding hands over the raw number)."""
    return entry.source if isinstance(entry.source, ConfigSource) else ConfigSource(entry.source)


def error_code(future) -> int:
    """The Kafka error code a failed admin future carries; fails the test if it succeeded."""
    with pytest.raises(KafkaException) as raised:
        future.result(timeout=CALL_TIMEOUT_S)
    error = raised.value.args[0]
    assert isinstance(error, KafkaError), f"not a KafkaError: {error!r}"
    return error.code()


def topic_exists(admin, topic: str) -> bool:
    """Whether a Metadata request naming `topic` finds it (the broker runs with topic
    auto-creation off, so asking does not create it)."""
    described = admin.list_topics(topic=topic, timeout=CALL_TIMEOUT_S).topics.get(topic)
    if described is None or described.error is None:
        return described is not None
    if described.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
        return False
    raise KafkaException(described.error)


def wait_until_deleted(admin, topic: str) -> None:
    deadline = Deadline(CALL_TIMEOUT_S, f"{topic} to leave the metadata")
    while topic_exists(admin, topic):
        deadline.check(f"{topic} still in the metadata")


def test_list_all_topics(broker):
    """A Metadata request for all topics (a null topic list), as `list_topics()` sends it."""
    admin = admin_client(broker.bootstrap)
    topics = [unique_topic("admin-list") for _ in range(2)]
    for topic in topics:
        create_topic(broker.bootstrap, topic, partitions=2)
    metadata = admin.list_topics(timeout=CALL_TIMEOUT_S)
    for topic in topics:
        assert topic in metadata.topics, f"listed: {sorted(metadata.topics)}"
        assert sorted(metadata.topics[topic].partitions) == [0, 1]
    (node,) = metadata.brokers.values()
    assert f"{node.host}:{node.port}" == broker.bootstrap, "advertised address"


def test_confluent_topic_lifecycle(broker):
    admin = admin_client(broker.bootstrap)
    topic = unique_topic("admin-ck")
    futures = admin.create_topics(
        [
            NewTopic(
                topic, num_partitions=3, replication_factor=1, config={"retention.ms": "3600000"}
            )
        ],
        **OPERATION_TIMEOUTS,
    )
    futures[topic].result(timeout=CALL_TIMEOUT_S)
    wait_for_partitions(admin, topic, 3)

    metadata = admin.list_topics(topic=topic, timeout=CALL_TIMEOUT_S)
    assert sorted(metadata.topics[topic].partitions) == [0, 1, 2]
    assert len(metadata.brokers) == 1
    (node,) = metadata.brokers.values()
    assert f"{node.host}:{node.port}" == broker.bootstrap, "advertised address"
    for partition in metadata.topics[topic].partitions.values():
        assert partition.leader == node.id
        assert partition.replicas == [node.id]
        assert partition.isrs == [node.id]

    # The configuration set at creation is reported as a dynamic topic config.
    configs = topic_configs(admin, topic)
    assert configs["retention.ms"].value == "3600000"
    assert source(configs["retention.ms"]) == ConfigSource.DYNAMIC_TOPIC_CONFIG
    assert "max.message.bytes" in configs, f"described: {sorted(configs)}"

    # SET through IncrementalAlterConfigs.
    alter(
        admin,
        topic,
        ConfigEntry("retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET),
    )
    configs = topic_configs(admin, topic)
    assert configs["retention.ms"].value == "7200000"

    # DELETE reverts to the default.
    alter(
        admin,
        topic,
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE),
    )
    configs = topic_configs(admin, topic)
    assert source(configs["retention.ms"]) != ConfigSource.DYNAMIC_TOPIC_CONFIG
    assert configs["retention.ms"].value != "7200000"

    # Partitions grow from 3 to 5.
    futures = admin.create_partitions([NewPartitions(topic, 5)], **OPERATION_TIMEOUTS)
    futures[topic].result(timeout=CALL_TIMEOUT_S)
    wait_for_partitions(admin, topic, 5)

    # Shrinking is refused.
    futures = admin.create_partitions([NewPartitions(topic, 2)], **OPERATION_TIMEOUTS)
    assert error_code(futures[topic]) == KafkaError.INVALID_PARTITIONS

    futures = admin.delete_topics([topic], **OPERATION_TIMEOUTS)
    futures[topic].result(timeout=CALL_TIMEOUT_S)
    wait_until_deleted(admin, topic)


def test_deleted_topic_name_can_be_reused_empty(broker):
    topic = unique_topic("admin-reuse")
    create_topic(broker.bootstrap, topic)
    with confluent_producer({"bootstrap.servers": broker.bootstrap, "acks": "all"}) as producer:
        for i in range(10):
            producer.produce(topic, value=b"%d" % i, partition=0)
        assert producer.flush(timeout=CALL_TIMEOUT_S) == 0
    assert watermarks(broker.bootstrap, topic, 1) == {0: (0, FIRST_OFFSET + 10)}

    admin = admin_client(broker.bootstrap)
    admin.delete_topics([topic], **OPERATION_TIMEOUTS)[topic].result(timeout=CALL_TIMEOUT_S)
    wait_until_deleted(admin, topic)

    create_topic(broker.bootstrap, topic)
    assert watermarks(broker.bootstrap, topic, 1) == {0: (0, FIRST_OFFSET)}, (
        "the old records came back"
    )


def test_create_existing_topic_is_topic_already_exists(broker):
    admin = admin_client(broker.bootstrap)
    topic = unique_topic("admin-exists")
    create_topic(broker.bootstrap, topic)
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=1, replication_factor=1)], **OPERATION_TIMEOUTS
    )
    assert error_code(futures[topic]) == KafkaError.TOPIC_ALREADY_EXISTS


@pytest.mark.parametrize(
    "config",
    [{"retention.ms": "not-a-number"}, {"cleanup.policy": "sideways"}, {"max.message.bytes": "-5"}],
    ids=["retention.ms", "cleanup.policy", "max.message.bytes"],
)
def test_create_with_invalid_config_is_invalid_config(broker, config):
    admin = admin_client(broker.bootstrap)
    topic = unique_topic("admin-badconfig")
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=1, replication_factor=1, config=config)],
        **OPERATION_TIMEOUTS,
    )
    assert error_code(futures[topic]) == KafkaError.INVALID_CONFIG
    assert not topic_exists(admin, topic), "a topic refused for its config exists anyway"


def test_alter_to_invalid_config_is_invalid_config(broker):
    admin = admin_client(broker.bootstrap)
    topic = unique_topic("admin-badalter")
    create_topic(broker.bootstrap, topic, config={"retention.ms": "3600000"})
    resource = ConfigResource(
        ConfigResource.Type.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry("retention.ms", "soon", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    future = admin.incremental_alter_configs([resource], **TIMEOUTS)[resource]
    assert error_code(future) == KafkaError.INVALID_CONFIG
    assert topic_configs(admin, topic)["retention.ms"].value == "3600000", (
        "a refused alter changed the config"
    )


def test_delete_unknown_topic_is_unknown_topic_or_partition(broker):
    admin = admin_client(broker.bootstrap)
    topic = unique_topic("admin-never-created")
    futures = admin.delete_topics([topic], **OPERATION_TIMEOUTS)
    assert error_code(futures[topic]) == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_kafka_python_admin_client(broker):
    topic = unique_topic("admin-kp")
    admin = KafkaAdminClient(
        bootstrap_servers=broker.bootstrap, request_timeout_ms=int(CALL_TIMEOUT_S * 1000)
    )
    try:
        admin.create_topics(
            {
                topic: {
                    "num_partitions": 2,
                    "replication_factor": 1,
                    "configs": {"retention.ms": "3600000"},
                }
            }
        )
        wait_for_partitions(admin_client(broker.bootstrap), topic, 2)
        assert topic in admin.list_topics()
        (described,) = admin.describe_topics([topic])
        assert described["name"] == topic
        assert len(described["partitions"]) == 2

        resource = KafkaPythonConfigResource("TOPIC", topic)
        configs = admin.describe_configs([resource])["topic"][topic]
        assert configs["retention.ms"]["value"] == "3600000"

        result = admin.alter_configs(
            [KafkaPythonConfigResource("TOPIC", topic, configs={"retention.ms": "7200000"})]
        )
        assert result == {"topic": {topic: "OK"}}
        configs = admin.describe_configs([KafkaPythonConfigResource("TOPIC", topic)])["topic"][
            topic
        ]
        assert configs["retention.ms"]["value"] == "7200000"

        admin.create_partitions({topic: 4})
        wait_for_partitions(admin_client(broker.bootstrap), topic, 4)

        with pytest.raises(kafka_errors.TopicAlreadyExistsError):
            admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}})
        with pytest.raises(kafka_errors.InvalidConfigurationError):
            admin.create_topics(
                {
                    unique_topic("admin-kp-bad"): {
                        "num_partitions": 1,
                        "replication_factor": 1,
                        "configs": {"retention.ms": "x"},
                    }
                }
            )

        admin.delete_topics([topic])
        wait_until_deleted(admin_client(broker.bootstrap), topic)
        with pytest.raises(kafka_errors.UnknownTopicOrPartitionError):
            admin.delete_topics([topic])
    finally:
        admin.close()
