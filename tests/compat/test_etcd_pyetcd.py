"""etcd-sdk-python (module `pyetcd`: python-etcd3's API, synchronous, on grpcio) against one
etcd API endpoint: KV and a txn compare-and-swap, a lease with keys (refresh, revoke, expiry),
its lock recipe (a second holder waits for the first), a watch from a start revision resumed
after the last event seen, and a watch from a compacted revision.

aetcd, the second Python client, runs in processes of its own (test_etcd_aetcd.py): both
register etcd's `kv.proto` in protobuf's default descriptor pool, so they cannot share one.
Every call has a gRPC deadline (CLIENT_TIMEOUT_S); waits poll a condition up to a deadline.
"""

from __future__ import annotations

import queue
import threading

import pyetcd
import pytest

from etcd_support import CLIENT_TIMEOUT_S, unique_prefix, wait_until
from support import Deadline

# A lease's TTL for the expiry test, and the slack its expiry may take on top of it.
SHORT_TTL_S = 2
EXPIRY_SLACK_S = 10.0
# Seconds to wait for watch events or a lock.
WAIT_S = 30.0
# Keys written before and after the first part of the watch is read.
WATCH_BEFORE = 20
WATCH_AFTER = 10


@pytest.fixture
def client(etcd):
    host, port = etcd.host_port()
    instance = pyetcd.client(host=host, port=port, timeout=CLIENT_TIMEOUT_S)
    try:
        yield instance
    finally:
        instance.close()


def test_pyetcd_kv_and_txn_compare_and_swap(client):
    prefix = unique_prefix("py-kv")
    key = prefix + "k"
    first = client.put(key, "v1").header.revision
    value, meta = client.get(key)
    assert value == b"v1"
    assert (meta.version, meta.create_revision, meta.mod_revision) == (1, first, first)
    assert client.get(prefix + "missing") == (None, None)

    txn = client.transactions
    # CAS on the version: succeeds once, the second (stale) attempt takes the failure branch.
    ok, responses = client.transaction(
        compare=[txn.version(key) == 1],
        success=[txn.put(key, "v2")],
        failure=[txn.get(key)],
    )
    assert ok is True
    ok, responses = client.transaction(
        compare=[txn.version(key) == 1],
        success=[txn.put(key, "v3")],
        failure=[txn.get(key)],
    )
    assert ok is False
    ((value, meta),) = responses[0]
    assert (value, meta.version) == (b"v2", 2)

    # CAS on the value, with a delete and a put in one revision.
    ok, _ = client.transaction(
        compare=[txn.value(key) == "v2", txn.mod(key) > first],
        success=[txn.delete(key), txn.put(prefix + "moved", "v2")],
        failure=[],
    )
    assert ok is True
    assert client.get(key) == (None, None)
    value, meta = client.get(prefix + "moved")
    assert value == b"v2"

    # create == 0: put-if-absent.
    assert client.put_if_not_exists(prefix + "once", "a") is True
    assert client.put_if_not_exists(prefix + "once", "b") is False
    assert client.get(prefix + "once")[0] == b"a"

    # A range by prefix, sorted by key.
    assert [(v, m.key) for v, m in client.get_prefix(prefix, sort_order="ascend")] == [
        (b"v2", (prefix + "moved").encode()),
        (b"a", (prefix + "once").encode()),
    ]
    deleted = client.delete_prefix(prefix)
    assert deleted.deleted == 2
    assert list(client.get_prefix(prefix)) == []

    # A key twice in one txn is refused.
    with pytest.raises(Exception, match="duplicate key given in txn request"):
        client.transaction(compare=[], success=[txn.put(key, "1"), txn.put(key, "2")], failure=[])


def test_pyetcd_lease_keys_refresh_revoke_expiry(client):
    prefix = unique_prefix("py-lease")
    lease = client.lease(60)
    client.put(prefix + "a", "1", lease=lease)
    client.put(prefix + "b", "2", lease=lease)
    client.put(prefix + "free", "3")
    assert sorted(lease.keys) == [(prefix + "a").encode(), (prefix + "b").encode()]
    assert lease.granted_ttl == 60
    assert 0 < lease.remaining_ttl <= 60
    (response,) = list(lease.refresh())
    assert response.TTL == 60
    assert client.get(prefix + "a")[1].lease_id == lease.id

    lease.revoke()
    assert [m.key for _, m in client.get_prefix(prefix)] == [(prefix + "free").encode()]
    with pytest.raises(Exception, match="requested lease not found"):
        client.revoke_lease(lease.id)
    assert client.get_lease_info(lease.id).TTL == -1

    # A short lease that is not refreshed expires with its key.
    short = client.lease(SHORT_TTL_S)
    client.put(prefix + "short", "x", lease=short)
    assert client.get(prefix + "short")[0] == b"x"
    wait_until(
        "the short lease's key to be deleted",
        SHORT_TTL_S + EXPIRY_SLACK_S,
        lambda: client.get(prefix + "short") == (None, None),
        0.1,
    )
    assert client.get(prefix + "free")[0] == b"3"


def test_pyetcd_lock_second_holder_waits(client, etcd):
    name = unique_prefix("py-lock").strip("/").replace("/", "-")
    first = client.lock(name, ttl=30)
    assert first.acquire(timeout=WAIT_S) is True
    assert first.is_acquired()

    host, port = etcd.host_port()
    other_client = pyetcd.client(host=host, port=port, timeout=CLIENT_TIMEOUT_S)
    try:
        second = other_client.lock(name, ttl=30)
        # Held by the first: a bounded attempt gives up.
        assert second.acquire(timeout=1) is False

        outcome: queue.Queue = queue.Queue()
        waiter = threading.Thread(
            target=lambda: outcome.put(second.acquire(timeout=WAIT_S)), daemon=True
        )
        waiter.start()
        assert outcome.empty()
        assert first.release() is True
        assert outcome.get(timeout=WAIT_S) is True
        assert second.is_acquired() and not first.is_acquired()
        assert second.release() is True
        waiter.join(timeout=WAIT_S)
    finally:
        other_client.close()


class PyWatch:
    """A pyetcd prefix watch whose events (or errors) go to a queue, taken with a deadline."""

    def __init__(self, client, prefix: str, start_revision: int):
        self.client = client
        self.events: queue.Queue = queue.Queue()
        self.watch_id = client.add_watch_prefix_callback(
            prefix, self._on_response, start_revision=start_revision
        )

    def _on_response(self, response) -> None:
        if isinstance(response, Exception):
            self.events.put(response)
            return
        for event in response.events:
            self.events.put(event)

    def take(self, count: int, what: str) -> list[tuple[str, bytes, bytes, int]]:
        deadline = Deadline(WAIT_S, what)
        taken = []
        while len(taken) < count:
            try:
                event = self.events.get(timeout=max(0.05, deadline.remaining()))
            except queue.Empty:
                deadline.check(f"{len(taken)} of {count} events")
                continue
            if isinstance(event, Exception):
                raise event
            kind = "DELETE" if isinstance(event, pyetcd.events.DeleteEvent) else "PUT"
            taken.append((kind, event.key, event.value, event.mod_revision))
        return taken

    def cancel(self) -> None:
        self.client.cancel_watch(self.watch_id)


def test_pyetcd_watch_from_revision_and_resume(client):
    prefix = unique_prefix("py-watch")
    written = []
    for i in range(WATCH_BEFORE):
        key = f"{prefix}{i % 7:02d}"
        revision = client.put(key, f"v{i}").header.revision
        written.append(("PUT", key.encode(), f"v{i}".encode(), revision))
    revision = client.delete(f"{prefix}00", return_response=True).header.revision
    written.append(("DELETE", f"{prefix}00".encode(), b"", revision))

    half = len(written) // 2
    watch = PyWatch(client, prefix, written[0][3])
    try:
        seen = watch.take(half, "the first half of the history")
    finally:
        watch.cancel()
    assert seen == written[:half]

    for i in range(WATCH_AFTER):
        key = f"{prefix}late-{i}"
        revision = client.put(key, "late").header.revision
        written.append(("PUT", key.encode(), b"late", revision))

    # Resumed after the last event seen: exactly the rest, in order, nothing twice.
    resumed = PyWatch(client, prefix, seen[-1][3] + 1)
    try:
        rest = resumed.take(len(written) - half, "the rest of the history")
        assert rest == written[half:]
        # Nothing more queued: the next event is the next write.
        revision = client.put(prefix + "sentinel", "s").header.revision
        assert resumed.take(1, "the sentinel") == [
            ("PUT", (prefix + "sentinel").encode(), b"s", revision)
        ]
    finally:
        resumed.cancel()


def test_pyetcd_watch_from_a_compacted_revision_fails(client):
    prefix = unique_prefix("py-compact")
    old = client.put(prefix + "k", "1").header.revision
    new = client.put(prefix + "k", "2").header.revision
    client.compact(new)
    # etcd creates the watch, then cancels it with the compacted revision; the library hands
    # that on as RevisionCompactedError (at creation or as the watch's first event).
    with pytest.raises(pyetcd.exceptions.RevisionCompactedError) as caught:
        PyWatch(client, prefix, old).take(1, "the watch's cancellation")
    assert caught.value.compacted_revision >= new
    with pytest.raises(Exception, match="required revision has been compacted"):
        client.get(prefix + "k", revision=old)
