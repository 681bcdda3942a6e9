"""How long a 10-member consumer group takes to rebalance when a member dies (SIGKILL) and when
one leaves cleanly: issue 11's target is at most 2 x the session timeout after a death.

Not a test (pytest does not collect it): a measurement, run by hand from the repository root
after `cargo xtask compat` built the binaries and the virtualenv:

    CAIRN_BIN=target/release/cairn CAIRN_FAULT_PROXY_BIN=target/debug/fault-proxy \\
        target/compat-venv/bin/python tests/compat/rebalance_bench.py [ROUNDS]

A 3-node cluster (cluster.py) serves a 20-partition, 3-replica topic; ten member processes
(confluent-kafka, session.timeout.ms 10000, heartbeat.interval.ms 1000) print each assignment
with its CLOCK_MONOTONIC time. A round kills one member (or closes it) and measures from then
until the last survivor printed the assignment that completes the new generation (the
survivors' partitions cover the topic again).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster import Cluster  # noqa: E402
from support import create_topic, unique_topic  # noqa: E402

MEMBERS = 10
PARTITIONS = 20
SESSION_MS = 10_000

MEMBER = """
import sys, threading, time
from confluent_kafka import Consumer
consumer = Consumer({
    "bootstrap.servers": sys.argv[1], "group.id": sys.argv[2],
    "session.timeout.ms": %d, "heartbeat.interval.ms": 1000,
    "enable.auto.commit": False, "auto.offset.reset": "latest",
})
def assigned(c, partitions):
    print("assigned", time.monotonic(), ",".join(str(p.partition) for p in partitions), flush=True)
leaving = threading.Event()
threading.Thread(target=lambda: (sys.stdin.readline(), leaving.set()), daemon=True).start()
consumer.subscribe([sys.argv[3]], on_assign=assigned)
while not leaving.is_set():
    consumer.poll(0.05)
consumer.close()
""" % SESSION_MS


class Member:
    def __init__(self, bootstrap: str, group: str, topic: str):
        self.process = subprocess.Popen(
            [sys.executable, "-c", MEMBER, bootstrap, group, topic],
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
    """When the members' latest assignments, all made after `since`, cover the topic."""
    latest = [m.latest() for m in members]
    if any(a is None or a[0] <= since for a in latest):
        return None
    owned = [p for _, partitions in latest for p in partitions]
    if sorted(owned) != list(range(PARTITIONS)):
        return None
    return max(at for at, _ in latest)


def wait_covered(members: list[Member], since: float, timeout_s: float = 120.0) -> float:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        done = covered_since(members, since)
        if done is not None:
            return done
        time.sleep(0.02)
    raise AssertionError(f"the group did not rebalance within {timeout_s} s")


def settle(members: list[Member], newcomer: Member) -> None:
    """Adds `newcomer` and waits for the generation it joins: every member assigned again
    around the newcomer's first assignment, covering the topic."""
    members.append(newcomer)
    end = time.monotonic() + 120
    while newcomer.latest() is None:
        assert time.monotonic() < end, "the newcomer was never assigned"
        time.sleep(0.02)
    wait_covered(members, newcomer.latest()[0] - 1.0)


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    with tempfile.TemporaryDirectory(prefix="cairn-rebalance-") as work:
        cluster = Cluster(Path(work))
        cluster.start()
        members: list[Member] = []
        try:
            topic = unique_topic("rebalance")
            group = f"rebalance-{topic}"
            create_topic(cluster.bootstrap, topic, partitions=PARTITIONS, replicas=3)
            members = [Member(cluster.bootstrap, group, topic) for _ in range(MEMBERS)]
            wait_covered(members, 0.0)
            time.sleep(2 * SESSION_MS / 1000)  # Let late joins of the first generation settle.
            results: dict[str, list[float]] = {"kill": [], "leave": []}
            for _ in range(rounds):
                for how in ("kill", "leave"):
                    gone = members.pop(0)
                    started = time.monotonic()
                    gone.kill() if how == "kill" else gone.leave()
                    results[how].append(wait_covered(members, started) - started)
                    settle(members, Member(cluster.bootstrap, group, topic))
            for how, times in results.items():
                print(
                    f"{how}: n={len(times)} median {statistics.median(times):.2f} s, "
                    f"max {max(times):.2f} s, each {[round(t, 2) for t in times]} "
                    f"(session timeout {SESSION_MS / 1000:.0f} s)"
                )
        finally:
            for member in members:
                member.kill()
            cluster.stop()


if __name__ == "__main__":
    main()
