"""Three members serving etcd's v3 API, as real processes: three `cairn serve` nodes (each with
`--etcd-listen`), or with `CAIRN_ETCD_REFERENCE=1` a three-member etcd cluster.

A write acknowledged through one member is seen at once by a linearizable read through any
other; every member lists the same three members and names the same leader (Status's `leader`
is the leader's `header.member_id`); a watch through one member gets the writes through the
others, in order; a defragmented member serves as before. Then the leader is SIGKILLed: writes through the survivors
succeed again within a bounded time, and every write acknowledged before or after is read back
through each survivor. The kill is the module's last test: it leaves the cluster with two members.
"""

from __future__ import annotations

import queue

import pyetcd
import pytest
from pyetcd.client import Endpoint

from etcd_support import CLIENT_TIMEOUT_S, unique_prefix
from support import Deadline

# Writes before the kill, and after the survivors took writes again.
WRITES_BEFORE = 60
WRITES_AFTER = 30
# Seconds the survivors have to take writes again after the leader's SIGKILL: a few election
# timeouts (etcd's is 1 s, cairn's core 1.5 s at least) and the clients' reconnection.
FAILOVER_TIMEOUT_S = 30.0
# A write's gRPC deadline while the cluster may have no leader: short, so the loop retries.
RETRY_CALL_TIMEOUT_S = 3


def clients_of(service, timeout=CLIENT_TIMEOUT_S) -> dict:
    """A pyetcd client per running member. Each is told to try its endpoint again at once after
    a failure (pyetcd's default shuns a failed endpoint for 300 s), so a retry loop retries."""
    clients = {}
    for member in service.members:
        if member.alive:
            host, port = service.host_port(member)
            endpoint = Endpoint(host, port, secure=False, time_retry=0)
            clients[member.endpoint] = pyetcd.MultiEndpointEtcd3Client(
                endpoints=[endpoint], timeout=timeout
            )
    return clients


@pytest.fixture
def clients(etcd_cluster):
    opened = clients_of(etcd_cluster)
    try:
        yield opened
    finally:
        for client in opened.values():
            client.close()


def test_members_agree_on_membership_and_leader(etcd_cluster):
    assert len(etcd_cluster.endpoints) == 3
    leader = etcd_cluster.leader()
    statuses = etcd_cluster.statuses()
    member_ids = {s["header"]["member_id"] for s in statuses.values()}
    assert len(member_ids) == 3
    for endpoint in etcd_cluster.endpoints:
        answer = etcd_cluster.etcdctl_json("member", "list", endpoints=[endpoint])
        members = answer["members"]
        assert {m["ID"] for m in members} == member_ids
        urls = {url for m in members for url in m.get("clientURLs", [])}
        assert urls >= {f"http://{e}" for e in etcd_cluster.endpoints}
    assert statuses[leader.endpoint]["leader"] == statuses[leader.endpoint]["header"]["member_id"]
    # One cluster: one cluster id in every answer.
    assert len({s["header"]["cluster_id"] for s in statuses.values()}) == 1


def test_write_through_one_member_read_linearizably_through_another(etcd_cluster, clients):
    prefix = unique_prefix("cluster-lin")
    endpoints = list(clients)
    for i in range(WRITES_BEFORE):
        writer = endpoints[i % 3]
        reader = endpoints[(i + 1) % 3]
        key = f"{prefix}{i:04d}"
        revision = clients[writer].put(key, f"v{i}").header.revision
        value, meta = clients[reader].get(key)
        assert value == f"v{i}".encode(), (writer, reader, key)
        assert meta.mod_revision == revision
    # Through etcdctl too, with an explicit linearizable read, from each member.
    key = prefix + "etcdctl"
    etcd_cluster.etcdctl("put", key, "seen", endpoints=[endpoints[0]])
    for endpoint in endpoints:
        out = etcd_cluster.etcdctl(
            "get", key, "--consistency=l", "--print-value-only", endpoints=[endpoint]
        ).stdout
        assert out.strip() == "seen", endpoint
    # Every member serves the same revision history: a read at an old revision agrees.
    first = clients[endpoints[0]].get(f"{prefix}0000")[1].mod_revision
    for endpoint in endpoints:
        answer = etcd_cluster.etcdctl_json(
            "get", prefix, "--prefix", f"--rev={first + 2}", "--keys-only", endpoints=[endpoint]
        )
        assert answer["count"] == 3, endpoint


def test_defragment_one_member_then_every_member_serves_the_same(etcd_cluster, clients):
    """Defragment is per member (etcd's): the member asked rewrites its store and answers; its
    keys and revisions stay, and writes through it and the others go on."""
    prefix = unique_prefix("cluster-defrag")
    endpoints = list(clients)
    for i in range(20):
        clients[endpoints[i % 3]].put(f"{prefix}{i:02d}", f"v{i}")
    out = etcd_cluster.etcdctl("defrag", endpoints=[endpoints[1]]).stdout
    assert "Finished defragmenting" in out, out
    clients[endpoints[1]].put(f"{prefix}after", "v")
    for endpoint in endpoints:
        answer = etcd_cluster.etcdctl_json(
            "get", prefix, "--prefix", "--keys-only", "--consistency=l", endpoints=[endpoint]
        )
        assert answer["count"] == 21, endpoint


def test_watch_through_one_member_sees_writes_through_the_others(etcd_cluster, clients):
    prefix = unique_prefix("cluster-watch")
    endpoints = list(clients)
    start = clients[endpoints[0]].put(prefix + "start", "0").header.revision
    events: queue.Queue = queue.Queue()

    def on_response(response):
        if isinstance(response, Exception):
            events.put(response)
        else:
            for event in response.events:
                events.put(event)

    watcher = clients[endpoints[2]]
    watch_id = watcher.add_watch_prefix_callback(prefix, on_response, start_revision=start)
    try:
        written = [("start", "0", start)]
        for i in range(WRITES_AFTER):
            name = f"k{i:03d}"
            revision = clients[endpoints[i % 2]].put(prefix + name, f"v{i}").header.revision
            written.append((name, f"v{i}", revision))
        seen = []
        deadline = Deadline(30.0, "the watch's events through the third member")
        while len(seen) < len(written):
            try:
                event = events.get(timeout=max(0.05, deadline.remaining()))
            except queue.Empty:
                deadline.check(f"{len(seen)} of {len(written)} events")
                continue
            if isinstance(event, Exception):
                raise event
            name = event.key.decode().removeprefix(prefix)
            seen.append((name, event.value.decode(), event.mod_revision))
        assert seen == written
    finally:
        watcher.cancel_watch(watch_id)


def put_with_retry(clients: dict, key: str, value: str, deadline: Deadline) -> tuple[str, int]:
    """Puts through the clients in turn until one answers; returns the member and revision. A
    put of the same value again is harmless if an unanswered attempt was applied after all."""
    errors = []
    while True:
        for endpoint, client in clients.items():
            try:
                return endpoint, client.put(key, value).header.revision
            except Exception as error:  # noqa: BLE001 - any failure is retried until the deadline
                errors.append(f"{endpoint}: {type(error).__name__}: {error}")
        deadline.check(f"last errors: {errors[-3:]}")


@pytest.mark.timeout(180)
def test_leader_sigkill_survivors_take_writes_and_keep_everything(etcd_cluster, clients):
    prefix = unique_prefix("cluster-kill")
    acknowledged: dict[str, str] = {}
    endpoints = list(clients)
    for i in range(WRITES_BEFORE):
        key = f"{prefix}before-{i:04d}"
        clients[endpoints[i % 3]].put(key, f"b{i}")
        acknowledged[key] = f"b{i}"

    leader = etcd_cluster.leader()
    leader.kill()
    assert not leader.alive
    survivors = clients_of(etcd_cluster, timeout=RETRY_CALL_TIMEOUT_S)
    try:
        assert leader.endpoint not in survivors and len(survivors) == 2

        # The first write after the kill: retried until the survivors elected a leader.
        deadline = Deadline(FAILOVER_TIMEOUT_S, "a write through the survivors after the kill")
        key = prefix + "first-after"
        put_with_retry(survivors, key, "a", deadline)
        acknowledged[key] = "a"

        # Then writes go through either survivor (retried if one still catches up).
        for i in range(WRITES_AFTER):
            key = f"{prefix}after-{i:04d}"
            names = list(survivors)
            names = names[i % 2 :] + names[: i % 2]
            ordered = {name: survivors[name] for name in names}
            put_with_retry(ordered, key, f"a{i}", Deadline(FAILOVER_TIMEOUT_S, f"write {key}"))
            acknowledged[key] = f"a{i}"

        # Nothing acknowledged is lost: every key, read linearizably through each survivor.
        for endpoint, client in survivors.items():
            found = {meta.key.decode(): value.decode() for value, meta in client.get_prefix(prefix)}
            missing = sorted(set(acknowledged) - set(found))
            assert not missing, f"{endpoint} lost {len(missing)} writes, e.g. {missing[:5]}"
            wrong = {k: (found[k], v) for k, v in acknowledged.items() if found[k] != v}
            assert not wrong, f"{endpoint} has other values: {wrong}"
            assert set(found) == set(acknowledged)
    finally:
        for client in survivors.values():
            client.close()

    # The survivors agree on a new leader, not the killed member.
    new_leader = etcd_cluster.leader()
    assert new_leader is not leader and new_leader.alive
