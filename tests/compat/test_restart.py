"""A graceful restart in the middle of an acks=all stream loses nothing that was acknowledged.

A producer thread keeps a bounded window of records in flight; once a quarter of the stream is
acknowledged the broker is stopped with SIGTERM (it must exit 0) and started again on the same
ports and data directory, while the producer keeps going and librdkafka retries what the stop
interrupted. Afterwards every acknowledged record must be in the log. The RFC's shutdown
finishes the requests it has read before it exits, so a record is written twice only if its
acknowledgement never arrived: an acknowledged record appearing twice is a failure too.
"""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from confluent_kafka import Producer

from support import Deadline, create_topic, read_all, unique_topic

RECORD_COUNT = 20_000
PARTITIONS = 2
# Records the producer thread keeps unacknowledged at most, so the stream is still going when
# the broker restarts.
WINDOW = 500
RESTART_AFTER_ACKED = RECORD_COUNT // 4


def key(i: int) -> bytes:
    return b"%08d" % i


@pytest.mark.timeout(300)
def test_restart_mid_stream_keeps_every_acknowledged_record(broker):
    topic = unique_topic("restart")
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)

    producer = Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "acks": "all",
            "linger.ms": 5,
            # Retry through the restart: the broker is gone for a few seconds at most.
            "message.timeout.ms": 120_000,
            "retry.backoff.ms": 50,
            "retry.backoff.max.ms": 500,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 500,
        }
    )
    lock = threading.Lock()
    acked: set[int] = set()
    failed: dict[int, str] = {}
    quarter_acked = threading.Event()
    # Set when the test ends early, so the producer thread stops too.
    stop = threading.Event()
    producer_error: list[BaseException] = []

    def on_delivery(error, message):
        i = int(message.key())
        with lock:
            if error is None:
                acked.add(i)
                if len(acked) >= RESTART_AFTER_ACKED:
                    quarter_acked.set()
            else:
                failed[i] = str(error)

    def produce_stream():
        try:
            deadline = Deadline(200, "the producer thread to send the stream")
            for i in range(RECORD_COUNT):
                if stop.is_set():
                    return
                while True:
                    with lock:
                        in_flight = i - len(acked) - len(failed)
                    if in_flight < WINDOW or stop.is_set():
                        break
                    deadline.check(f"{in_flight} records in flight at record {i}")
                    producer.poll(0.05)  # serves delivery reports; returns early on one
                producer.produce(topic, key=key(i), value=b"v" * (i % 100), on_delivery=on_delivery)
                producer.poll(0)
            remaining = producer.flush(timeout=deadline.remaining())
            assert remaining == 0, f"{remaining} records undelivered after the deadline"
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            producer_error.append(error)

    thread = threading.Thread(target=produce_stream, name="compat-producer", daemon=True)
    thread.start()
    try:
        assert quarter_acked.wait(timeout=120), (
            f"only {len(acked)} records acknowledged before the restart"
        )
        with lock:
            acked_before_restart = len(acked)
        broker.restart()
        thread.join(timeout=240)
        assert not thread.is_alive(), "the producer thread did not finish"
    finally:
        # On the way out for any reason: no producer keeps knocking at a stopped broker.
        stop.set()
        thread.join(timeout=30)
        if not thread.is_alive():
            producer.purge()
            producer.close()
    if producer_error:
        raise producer_error[0]

    assert acked_before_restart < RECORD_COUNT, "the stream ended before the restart"
    assert len(acked) > acked_before_restart, "nothing was acknowledged after the restart"

    records = read_all(broker.bootstrap, topic, PARTITIONS, timeout_s=60)
    counts = Counter(int(r.key) for partition in records.values() for r in partition)
    missing = sorted(acked - counts.keys())
    assert not missing, f"{len(missing)} acknowledged records lost, first {missing[:10]}"
    twice_acked = sorted(i for i, n in counts.items() if n > 1 and i in acked)
    assert not twice_acked, (
        f"{len(twice_acked)} acknowledged records stored more than once, first {twice_acked[:10]}"
    )
    unknown = sorted(counts.keys() - set(range(RECORD_COUNT)))
    assert not unknown, f"records never sent: {unknown[:10]}"
    # librdkafka retries until message.timeout.ms, so nothing should have failed outright.
    assert not failed, f"{len(failed)} records failed, first {sorted(failed.items())[:5]}"
