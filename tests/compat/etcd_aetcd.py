"""aetcd (asyncio etcd v3 client) checks, run one per process by test_etcd_aetcd.py:

    python etcd_aetcd.py HOST:PORT CHECK

exits 0 if the check held, 1 with the traceback on standard error if not. aetcd cannot share a
process with etcd-sdk-python (test_etcd_pyetcd.py): both register etcd's `kv.proto` in
protobuf's default descriptor pool. Every call has a gRPC deadline; waits poll a condition up to
a deadline (the caller bounds the whole process too).
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid

import aetcd

# Seconds one client call may take.
CLIENT_TIMEOUT_S = 10
# A lease's TTL for the expiry check, and the slack its expiry may take on top of it.
SHORT_TTL_S = 2
EXPIRY_SLACK_S = 10.0
# Seconds to wait for watch events or a lock.
WAIT_S = 30.0
# Keys written before and after the first part of the watch is read.
WATCH_BEFORE = 20
WATCH_AFTER = 10


def unique_prefix(name: str) -> bytes:
    return f"/compat/{name}/{uuid.uuid4().hex[:10]}/".encode()


class Deadline:
    def __init__(self, seconds: float, what: str):
        self.what = what
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def check(self, detail: str = "") -> None:
        if time.monotonic() >= self.end:
            raise AssertionError(f"timed out waiting for {self.what} {detail}")


async def kv_and_txn_compare_and_swap(client: aetcd.Client) -> None:
    prefix = unique_prefix("a-kv")
    key = prefix + b"k"
    first = (await client.put(key, b"v1")).header.revision
    got = await client.get(key)
    assert (got.value, got.version, got.create_revision, got.mod_revision) == (
        b"v1", 1, first, first,
    ), got  # fmt: skip
    assert await client.get(prefix + b"missing") is None

    txn = client.transactions
    # CAS on the version: succeeds once, the stale second attempt takes the failure branch.
    ok, _ = await client.transaction(
        compare=[txn.version(key) == 1], success=[txn.put(key, b"v2")], failure=[txn.get(key)]
    )
    assert ok is True
    ok, responses = await client.transaction(
        compare=[txn.version(key) == 1], success=[txn.put(key, b"v3")], failure=[txn.get(key)]
    )
    assert ok is False
    ((value, meta),) = responses[0]
    assert (value, meta.version) == (b"v2", 2), responses

    # CAS on value and create revision, two puts in one revision.
    ok, _ = await client.transaction(
        compare=[txn.value(key) == b"v2", txn.create(key) == first],
        success=[txn.put(key, b"v3"), txn.put(prefix + b"other", b"o")],
        failure=[],
    )
    assert ok is True
    both = await client.get_prefix(prefix)
    assert [(kv.key, kv.value) for kv in both] == [(key, b"v3"), (prefix + b"other", b"o")]
    assert both[0].mod_revision == both[1].mod_revision

    # replace: a value CAS.
    assert await client.replace(key, b"v3", b"v4") is True
    assert await client.replace(key, b"v3", b"v5") is False
    assert (await client.get(key)).value == b"v4"

    deleted = await client.delete_prefix(prefix)
    assert deleted.deleted == 2
    assert len(await client.get_prefix(prefix)) == 0

    # A key twice in one txn is refused.
    try:
        await client.transaction(
            compare=[], success=[txn.put(key, b"1"), txn.put(key, b"2")], failure=[]
        )
    except Exception as error:  # noqa: BLE001 - the message is what is checked
        assert "duplicate key given in txn request" in str(error), error
    else:
        raise AssertionError("a txn writing one key twice was accepted")


async def lease_keys_refresh_revoke_expiry(client: aetcd.Client) -> None:
    prefix = unique_prefix("a-lease")
    lease = await client.lease(60)
    await client.put(prefix + b"a", b"1", lease=lease)
    await client.put(prefix + b"free", b"2")
    assert await lease.keys() == [prefix + b"a"]
    assert await lease.granted_ttl() == 60
    assert 0 < await lease.remaining_ttl() <= 60
    refreshed = await lease.refresh()
    assert refreshed.TTL == 60, refreshed
    assert (await client.get(prefix + b"a")).lease == lease.id

    await lease.revoke()
    assert [kv.key for kv in await client.get_prefix(prefix)] == [prefix + b"free"]
    try:
        await client.revoke_lease(lease.id)
    except Exception as error:  # noqa: BLE001 - the message is what is checked
        assert "requested lease not found" in str(error), error
    else:
        raise AssertionError("a revoked lease was revoked again")

    # A short lease that is not refreshed expires with its key.
    short = await client.lease(SHORT_TTL_S)
    await client.put(prefix + b"short", b"x", lease=short)
    deadline = Deadline(SHORT_TTL_S + EXPIRY_SLACK_S, "the short lease's key to be deleted")
    while await client.get(prefix + b"short") is not None:
        deadline.check()
        await asyncio.sleep(0.1)
    assert (await client.get(prefix + b"free")).value == b"2"


async def lock_second_holder_waits(client: aetcd.Client) -> None:
    name = unique_prefix("a-lock")
    first = client.lock(name, ttl=30)
    assert await first.acquire(timeout=WAIT_S) is True
    second = client.lock(name, ttl=30)
    # Held by the first: a bounded attempt gives up.
    assert await second.acquire(timeout=1) is False

    waiting = asyncio.ensure_future(second.acquire(timeout=WAIT_S))
    await asyncio.sleep(0)
    assert not waiting.done()
    await first.release()
    assert await asyncio.wait_for(waiting, WAIT_S) is True
    assert await second.is_acquired() and not await first.is_acquired()
    await second.release()


async def take(iterator, count: int, what: str) -> list:
    deadline = Deadline(WAIT_S, what)
    taken = []
    while len(taken) < count:
        try:
            event = await asyncio.wait_for(iterator.__anext__(), max(0.05, deadline.remaining()))
        except asyncio.TimeoutError:
            deadline.check(f"({len(taken)} of {count} events)")
            continue
        taken.append((event.kind, event.kv.key, event.kv.value, event.kv.mod_revision))
    return taken


async def watch_from_revision_and_resume(client: aetcd.Client) -> None:
    prefix = unique_prefix("a-watch")
    written = []
    for i in range(WATCH_BEFORE):
        key = prefix + b"%02d" % (i % 5)
        revision = (await client.put(key, b"v%d" % i)).header.revision
        written.append(("PUT", key, b"v%d" % i, revision))
    revision = (await client.delete(prefix + b"01")).header.revision
    written.append(("DELETE", prefix + b"01", b"", revision))

    half = len(written) // 2
    watch = await client.watch_prefix(prefix, start_revision=written[0][3])
    seen = await take(watch.__aiter__(), half, "the first half of the history")
    await watch.cancel()
    assert seen == written[:half], (seen, written[:half])

    for i in range(WATCH_AFTER):
        key = prefix + b"late-%d" % i
        revision = (await client.put(key, b"late")).header.revision
        written.append(("PUT", key, b"late", revision))

    # Resumed after the last event seen: exactly the rest, in order, nothing twice.
    resumed = await client.watch_prefix(prefix, start_revision=seen[-1][3] + 1)
    iterator = resumed.__aiter__()
    rest = await take(iterator, len(written) - half, "the rest of the history")
    assert rest == written[half:], (rest, written[half:])
    # Nothing more queued: the next event is the next write.
    revision = (await client.put(prefix + b"sentinel", b"s")).header.revision
    assert await take(iterator, 1, "the sentinel") == [
        ("PUT", prefix + b"sentinel", b"s", revision)
    ]
    await resumed.cancel()


CHECKS = {
    "kv_txn": kv_and_txn_compare_and_swap,
    "lease": lease_keys_refresh_revoke_expiry,
    "lock": lock_second_holder_waits,
    "watch": watch_from_revision_and_resume,
}


async def main(endpoint: str, check: str) -> None:
    host, port = endpoint.rsplit(":", 1)
    async with aetcd.Client(host=host, port=int(port), timeout=CLIENT_TIMEOUT_S) as client:
        await CHECKS[check](client)


if __name__ == "__main__":
    endpoint, check = sys.argv[1:3]
    asyncio.run(main(endpoint, check))
    print(f"ok {check}")
