"""How long a 10-member consumer group takes to rebalance when a member dies (SIGKILL) and when
one leaves cleanly, with the classic protocol and with the consumer protocol (KIP-848), in the
same run: issue 11's targets are at most 2 x the session timeout after a death (classic) and
at most one heartbeat interval plus the assignment after a clean leave (KIP-848).

Not a test (pytest does not collect it): a measurement, run by hand from the repository root
after `cargo xtask compat` built the binaries and the virtualenv:

    CAIRN_BIN=target/release/cairn CAIRN_FAULT_PROXY_BIN=target/debug/fault-proxy \\
        target/compat-venv/bin/python tests/compat/rebalance_bench.py [ROUNDS]

A 3-node cluster (cluster.py) serves a 20-partition, 3-replica topic; ten member processes
(confluent-kafka) per protocol print their whole assignment with its CLOCK_MONOTONIC time each
time it changes. Both protocols have a 10 s session and a 1 s heartbeat interval (classic: the
clients' session.timeout.ms and heartbeat.interval.ms; KIP-848: the brokers'
--group-consumer-session-timeout-ms and --group-consumer-heartbeat-interval-ms). A round kills
one member (or closes it) and measures from then until the survivors' assignments, all changed
since, cover the topic again.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster import Cluster, consumer_protocol_args  # noqa: E402
from support import create_topic, unique_topic  # noqa: E402

MEMBERS = 10
PARTITIONS = 20
SESSION_MS = 10_000
HEARTBEAT_MS = 1_000

MEMBER = """
import json, sys, threading, time
from confluent_kafka import Consumer
config = {
    "bootstrap.servers": sys.argv[1], "group.id": sys.argv[2],
    "enable.auto.commit": False, "auto.offset.reset": "latest",
}
config.update(json.loads(sys.argv[4]))
consumer = Consumer(config)
leaving = threading.Event()
threading.Thread(target=lambda: (sys.stdin.readline(), leaving.set()), daemon=True).start()
consumer.subscribe([sys.argv[3]])
owned = None
while not leaving.is_set():
    consumer.poll(0.01)
    now = sorted(p.partition for p in consumer.assignment())
    if now != owned:
        owned = now
        print("assigned", time.monotonic(), ",".join(map(str, now)), flush=True)
consumer.close()
"""

PROTOCOLS = {
    "classic": {"session.timeout.ms": SESSION_MS, "heartbeat.interval.ms": HEARTBEAT_MS},
    "consumer": {"group.protocol": "consumer"},
}


class Member:
    def __init__(self, bootstrap: str, group: str, topic: str, protocol: str):
        config = json.dumps(PROTOCOLS[protocol])
        self.process = subprocess.Popen(
            [sys.executable, "-c", MEMBER, bootstrap, group, topic, config],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.assignments: list[tuple[float, set[int]]] = []
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            parts = line.split()
            if parts and parts[0] == "assigned":
                owned = {int(p) for p in parts[2].split(",")} if len(parts) > 2 else set()
                with self.lock:
                    self.assignments.append((float(parts[1]), owned))

    def latest(self) -> tuple[float, set[int]] | None:
        with self.lock:
            return self.assignments[-1] if self.assignments else None

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def leave(self) -> None:
        self.process.stdin.write("leave\n")
        self.process.stdin.flush()
        self.process.wait(timeout=30)


def covered_since(members: list[Member], since: float) -> float | None:
    """When the members' latest assignments, one of them made after `since`, cover the topic
    once each: the time of the last change."""
    latest = [m.latest() for m in members]
    if any(a is None for a in latest):
        return None
    owned = [p for _, partitions in latest for p in partitions]
    if sorted(owned) != list(range(PARTITIONS)):
        return None
    last = max(at for at, _ in latest)
    return last if last > since else None


def wait_covered(members: list[Member], since: float, timeout_s: float = 120.0) -> float:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        done = covered_since(members, since)
        if done is not None:
            return done
        time.sleep(0.02)
    raise AssertionError(f"the group did not rebalance within {timeout_s} s")


def settle(members: list[Member], newcomer: Member) -> None:
    """Adds `newcomer` and waits until it owns partitions and the group covers the topic."""
    started = time.monotonic()
    members.append(newcomer)
    end = started + 120
    while not (newcomer.latest() or (0.0, set()))[1]:
        assert time.monotonic() < end, "the newcomer was never assigned"
        time.sleep(0.02)
    wait_covered(members, started)


def measure(cluster: Cluster, protocol: str, rounds: int) -> dict[str, list[float]]:
    """`rounds` kills and clean leaves of one 10-member group of `protocol`."""
    topic = unique_topic(f"rebalance-{protocol}")
    group = f"rebalance-{topic}"
    create_topic(cluster.bootstrap, topic, partitions=PARTITIONS, replicas=3)
    join = lambda: Member(cluster.bootstrap, group, topic, protocol)  # noqa: E731
    members = [join() for _ in range(MEMBERS)]
    try:
        wait_covered(members, 0.0)
        time.sleep(2 * SESSION_MS / 1000)  # Let late joins of the first generation settle.
        results: dict[str, list[float]] = {"kill": [], "leave": []}
        for _ in range(rounds):
            for how in ("kill", "leave"):
                gone = members.pop(0)
                started = time.monotonic()
                gone.kill() if how == "kill" else gone.leave()
                results[how].append(wait_covered(members, started) - started)
                settle(members, join())
        return results
    finally:
        for member in members:
            member.kill()


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    with tempfile.TemporaryDirectory(prefix="cairn-rebalance-") as work:
        cluster = Cluster(Path(work), extra_args=consumer_protocol_args(SESSION_MS, HEARTBEAT_MS))
        cluster.start()
        try:
            for protocol in PROTOCOLS:
                for how, times in measure(cluster, protocol, rounds).items():
                    print(
                        f"{protocol} {how}: n={len(times)} median {statistics.median(times):.2f} s, "
                        f"max {max(times):.2f} s, each {[round(t, 2) for t in times]} "
                        f"(session {SESSION_MS / 1000:.0f} s, heartbeat {HEARTBEAT_MS / 1000:.0f} s)",
                        flush=True,
                    )
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
