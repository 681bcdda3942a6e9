"""A cluster of real `cairn serve` processes on loopback for the nemesis, with a fault proxy on
every peer link.

The peer transport's lower node id dials the higher (RFC 0003 §6), so each node pair has one
link, and each node names the peers it dials at the proxy of that pair: the cluster is started
with `--cluster-id`, which lets the nodes' `--peers` lists differ. The proxies are
cairn-testkit's `FaultProxy`, run by its `fault-proxy` binary (`CAIRN_FAULT_PROXY_BIN`, set by
`cargo xtask compat`) and driven over its stdin.
"""

from __future__ import annotations

import itertools
import json
import os
import select
import signal
import subprocess
import urllib.request
import uuid
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from conftest import Broker, cairn_binary, free_loopback_ports
from support import Deadline

# Seconds an admin request (CreateTopics, DeleteTopics, Metadata) may take.
ADMIN_TIMEOUT_S = 20.0
# Seconds the fault proxy has to answer a command.
PROXY_ANSWER_TIMEOUT_S = 10.0


def fault_proxy_binary() -> Path:
    path = os.environ.get("CAIRN_FAULT_PROXY_BIN")
    if path is None or not Path(path).is_file():
        pytest.fail(
            f"fault-proxy binary not found ({path!r}): run `cargo xtask compat`, or build it "
            "with `cargo build --bin fault-proxy` and set CAIRN_FAULT_PROXY_BIN",
            pytrace=False,
        )
    return Path(path)


class FaultProxies:
    """The `fault-proxy` process and the proxies it runs, one command per call."""

    def __init__(self, binary: Path):
        self.process = subprocess.Popen(
            [str(binary)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )

    def call(self, line: str) -> str:
        """Sends one command and returns the answer after `ok`; fails on `error: ...`."""
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], PROXY_ANSWER_TIMEOUT_S)
        answer = self.process.stdout.readline().strip() if ready else ""
        if not answer.startswith("ok"):
            raise AssertionError(f"fault-proxy answered {answer!r} to {line!r}")
        return answer[2:].strip()

    def start(self, name: str, target_port: int) -> int:
        """A proxy to 127.0.0.1:`target_port`; returns the port it listens on."""
        answer = self.call(f"start {name} 127.0.0.1:{target_port}")
        return int(answer.rsplit(":", 1)[1])

    def set(self, name: str, fault: str) -> None:
        self.call(f"set {name} {fault}")

    def cut(self, name: str) -> None:
        self.call(f"cut {name}")

    def close(self) -> None:
        """End of input stops every proxy."""
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=PROXY_ANSWER_TIMEOUT_S)


class ClusterNode(Broker):
    """A `Broker` that is one node of a static cluster."""

    def __init__(
        self, binary: Path, work_dir: Path, node_id: int, peer_port: int, extra_args: tuple[str, ...] = ()
    ):
        super().__init__(binary, work_dir, extra_args)
        self.node_id = node_id
        self.peer_port = peer_port
        self.cluster_args: list[str] = []
        # `127.0.0.1:PORT` of the node's etcd API, for a cluster started with `etcd_listen`.
        self.etcd_endpoint: str | None = None

    def command(self) -> list[str]:
        return super().command() + self.cluster_args

    def pause(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)


def consumer_protocol_args(session_ms: int, heartbeat_ms: int) -> tuple[str, ...]:
    """`cairn serve` flags for the consumer protocol's (KIP-848) session and heartbeat."""
    return (
        "--group-consumer-session-timeout-ms", str(session_ms),
        "--group-consumer-heartbeat-interval-ms", str(heartbeat_ms),
    )  # fmt: skip


def pair_name(a: int, b: int) -> str:
    low, high = sorted((a, b))
    return f"{low}-{high}"


class Cluster:
    """`size` nodes with ids 1..=size, every peer link through its own fault proxy; each node
    gets `extra_args` to `cairn serve`. With `etcd_listen`, each node also serves etcd's v3 API
    on a port of its own (`--etcd-listen`, the node's `etcd_endpoint`)."""

    def __init__(
        self,
        work_dir: Path,
        size: int = 3,
        extra_args: tuple[str, ...] = (),
        etcd_listen: bool = False,
    ):
        binary = cairn_binary()
        self.proxies = FaultProxies(fault_proxy_binary())
        # Peer ports, then (with `etcd_listen`) etcd ports, all distinct.
        ports = free_loopback_ports(size * 2 if etcd_listen else size)
        etcd_ports = ports[size:]
        ports = ports[:size]
        self.nodes = {
            node_id: ClusterNode(binary, work_dir / f"node-{node_id}", node_id, port, extra_args)
            for node_id, port in zip(range(1, size + 1), ports, strict=True)
        }
        proxy_port = {}
        for low, high in itertools.combinations(sorted(self.nodes), 2):
            name = pair_name(low, high)
            proxy_port[name] = self.proxies.start(name, self.nodes[high].peer_port)
        cluster_id = str(uuid.uuid4())
        for node in self.nodes.values():
            peers = []
            for other in self.nodes.values():
                # Only the lower id of a pair dials, through the pair's proxy.
                if other.node_id > node.node_id:
                    port = proxy_port[pair_name(node.node_id, other.node_id)]
                else:
                    port = other.peer_port
                peers.append(f"{other.node_id}=127.0.0.1:{port}")
            node.cluster_args = [
                "--node-id", str(node.node_id),
                "--peer-listen", f"127.0.0.1:{node.peer_port}",
                "--peers", ",".join(peers),
                "--cluster-id", cluster_id,
            ]  # fmt: skip
        if etcd_listen:
            for node, port in zip(self.nodes.values(), etcd_ports, strict=True):
                node.etcd_endpoint = f"127.0.0.1:{port}"
                node.cluster_args += ["--etcd-listen", node.etcd_endpoint]
        self.bootstrap = ",".join(node.bootstrap for node in self.nodes.values())
        self._admin: AdminClient | None = None

    def start(self) -> None:
        """Starts every node, then waits until each is ready (a majority must run first)."""
        for node in self.nodes.values():
            node.spawn()
        for node in self.nodes.values():
            node.wait_ready()

    def admin(self) -> AdminClient:
        """The cluster's admin client for metadata, one for the cluster's life."""
        if self._admin is None:
            self._admin = self.new_admin()
        return self._admin

    def new_admin(self) -> AdminClient:
        """A new admin client; keep it while its futures run (a client that is garbage
        collected never completes them). Requests get ADMIN_TIMEOUT_S: a creation waits up to
        5 s for its partitions' leaders, and a forwarded one for the core's failover too."""
        timeout_ms = int(ADMIN_TIMEOUT_S * 1000)
        return AdminClient({"bootstrap.servers": self.bootstrap, "socket.timeout.ms": timeout_ms})

    def links_of(self, node_id: int) -> list[str]:
        return [pair_name(node_id, other) for other in self.nodes if other != node_id]

    def isolate(self, node_id: int) -> None:
        """Blackholes every peer link of the node, both ways; connections stay open."""
        for link in self.links_of(node_id):
            self.proxies.set(link, "drop both")

    def heal(self, node_id: int) -> None:
        """Lets the node's peer links pass again, closing the connections that lost bytes."""
        for link in self.links_of(node_id):
            self.proxies.set(link, "pass")
            self.proxies.cut(link)

    def stop(self) -> None:
        """Stops every running node (SIGTERM, exit 0 checked) and the proxies."""
        try:
            for node in self.nodes.values():
                if node.process is not None:
                    node.resume()
                    node.stop()
        finally:
            self.kill()

    def liveness_seen_by(self, observer: int, node_id: int) -> str | None:
        """`alive` or `dead`: the liveness of `node_id` in `observer`'s `GET /cluster`."""
        url = f"{self.nodes[observer].admin_url}/cluster"
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                status = json.load(answer)
        except OSError:
            return None
        return next((n["liveness"] for n in status["nodes"] if n["id"] == node_id), None)

    def quiesced(self, node_id: int) -> int | None:
        """`node_id`'s `cairn_raft_groups_quiesced` gauge: its groups whose timers stopped."""
        url = f"{self.nodes[node_id].admin_url}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                text = answer.read().decode()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith("cairn_raft_groups_quiesced "):
                return int(float(line.split()[1]))
        return None

    def kill(self) -> None:
        """SIGKILLs every node and stops the proxies, for a run that failed."""
        for node in self.nodes.values():
            node.kill()
        self.proxies.close()

    def log_tails(self, lines: int = 80) -> str:
        return "\n".join(node.log_tail(lines) for node in self.nodes.values())


def leaders(admin: AdminClient, topic: str) -> tuple[dict[int, int], int]:
    """Each partition's leader (-1: none known) and the controller, from a Metadata request."""
    metadata = admin.list_topics(topic, timeout=5)
    found = metadata.topics.get(topic)
    if found is None or found.error is not None:
        return {}, metadata.controller_id
    return {p.id: p.leader for p in found.partitions.values()}, metadata.controller_id


def wait_until(what: str, timeout_s: float, check) -> None:
    """Polls `check()` (every 50 ms) until it returns true; fails after `timeout_s`."""
    deadline = Deadline(timeout_s, what)
    while not check():
        deadline.check("")
        select.select([], [], [], 0.05)
