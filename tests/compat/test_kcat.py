"""kcat, the command-line client people reach for first: metadata (-L), produce with keys and
snappy (-P -K: -z snappy), consume as JSON (-C -e -J)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from support import CALL_TIMEOUT_S, FIRST_OFFSET, create_topic, unique_topic

RECORD_COUNT = 300


def kcat(broker, *args: str, stdin: str | None = None) -> str:
    """Runs kcat against the broker and returns its stdout; fails on a non-zero exit."""
    binary = shutil.which("kcat")
    if binary is None:
        pytest.fail(
            "kcat is not installed: run `cargo xtask compat`, which installs it", pytrace=False
        )
    command = [binary, "-b", broker.bootstrap, "-m", str(int(CALL_TIMEOUT_S)), *args]
    result = subprocess.run(
        command,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=CALL_TIMEOUT_S * 2,
        check=False,
    )
    assert result.returncode == 0, (
        f"{' '.join(command)} exited {result.returncode}\nstdout:\n{result.stdout[-4000:]}\n"
        f"stderr:\n{result.stderr[-4000:]}"
    )
    return result.stdout


@pytest.mark.parametrize("all_topics", [False, True], ids=["one topic", "all topics"])
def test_metadata(broker, all_topics):
    topic = unique_topic("kcat-meta")
    create_topic(broker.bootstrap, topic, partitions=2)
    # `kcat -L` alone asks for every topic (a null topic list); `-t` names one.
    metadata = json.loads(kcat(broker, "-L", "-J", *([] if all_topics else ["-t", topic])))
    (node,) = metadata["brokers"]
    assert node["name"] == broker.bootstrap
    described = {t["topic"]: t for t in metadata["topics"]}
    assert topic in described, f"listed: {sorted(described)}"
    assert "error" not in described[topic], described[topic]
    partitions = sorted(described[topic]["partitions"], key=lambda p: p["partition"])
    assert [p["partition"] for p in partitions] == [0, 1]
    for partition in partitions:
        assert partition["leader"] == node["id"]
        assert [r["id"] for r in partition["replicas"]] == [node["id"]]


def test_produce_snappy_with_keys_then_consume_json(broker):
    topic = unique_topic("kcat-roundtrip")
    create_topic(broker.bootstrap, topic)
    lines = [f"key-{i}:value {i} " + "snappy " * (i % 20) for i in range(RECORD_COUNT)]
    kcat(
        broker,
        "-P",
        "-t",
        topic,
        "-p",
        "0",
        "-K:",
        "-z",
        "snappy",
        "-H",
        "source=kcat",
        "-X",
        "acks=all",
        "-X",
        "linger.ms=20",
        stdin="\n".join(lines) + "\n",
    )

    output = kcat(broker, "-C", "-t", topic, "-p", "0", "-o", "beginning", "-e", "-J", "-q")
    messages = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert len(messages) == RECORD_COUNT, f"consumed {len(messages)} of {RECORD_COUNT}"
    assert [m["offset"] for m in messages] == list(range(FIRST_OFFSET, FIRST_OFFSET + RECORD_COUNT))
    for message, line in zip(messages, lines, strict=True):
        want_key, want_value = line.split(":", 1)
        assert (message["key"], message["payload"]) == (want_key, want_value)
        assert message["headers"] == ["source", "kcat"]
        assert message["partition"] == 0
