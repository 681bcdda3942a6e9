"""etcdctl (Debian's etcd-client, 3.4.x) against one etcd API endpoint: KV with its flags, txn,
compaction, leases, lock, election, watch, endpoint status and member list.

Outputs are compared by meaning: JSON fields (`-w json`) where etcdctl has them, the simple
format's lines otherwise, etcd's error messages by substring. Run against real etcd with
`CAIRN_ETCD_REFERENCE=1` (README.md); by default against `cairn serve --etcd-listen`.
"""

from __future__ import annotations

import json
import signal


from etcd_support import (
    LineReader,
    b64,
    etcdctl_popen,
    kvs_of,
    stop_process,
    unb64,
    unique_prefix,
    wait_until,
)
from support import Deadline

# Seconds a long-running etcdctl (watch, lock, elect) has to show what a test waits for.
STREAM_TIMEOUT_S = 30.0
# A lease's TTL for the expiry test, and the slack its expiry may take on top of it.
SHORT_TTL_S = 2
EXPIRY_SLACK_S = 10.0


def put(etcd, key: str, value: str, *flags: str) -> int:
    """`etcdctl put` with `-w json`; returns the revision of the write."""
    answer = etcd.etcdctl_json("put", key, value, *flags)
    return answer["header"]["revision"]


def get_json(etcd, *args: str) -> dict:
    return etcd.etcdctl_json("get", *args)


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line != ""]


def test_put_and_get_with_flags(etcd):
    prefix = unique_prefix("get")
    values = {"a": "3", "b": "1", "c": "2"}
    revisions = {name: put(etcd, prefix + name, value) for name, value in values.items()}
    assert revisions["a"] < revisions["b"] < revisions["c"]

    # The simple format: key then value, by key.
    out = etcd.etcdctl("get", prefix, "--prefix").stdout
    assert lines(out) == [prefix + "a", "3", prefix + "b", "1", prefix + "c", "2"]

    # A single key, its value alone.
    out = etcd.etcdctl("get", prefix + "b", "--print-value-only").stdout
    assert lines(out) == ["1"]

    # --keys-only and sort orders.
    out = etcd.etcdctl("get", prefix, "--prefix", "--keys-only").stdout
    assert lines(out) == [prefix + "a", prefix + "b", prefix + "c"]
    out = etcd.etcdctl(
        "get", prefix, "--prefix", "--keys-only", "--sort-by=KEY", "--order=DESCEND"
    ).stdout
    assert lines(out) == [prefix + "c", prefix + "b", prefix + "a"]
    out = etcd.etcdctl(
        "get", prefix, "--prefix", "--print-value-only", "--sort-by=VALUE", "--order=ASCEND"
    ).stdout
    assert lines(out) == ["1", "2", "3"]
    out = etcd.etcdctl(
        "get", prefix, "--prefix", "--keys-only", "--sort-by=MODIFY", "--order=DESCEND"
    ).stdout
    assert lines(out) == [prefix + "c", prefix + "b", prefix + "a"]

    # --limit: the first keys, `more` set and `count` the whole range's.
    answer = get_json(etcd, prefix, "--prefix", "--limit", "2")
    assert [kv["key"] for kv in kvs_of(answer)] == [prefix + "a", prefix + "b"]
    assert answer.get("more") is True
    assert answer["count"] == 3
    answer = get_json(etcd, prefix, "--prefix", "--limit", "3")
    assert len(answer["kvs"]) == 3 and not answer.get("more", False)

    # A range [from, to): `get FROM TO`.
    out = etcd.etcdctl("get", prefix + "a", prefix + "c", "--keys-only").stdout
    assert lines(out) == [prefix + "a", prefix + "b"]

    # A missing key: no output, exit 0, count 0.
    assert etcd.etcdctl("get", prefix + "missing").stdout.strip() == ""
    assert get_json(etcd, prefix + "missing").get("count", 0) == 0


def test_get_json_revisions_versions_and_past_revisions(etcd):
    prefix = unique_prefix("rev")
    key = prefix + "k"
    first = put(etcd, key, "v1")
    second = put(etcd, key, "v2")
    other = put(etcd, prefix + "other", "x")
    assert first < second < other

    answer = get_json(etcd, key)
    assert answer["header"]["revision"] >= other
    assert answer["count"] == 1
    (kv,) = kvs_of(answer)
    assert kv == {
        "key": key,
        "value": "v2",
        "create_revision": first,
        "mod_revision": second,
        "version": 2,
        "lease": 0,
    }
    # The raw JSON carries base64 keys and values.
    assert answer["kvs"][0]["key"] == b64(key) and answer["kvs"][0]["value"] == b64("v2")

    # A read at a past revision sees the key as it was.
    (then,) = kvs_of(get_json(etcd, key, f"--rev={first}"))
    assert (then["value"], then["version"], then["mod_revision"]) == ("v1", 1, first)
    assert etcd.etcdctl("get", key, f"--rev={first}", "--print-value-only").stdout.strip() == "v1"
    # Before it was created, nothing; the later key not yet either.
    assert get_json(etcd, key, f"--rev={first - 1}").get("kvs", []) == []
    assert get_json(etcd, prefix, "--prefix", f"--rev={second}", "--keys-only").get("count") == 1

    # A delete and a new creation: a new generation starts at version 1.
    etcd.etcdctl("del", key)
    again = put(etcd, key, "v3")
    (kv,) = kvs_of(get_json(etcd, key))
    assert (kv["create_revision"], kv["mod_revision"], kv["version"]) == (again, again, 1)

    # A revision in the future is refused.
    future = get_json(etcd, key)["header"]["revision"] + 1000
    result = etcd.etcdctl("get", key, f"--rev={future}", check=False)
    assert result.returncode != 0
    assert "required revision is a future revision" in result.stderr


def test_del_prefix_and_prev_kv(etcd):
    prefix = unique_prefix("del")
    for name in ("a", "b", "c"):
        put(etcd, prefix + name, "value-" + name)
    put(etcd, prefix.rstrip("/") + "-sibling", "kept")

    # --prev-kv: the count, then each deleted key and its value.
    out = etcd.etcdctl("del", prefix + "a", "--prev-kv").stdout
    assert lines(out) == ["1", prefix + "a", "value-a"]
    # Deleting a missing key deletes nothing.
    assert lines(etcd.etcdctl("del", prefix + "a").stdout) == ["0"]

    answer = etcd.etcdctl_json("del", prefix, "--prefix", "--prev-kv")
    assert answer["deleted"] == 2
    assert sorted(unb64(kv["key"]) for kv in answer["prev_kvs"]) == [prefix + "b", prefix + "c"]
    assert get_json(etcd, prefix, "--prefix").get("count", 0) == 0
    # The prefix's sibling key is not under the prefix.
    assert (
        etcd.etcdctl("get", prefix.rstrip("/") + "-sibling", "--print-value-only").stdout.strip()
        == "kept"
    )

    # A range delete [from, to).
    for name in ("a", "b", "c"):
        put(etcd, prefix + name, name)
    assert lines(etcd.etcdctl("del", prefix + "a", prefix + "c").stdout) == ["2"]
    assert lines(etcd.etcdctl("get", prefix, "--prefix", "--keys-only").stdout) == [prefix + "c"]


def txn(etcd, compares: list[str], success: list[str], failure: list[str], json_out=False):
    """`etcdctl txn` reading its three sections from standard input (the non-interactive form
    of `txn -i`): compares, success requests, failure requests, each ended by an empty line."""
    text = "\n".join(compares) + "\n\n" + "\n".join(success) + "\n\n" + "\n".join(failure) + "\n\n"
    if json_out:
        return etcd.etcdctl_json("txn", input=text)
    return etcd.etcdctl("txn", input=text).stdout


def test_txn_compares_and_branches(etcd):
    prefix = unique_prefix("txn")
    key, other = prefix + "k", prefix + "other"
    created = put(etcd, key, "one")
    put(etcd, other, "x")

    # value = : true, so the success branch runs (a put and a get), atomically.
    out = txn(etcd, [f'value("{key}") = "one"'], [f"put {key} two", f"get {key}"], [f"get {other}"])
    assert lines(out) == ["SUCCESS", "OK", key, "two"]

    # A stale value: the failure branch runs and the key is unchanged.
    out = txn(etcd, [f'value("{key}") = "one"'], [f"put {key} three"], [f"get {key}"])
    assert lines(out) == ["FAILURE", key, "two"]

    # version, create and mod revisions; several compares must all hold.
    state = kvs_of(get_json(etcd, key))[0]
    assert state["version"] == 2
    out = txn(
        etcd,
        [
            f'version("{key}") = "2"',
            f'create("{key}") = "{created}"',
            f'mod("{key}") = "{state["mod_revision"]}"',
            f'value("{key}") != "nope"',
        ],
        [f"put {key} three"],
        [],
    )
    assert lines(out) == ["SUCCESS", "OK"]
    out = txn(etcd, [f'version("{key}") > "5"'], [f"del {key}"], [f"put {other} y"])
    assert lines(out) == ["FAILURE", "OK"]
    assert etcd.etcdctl("get", other, "--print-value-only").stdout.strip() == "y"
    out = txn(etcd, [f'mod("{key}") < "{created}"'], [f"del {key}"], [f"get {key}"])
    assert lines(out) == ["FAILURE", key, "three"]

    # create = 0: the key does not exist (put-if-absent), then it does.
    fresh = prefix + "fresh"
    out = txn(etcd, [f'create("{fresh}") = "0"'], [f"put {fresh} mine"], [f"get {fresh}"])
    assert lines(out) == ["SUCCESS", "OK"]
    out = txn(etcd, [f'create("{fresh}") = "0"'], [f"put {fresh} theirs"], [f"get {fresh}"])
    assert lines(out) == ["FAILURE", fresh, "mine"]

    # -w json: succeeded and one response per operation; one revision for the whole txn.
    before = get_json(etcd, key)["header"]["revision"]
    answer = txn(
        etcd,
        [f'value("{key}") = "three"'],
        [f"put {key} four", f"put {other} z", f"del {fresh}"],
        [],
        json_out=True,
    )
    assert answer["succeeded"] is True
    assert len(answer["responses"]) == 3
    assert answer["header"]["revision"] == before + 1
    after = {kv["key"]: kv for kv in kvs_of(get_json(etcd, prefix, "--prefix"))}
    assert after[key]["mod_revision"] == after[other]["mod_revision"] == before + 1
    assert fresh not in after

    # A failed compare writes nothing: the revision stays.
    answer = txn(etcd, [f'value("{key}") = "nope"'], [f"put {key} five"], [], json_out=True)
    assert not answer.get("succeeded", False)
    assert answer["header"]["revision"] == before + 1


def test_txn_interactive(etcd):
    """`txn -i` prompts for each section and reads the same three sections."""
    key = unique_prefix("txn-i") + "k"
    put(etcd, key, "1")
    text = f'value("{key}") = "1"\n\nput {key} 2\nget {key}\n\nget {key}\n\n'
    out = lines(etcd.etcdctl("txn", "-i", input=text).stdout)
    prompts = [
        "compares:",
        "success requests (get, put, del):",
        "failure requests (get, put, del):",
    ]
    assert out[:3] == prompts
    assert out[3:] == ["SUCCESS", "OK", key, "2"]
    out = lines(etcd.etcdctl("txn", "-i", input=text).stdout)
    assert out == prompts + ["FAILURE", key, "2"]


def test_txn_refuses_a_key_written_twice(etcd):
    key = unique_prefix("txn-dup") + "k"
    text = f"\nput {key} 1\nput {key} 2\n\n\n"
    result = etcd.etcdctl("txn", input=text, check=False)
    assert result.returncode != 0
    assert "duplicate key given in txn request" in result.stderr
    assert etcd.etcdctl("get", key).stdout.strip() == ""


def test_compaction_refuses_older_revisions(etcd):
    prefix = unique_prefix("compact")
    key = prefix + "k"
    old = put(etcd, key, "old")
    new = put(etcd, key, "new")

    out = etcd.etcdctl("compaction", str(new)).stdout
    assert lines(out) == [f"compacted revision {new}"]

    # Below the compacted revision: refused; at it and after: served.
    result = etcd.etcdctl("get", key, f"--rev={old}", check=False)
    assert result.returncode != 0
    assert "required revision has been compacted" in result.stderr
    assert etcd.etcdctl("get", key, f"--rev={new}", "--print-value-only").stdout.strip() == "new"
    assert etcd.etcdctl("get", key, "--print-value-only").stdout.strip() == "new"

    # Compacting again at or below it is refused too.
    result = etcd.etcdctl("compaction", str(old), check=False)
    assert result.returncode != 0
    assert "required revision has been compacted" in result.stderr

    # A watch from a compacted revision is canceled with the same message.
    result = etcd.etcdctl("watch", key, f"--rev={old}", check=False, timeout=STREAM_TIMEOUT_S)
    assert result.returncode != 0
    assert "required revision has been compacted" in result.stdout + result.stderr


def lease_id(grant_output: str) -> str:
    """The hex id of `lease grant`'s `lease 694d... granted with TTL(60s)`."""
    words = grant_output.split()
    assert words[0] == "lease" and "granted" in words, grant_output
    return words[1]


def test_lease_grant_attach_keepalive_revoke(etcd):
    prefix = unique_prefix("lease")
    out = etcd.etcdctl("lease", "grant", "60").stdout
    assert "granted with TTL(60s)" in out
    lease = lease_id(out)
    other = lease_id(etcd.etcdctl("lease", "grant", "60").stdout)

    put(etcd, prefix + "a", "1", f"--lease={lease}")
    put(etcd, prefix + "b", "2", f"--lease={lease}")
    put(etcd, prefix + "free", "3")
    (kv,) = kvs_of(get_json(etcd, prefix + "a"))
    assert kv["lease"] == int(lease, 16)

    # timetolive --keys: the granted TTL, what remains, the attached keys.
    answer = etcd.etcdctl_json("lease", "timetolive", lease, "--keys")
    assert answer["id"] == int(lease, 16)
    assert answer["granted-ttl"] == 60
    assert 0 < answer["ttl"] <= 60
    assert sorted(unb64(k) for k in answer["keys"]) == [prefix + "a", prefix + "b"]
    out = etcd.etcdctl("lease", "timetolive", lease, "--keys").stdout
    assert f"lease {lease} granted with TTL(60s)" in out and prefix + "a" in out

    # keep-alive --once renews to the full TTL.
    out = etcd.etcdctl("lease", "keep-alive", "--once", lease).stdout
    assert lines(out) == [f"lease {lease} keepalived with TTL(60)"]

    # lease list shows both leases.
    listed = etcd.etcdctl("lease", "list").stdout
    assert lease in listed and other in listed
    answer = etcd.etcdctl_json("lease", "list")
    assert {int(lease, 16), int(other, 16)} <= {entry["id"] for entry in answer["leases"]}

    # Revoke: its keys go in the same step, other keys stay.
    assert lines(etcd.etcdctl("lease", "revoke", lease).stdout) == [f"lease {lease} revoked"]
    assert lines(etcd.etcdctl("get", prefix, "--prefix", "--keys-only").stdout) == [prefix + "free"]
    assert lease not in etcd.etcdctl("lease", "list").stdout

    # A revoked lease is gone: revoke, keep-alive and put with it are refused.
    for args in (
        ("lease", "revoke", lease),
        ("lease", "keep-alive", "--once", lease),
        ("put", prefix + "c", "x", f"--lease={lease}"),
    ):
        result = etcd.etcdctl(*args, check=False)
        assert result.returncode != 0, args
        assert "requested lease not found" in result.stderr, (args, result.stderr)
    answer = etcd.etcdctl_json("lease", "timetolive", lease)
    assert answer["ttl"] == -1
    assert "already expired" in etcd.etcdctl("lease", "timetolive", lease).stdout

    etcd.etcdctl("lease", "revoke", other)


def test_lease_expiry_deletes_its_keys(etcd):
    prefix = unique_prefix("expiry")
    lease = lease_id(etcd.etcdctl("lease", "grant", str(SHORT_TTL_S)).stdout)
    put(etcd, prefix + "a", "1", f"--lease={lease}")
    put(etcd, prefix + "b", "2", f"--lease={lease}")
    put(etcd, prefix + "kept", "3")

    def expired() -> bool:
        keys = lines(etcd.etcdctl("get", prefix, "--prefix", "--keys-only").stdout)
        return keys == [prefix + "kept"]

    wait_until("the lease's keys to be deleted", SHORT_TTL_S + EXPIRY_SLACK_S, expired, 0.1)
    assert etcd.etcdctl_json("lease", "timetolive", lease)["ttl"] == -1
    result = etcd.etcdctl("lease", "keep-alive", "--once", lease, check=False)
    assert result.returncode != 0 and "requested lease not found" in result.stderr


def holder_script(mark: str, release: str, order: str, name: str) -> str:
    """A shell command for `etcdctl lock -- sh -c`: notes it holds the lock (with the lock's
    key and revision), waits until `release` exists (60 s at most), notes it lets go."""
    return (
        f'echo "{name} start $ETCD_LOCK_KEY $ETCD_LOCK_REV" >> {order}; touch {mark}; '
        f"i=0; while [ ! -e {release} ] && [ $i -lt 3000 ]; do sleep 0.02; i=$((i+1)); done; "
        f'echo "{name} end" >> {order}'
    )


def test_lock_runs_the_command_holding_the_lock(etcd, tmp_path):
    name = unique_prefix("lock").rstrip("/")
    out = etcd.etcdctl(
        "lock", name, "--", "sh", "-c", 'echo "key=$ETCD_LOCK_KEY rev=$ETCD_LOCK_REV"'
    ).stdout
    (line,) = lines(out)
    key_part, rev_part = line.split()
    assert key_part.startswith(f"key={name}/")
    assert int(rev_part.removeprefix("rev=")) > 0
    # Released once the command exited: nothing left under the lock's name.
    assert etcd.etcdctl("get", name + "/", "--prefix").stdout.strip() == ""


def test_lock_contenders_serialize(etcd, tmp_path):
    name = unique_prefix("lock2").rstrip("/")
    order = tmp_path / "order"
    marks = {n: tmp_path / f"holding-{n}" for n in (1, 2)}
    releases = {n: tmp_path / f"release-{n}" for n in (1, 2)}
    holders = {}
    try:
        holders[1] = etcdctl_popen(
            etcd.endpoints, "lock", name, "--", "sh", "-c",
            holder_script(marks[1], releases[1], order, "1"),
        )  # fmt: skip
        wait_until("the first contender to hold the lock", STREAM_TIMEOUT_S, marks[1].exists)
        holders[2] = etcdctl_popen(
            etcd.endpoints, "lock", name, "--", "sh", "-c",
            holder_script(marks[2], releases[2], order, "2"),
        )  # fmt: skip

        # The second contender queued its key behind the first's and waits.
        def queued() -> bool:
            keys = lines(etcd.etcdctl("get", name + "/", "--prefix", "--keys-only").stdout)
            return len(keys) == 2

        wait_until("the second contender's key under the lock", STREAM_TIMEOUT_S, queued)
        waiting = kvs_of(get_json(etcd, name + "/", "--prefix", "--sort-by=CREATE"))
        assert not marks[2].exists() and holders[2].poll() is None

        releases[1].touch()
        assert holders[1].wait(timeout=STREAM_TIMEOUT_S) == 0
        wait_until("the second contender to hold the lock", STREAM_TIMEOUT_S, marks[2].exists)
        releases[2].touch()
        assert holders[2].wait(timeout=STREAM_TIMEOUT_S) == 0
    finally:
        for n, process in holders.items():
            releases[n].touch()
            stop_process(process)

    entries = order.read_text().splitlines()
    assert [e.split()[:2] for e in entries] == [
        ["1", "start"],
        ["1", "end"],
        ["2", "start"],
        ["2", "end"],
    ]
    # Each holder saw its own key, in queue order (by creation revision), and a revision at
    # which it held the lock: the first its key's creation, the second a later one (etcdctl's
    # mutex reports the revision at which it saw the earlier key deleted).
    seen = [(e.split()[2], int(e.split()[3])) for e in entries if e.split()[1] == "start"]
    assert [key for key, _ in seen] == [kv["key"] for kv in waiting]
    assert seen[0][1] == waiting[0]["create_revision"]
    assert seen[1][1] > seen[0][1] and seen[1][1] >= waiting[1]["create_revision"]
    assert etcd.etcdctl("get", name + "/", "--prefix").stdout.strip() == ""


def test_elect_campaign_observe_and_hand_over(etcd):
    name = unique_prefix("elect").rstrip("/")
    processes = []
    try:
        first = etcdctl_popen(etcd.endpoints, "elect", name, "value-1")
        processes.append(first)
        first_out = LineReader(first)
        # A campaigner that won prints its key, then its value.
        key_line, value_line = first_out.until(
            lambda line: line == "value-1", Deadline(STREAM_TIMEOUT_S, "leadership")
        )[-2:]
        assert key_line.startswith(name + "/")

        observer = etcdctl_popen(etcd.endpoints, "elect", "-l", name)
        processes.append(observer)
        observed = LineReader(observer)
        observed.until(
            lambda line: line == "value-1",
            Deadline(STREAM_TIMEOUT_S, "the observer to see value-1"),
        )

        second = etcdctl_popen(etcd.endpoints, "elect", name, "value-2")
        processes.append(second)
        second_out = LineReader(second)

        def both_campaigning() -> bool:
            keys = lines(etcd.etcdctl("get", name + "/", "--prefix", "--keys-only").stdout)
            return len(keys) == 2

        wait_until("the second campaigner's key", STREAM_TIMEOUT_S, both_campaigning)
        # It waits: still running, and it has not announced its leadership.
        assert second.poll() is None and "value-2" not in second_out.seen

        # The leader resigns (etcdctl resigns on SIGINT): the second one wins and the observer
        # sees the new value.
        first.send_signal(signal.SIGINT)
        assert first.wait(timeout=STREAM_TIMEOUT_S) == 0
        second_out.until(
            lambda line: line == "value-2",
            Deadline(STREAM_TIMEOUT_S, "the second campaigner to win"),
        )
        observed.until(
            lambda line: line == "value-2",
            Deadline(STREAM_TIMEOUT_S, "the observer to see value-2"),
        )
        second.send_signal(signal.SIGINT)
        assert second.wait(timeout=STREAM_TIMEOUT_S) == 0
    finally:
        for process in processes:
            stop_process(process, signal.SIGINT)
    wait_until(
        "the election's keys to be gone",
        STREAM_TIMEOUT_S,
        lambda: etcd.etcdctl("get", name + "/", "--prefix").stdout.strip() == "",
    )


def watch_events(reader: LineReader, count: int, deadline: Deadline) -> list[dict]:
    """`count` events from a `watch -w json` (one response per line), decoded: type, key,
    value, mod_revision and, when sent, the previous value."""
    events: list[dict] = []
    while len(events) < count:
        line = reader.next_line(deadline)
        assert line is not None, f"watch ended early: {reader.seen}"
        if not line.startswith("{"):
            continue
        response = json.loads(line)
        assert not response.get("Canceled"), response
        for event in response.get("Events") or []:
            kv = event["kv"]
            decoded = {
                "type": "DELETE" if event.get("type", 0) == 1 else "PUT",
                "key": unb64(kv["key"]),
                "value": unb64(kv.get("value", "")),
                "mod_revision": kv.get("mod_revision", 0),
            }
            if "prev_kv" in event:
                decoded["prev_value"] = unb64(event["prev_kv"].get("value", ""))
            events.append(decoded)
    return events


def test_watch_from_a_past_revision_catches_up_then_follows(etcd):
    prefix = unique_prefix("watch")
    history = []
    for key, value in (("a", "1"), ("b", "2"), ("a", "3")):
        history.append(("PUT", prefix + key, value, put(etcd, prefix + key, value)))
    deleted = etcd.etcdctl_json("del", prefix + "b")["header"]["revision"]
    history.append(("DELETE", prefix + "b", "", deleted))
    put(etcd, prefix.rstrip("/") + "-outside", "not watched")

    watcher = etcdctl_popen(
        etcd.endpoints, "watch", prefix, "--prefix", f"--rev={history[0][3]}", "-w", "json"
    )
    try:
        reader = LineReader(watcher)
        deadline = Deadline(STREAM_TIMEOUT_S, "the watch's catch-up")
        caught_up = watch_events(reader, len(history), deadline)
        assert [(e["type"], e["key"], e["value"], e["mod_revision"]) for e in caught_up] == history

        # Then live events, in order.
        live = [("PUT", prefix + "c", "4"), ("PUT", prefix + "a", "5")]
        revisions = [put(etcd, key, value) for _, key, value in live]
        followed = watch_events(reader, len(live), Deadline(STREAM_TIMEOUT_S, "live events"))
        assert [(e["type"], e["key"], e["value"], e["mod_revision"]) for e in followed] == [
            (t, k, v, r) for (t, k, v), r in zip(live, revisions, strict=True)
        ]
    finally:
        stop_process(watcher)


def test_watch_prev_kv(etcd):
    prefix = unique_prefix("watch-prev")
    key = prefix + "k"
    start = put(etcd, key, "v0") + 1
    watcher = etcdctl_popen(
        etcd.endpoints, "watch", key, "--prev-kv", f"--rev={start}", "-w", "json"
    )
    try:
        reader = LineReader(watcher)
        put(etcd, key, "v1")
        put(etcd, key, "v2")
        etcd.etcdctl("del", key)
        events = watch_events(reader, 3, Deadline(STREAM_TIMEOUT_S, "three events with prev_kv"))
        assert [(e["type"], e["value"], e.get("prev_value")) for e in events] == [
            ("PUT", "v1", "v0"),
            ("PUT", "v2", "v1"),
            ("DELETE", "", "v2"),
        ]
    finally:
        stop_process(watcher)

    # The simple format: type, previous key and value, then the key and value.
    put(etcd, key, "w1")
    again = put(etcd, key, "w2")
    watcher = etcdctl_popen(etcd.endpoints, "watch", key, "--prev-kv", f"--rev={again}")
    try:
        reader = LineReader(watcher)
        got = [
            reader.next_line(Deadline(STREAM_TIMEOUT_S, "simple watch output")) for _ in range(5)
        ]
        assert got == ["PUT", key, "w1", key, "w2"]
    finally:
        stop_process(watcher)


def test_endpoint_status_json(etcd):
    (entry,) = etcd.etcdctl_json("endpoint", "status")
    assert entry["Endpoint"] == etcd.endpoint
    status = entry["Status"]
    assert status["header"]["member_id"] != 0
    assert status["header"]["revision"] >= 1
    # One member: it leads.
    assert status["leader"] == status["header"]["member_id"]
    assert status["raftTerm"] >= 1 and status["raftIndex"] >= 1
    assert isinstance(status["version"], str) and status["version"]
    assert status["dbSize"] > 0


def test_member_list_json(etcd):
    answer = etcd.etcdctl_json("member", "list")
    members = answer["members"]
    assert len(members) == len(etcd.members)
    (member,) = members
    assert member["ID"] != 0
    assert f"http://{etcd.endpoint}" in member["clientURLs"]
    # The member that answers Status is the one listed.
    (entry,) = etcd.etcdctl_json("endpoint", "status")
    assert entry["Status"]["header"]["member_id"] == member["ID"]
    # The simple format: one line per member, its id in hex first.
    (line,) = lines(etcd.etcdctl("member", "list").stdout)
    assert line.split(",")[0] == format(member["ID"], "x")
