"""kafkajs (2.2.4, from npm) against cairn: its idempotent producer writes each value once,
and a consumer group of kafkajs members consumes everything, commits, and a later member
resumes from the commits. The Node.js side is `js/client.js`; `cargo xtask compat` installs
kafkajs from `js/package-lock.json` into `target/compat-js`."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from confluent_kafka import ConsumerGroupTopicPartitions

from support import CALL_TIMEOUT_S, admin_client, create_topic, read_all, unique_topic, watermarks

CLIENT = Path(__file__).parent / "js" / "client.js"
NODE_MODULES = Path(os.environ.get("CAIRN_COMPAT_NODE_MODULES", "target/compat-js/node_modules"))
PARTITIONS = 3
# Seconds a kafkajs run may take: the client's own timeout (60 s) and its start.
RUN_TIMEOUT_S = 90


def kafkajs(*args: str) -> dict:
    """Runs `node js/client.js ARGS`; its JSON answer."""
    env = {**os.environ, "NODE_PATH": str(NODE_MODULES.resolve())}
    result = subprocess.run(
        ["node", str(CLIENT), *args],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        env=env,
    )
    assert result.returncode == 0, f"kafkajs {args}: {result.stderr}"
    return json.loads(result.stdout)


def test_kafkajs_idempotent_producer_and_group(broker):
    topic = unique_topic("kafkajs")
    group = f"group-{topic}"
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    produced = kafkajs("produce", broker.bootstrap, topic, "100", "0")
    assert len(produced["offsets"]) >= 10
    records = read_all(broker.bootstrap, topic, PARTITIONS)
    values = sorted(int(r.value) for log in records.values() for r in log)
    assert values == list(range(100)), "each value written once"

    consumed = kafkajs("consume", broker.bootstrap, topic, group, "100")
    assert sorted(int(v) for v in consumed["values"]) == list(range(100))
    assert consumed["partitions"] == list(range(PARTITIONS))
    ends = {p: high for p, (_, high) in watermarks(broker.bootstrap, topic, PARTITIONS).items()}
    admin = admin_client(broker.bootstrap)
    listed = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])
    offsets = listed[group].result(timeout=CALL_TIMEOUT_S).topic_partitions
    assert {p.partition: p.offset for p in offsets} == ends, "committed up to each end"

    # A new member resumes from the group's commits: it gets only what came after.
    kafkajs("produce", broker.bootstrap, topic, "10", "100")
    resumed = kafkajs("consume", broker.bootstrap, topic, group, "10")
    assert sorted(int(v) for v in resumed["values"]) == list(range(100, 110))
