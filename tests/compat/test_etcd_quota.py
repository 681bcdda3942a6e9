"""The space quota with etcdctl (Debian's etcd-client, 3.4.x): a member started with a small
quota (`--etcd-quota-backend-bytes`, etcd's `--quota-backend-bytes`) is filled until a put is
refused with etcd's "database space exceeded"; the NOSPACE alarm is then listed (`alarm list`,
`endpoint status` errors) and refuses every write that may grow the store (puts, txns with a
put, lease grants) while reads, deletes and compactions go on; `alarm disarm` clears it.

Run against real etcd with `CAIRN_ETCD_REFERENCE=1` (README.md); by default against `cairn
serve --etcd-listen`.
"""

from __future__ import annotations

import json

import pytest

from etcd_support import running_etcd, unique_prefix

# Small enough to fill in a few seconds, above a new store's size on both systems.
QUOTA_BYTES = 4 * 1024 * 1024
VALUE = "x" * (64 * 1024)
# More puts than fit: the quota must refuse one of them.
PUTS_MAX = 400
NO_SPACE = "database space exceeded"


@pytest.fixture(scope="module")
def etcd(tmp_path_factory):
    yield from running_etcd(tmp_path_factory.mktemp("etcd-quota"), 1, quota_bytes=QUOTA_BYTES)


def refused(etcd, *args: str, input: str | None = None) -> str:
    """Runs etcdctl expecting the NOSPACE refusal; returns its error text."""
    result = etcd.etcdctl(*args, check=False, input=input)
    assert result.returncode != 0, (args, result.stdout)
    assert NO_SPACE in result.stderr, (args, result.stderr)
    return result.stderr


def alarms(etcd) -> list[str]:
    return [line for line in etcd.etcdctl("alarm", "list").stdout.splitlines() if line.strip()]


def test_a_full_store_raises_nospace_until_disarmed(etcd):
    prefix = unique_prefix("quota")
    assert alarms(etcd) == []
    written = 0
    for i in range(PUTS_MAX):
        result = etcd.etcdctl("put", f"{prefix}{i:04}", VALUE, check=False)
        if result.returncode != 0:
            assert NO_SPACE in result.stderr, result.stderr
            break
        written += 1
    assert 0 < written < PUTS_MAX, written

    listed = alarms(etcd)
    assert len(listed) == 1 and "alarm:NOSPACE" in listed[0], listed
    status = json.loads(etcd.etcdctl("endpoint", "status", "-w", "json").stdout)
    assert any("NOSPACE" in error for error in status[0]["Status"].get("errors", [])), status

    # What may grow the store is refused, a small put included; the rest is served.
    refused(etcd, "put", f"{prefix}small", "v")
    refused(etcd, "lease", "grant", "60")
    refused(etcd, "txn", input=f"\n\nput {prefix}in-txn v\n\n")
    got = etcd.etcdctl("get", f"{prefix}0000", "--print-value-only").stdout
    assert got.strip() == VALUE
    deleted = etcd.etcdctl("del", f"{prefix}0000").stdout
    assert deleted.strip() == "1"
    revision = json.loads(etcd.etcdctl("get", prefix, "-w", "json").stdout)["header"]["revision"]
    etcd.etcdctl("compaction", str(revision))

    # Free the space: delete everything, compact, defragment; the store shrinks under the quota.
    etcd.etcdctl("del", prefix, "--prefix")
    revision = json.loads(etcd.etcdctl("get", prefix, "-w", "json").stdout)["header"]["revision"]
    etcd.etcdctl("compaction", "--physical", str(revision))
    full = db_size(etcd)
    etcd.etcdctl("defrag")
    assert db_size(etcd) < min(full, QUOTA_BYTES), (db_size(etcd), full)

    disarmed = etcd.etcdctl("alarm", "disarm").stdout
    assert "alarm:NOSPACE" in disarmed, disarmed
    assert alarms(etcd) == []
    etcd.etcdctl("put", f"{prefix}after", "v")
    assert etcd.etcdctl("get", f"{prefix}after", "--print-value-only").stdout.strip() == "v"


def db_size(etcd) -> int:
    return json.loads(etcd.etcdctl("endpoint", "status", "-w", "json").stdout)[0]["Status"]["dbSize"]
