"""etcd endpoints for the etcd compatibility tests (`test_etcd*.py`), and helpers to drive them.

By default an endpoint is cairn's: `cairn serve --etcd-listen 127.0.0.1:PORT` (one node, the
`Broker` of conftest.py), or three nodes of cluster.py's `Cluster`, each with its own
`--etcd-listen`. With `CAIRN_ETCD_REFERENCE=1` the same fixtures start real etcd instead (one
member, or a three-member cluster on loopback), so every test is known to pass against the
reference implementation: `etcd` and `etcdctl` from Debian's `etcd-server` and `etcd-client`.

Readiness is `etcdctl endpoint health` (a linearizable read: the member has a leader and a
quorum) answering on every member, polled up to a deadline; no fixed sleeps. Teardown stops
every process: cairn with SIGTERM and its exit code checked, etcd with SIGTERM.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import signal
import subprocess
import threading
import uuid
from pathlib import Path

import pytest

from conftest import (
    READY_POLL_INTERVAL_S,
    STOP_TIMEOUT_S,
    Broker,
    _die_with_parent,
    cairn_binary,
    free_loopback_ports,
)
from support import Deadline

# Whether the fixtures start real etcd (the reference) instead of cairn.
REFERENCE = os.environ.get("CAIRN_ETCD_REFERENCE", "") not in ("", "0")

# Seconds a starting endpoint (or cluster) has to answer `etcdctl endpoint health`.
ETCD_READY_TIMEOUT_S = 30.0
# Seconds one etcdctl invocation may run before the test fails.
ETCDCTL_TIMEOUT_S = 30.0
# etcdctl's own bounds: dialing an endpoint, and one request.
ETCDCTL_FLAGS = ("--dial-timeout=5s", "--command-timeout=10s")
# Seconds a client library call may take (the clients' gRPC deadline).
CLIENT_TIMEOUT_S = 10
# Lines of a member's log attached to a failing test's report.
LOG_TAIL_LINES = 120


def etcdctl_binary() -> str:
    path = shutil.which("etcdctl")
    if path is None:
        pytest.fail(
            "etcdctl not found: run `cargo xtask compat` (installs it), or "
            "`apt-get install etcd-client`",
            pytrace=False,
        )
    return path


def clean_env() -> dict[str, str]:
    """The environment for etcdctl and etcd: none of the caller's `ETCD_*`/`ETCDCTL_*` settings
    (both read their flags from such variables) and no `CAIRN_*` ones; API v3."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETCD_", "ETCDCTL_", "CAIRN_"))}
    env["ETCDCTL_API"] = "3"
    return env


def etcdctl(
    endpoints: list[str],
    *args: str,
    input: str | None = None,
    check: bool = True,
    timeout: float = ETCDCTL_TIMEOUT_S,
) -> subprocess.CompletedProcess:
    """Runs `etcdctl --endpoints E ARGS`; with `check`, fails unless it exits 0."""
    command = [etcdctl_binary(), "--endpoints", ",".join(endpoints), *ETCDCTL_FLAGS, *args]
    result = subprocess.run(
        command,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_env(),
        stdin=None if input is not None else subprocess.DEVNULL,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"`{' '.join(command)}` exited with {result.returncode}\n"
            f"stdout: {result.stdout}\nstderr: {result.stderr}"
        )
    return result


def etcdctl_popen(endpoints: list[str], *args: str, **kwargs) -> subprocess.Popen:
    """A long-running etcdctl (watch, lock, elect), its stdout a text pipe."""
    command = [etcdctl_binary(), "--endpoints", ",".join(endpoints), *ETCDCTL_FLAGS, *args]
    return subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        env=clean_env(),
        preexec_fn=_die_with_parent,
        **kwargs,
    )


class LineReader:
    """The output lines of a process, read by a thread, taken with a deadline. etcdctl's own
    log records (JSON lines starting `{"level":`, e.g. its client's retry warnings, which go to
    standard error, merged here) are left out."""

    def __init__(self, process: subprocess.Popen):
        self.process = process
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            if not line.startswith('{"level":'):
                self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def next_line(self, deadline: Deadline) -> str | None:
        """The next line; None at the end of the output. Fails at the deadline."""
        while True:
            try:
                line = self.lines.get(timeout=max(0.05, min(0.5, deadline.remaining())))
            except queue.Empty:
                deadline.check(f"output so far: {self.seen[-20:]}")
                continue
            if line is not None:
                self.seen.append(line)
            return line

    def until(self, predicate, deadline: Deadline) -> list[str]:
        """Lines up to and including the first for which `predicate(line)` holds."""
        taken = []
        while True:
            line = self.next_line(deadline)
            if line is None:
                raise AssertionError(
                    f"output ended (exit {self.process.poll()}) before the expected line; "
                    f"output: {self.seen[-40:]}"
                )
            taken.append(line)
            if predicate(line):
                return taken


def stop_process(process: subprocess.Popen, sig: int = signal.SIGTERM) -> int | None:
    """Signals a process (if it still runs) and reaps it; SIGKILL if it does not exit in time."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_S)
    return process.returncode


class EtcdMember:
    """One real etcd member on loopback ports (reference mode)."""

    def __init__(self, name: str, work_dir: Path, client_port: int, peer_port: int):
        self.name = name
        self.work_dir = work_dir
        self.endpoint = f"127.0.0.1:{client_port}"
        self.peer_url = f"http://127.0.0.1:{peer_port}"
        self.data_dir = work_dir / "data"
        self.log_path = work_dir / "etcd.log"
        self.initial_cluster = ""
        self.cluster_token = ""
        self.extra_args: list[str] = []
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        return [
            shutil.which("etcd") or "etcd",
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", f"http://{self.endpoint}",
            "--advertise-client-urls", f"http://{self.endpoint}",
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", self.initial_cluster,
            "--initial-cluster-state", "new",
            "--initial-cluster-token", self.cluster_token,
            "--logger", "zap",
            "--log-outputs", "stderr",
            *self.extra_args,
        ]  # fmt: skip

    def spawn(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"==> compat: starting {' '.join(self.command())}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=clean_env(),
                preexec_fn=_die_with_parent,
            )

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def process_exited(self) -> bool:
        """Whether the process exited on its own (one killed by the test is not counted)."""
        return self.exit_code() is not None

    def kill(self) -> None:
        """SIGKILL, no clean shutdown."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT_S)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return _tail(self.log_path, lines)


class CairnMember:
    """One `cairn serve` process serving etcd's API (a `Broker` or a `ClusterNode`)."""

    def __init__(self, node: Broker, endpoint: str):
        self.node = node
        self.endpoint = endpoint
        self.name = f"cairn-{getattr(node, 'node_id', 1)}"

    @property
    def alive(self) -> bool:
        return self.node.process is not None and self.node.process.poll() is None

    def exit_code(self) -> int | None:
        return None if self.node.process is None else self.node.process.poll()

    def process_exited(self) -> bool:
        """Whether the process exited on its own (one killed by the test is not counted)."""
        return self.exit_code() is not None

    def kill(self) -> None:
        """SIGKILL, no clean shutdown."""
        self.node.kill()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return self.node.log_tail(lines)


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as error:
        return f"(cannot read {path}: {error})"
    tail = text.splitlines()[-lines:]
    return f"--- last {len(tail)} lines of {path} ---\n" + "\n".join(tail)


class EtcdService:
    """An etcd API of one or more members, real etcd or cairn, and how to reach it."""

    def __init__(self, members: list, kind: str):
        self.members = members
        # "etcd" (the reference) or "cairn".
        self.kind = kind

    @property
    def endpoints(self) -> list[str]:
        """The endpoints of the members still running."""
        return [m.endpoint for m in self.members if m.alive]

    @property
    def endpoint(self) -> str:
        return self.endpoints[0]

    def host_port(self, member=None) -> tuple[str, int]:
        host, port = (member.endpoint if member else self.endpoint).rsplit(":", 1)
        return host, int(port)

    def etcdctl(self, *args: str, endpoints: list[str] | None = None, **kwargs):
        return etcdctl(endpoints or [self.endpoint], *args, **kwargs)

    def etcdctl_json(self, *args: str, endpoints: list[str] | None = None, **kwargs):
        result = self.etcdctl(*args, "-w", "json", endpoints=endpoints, **kwargs)
        return json.loads(result.stdout)

    def wait_ready(self, timeout_s: float = ETCD_READY_TIMEOUT_S) -> None:
        """Polls `etcdctl endpoint health` on every running member until all answer healthy;
        fails (with the logs) if a member exits first or the deadline passes."""
        deadline = Deadline(timeout_s, f"{self.kind} members {self.endpoints} to be healthy")
        pending = list(self.endpoints)
        last = "no probe yet"
        while pending:
            for member in self.members:
                if member.process_exited():
                    raise AssertionError(
                        f"{self.kind} member {member.name} exited with {member.exit_code()} "
                        f"before it was healthy\n{member.log_tail()}"
                    )
            result = etcdctl(
                [pending[0]],
                "endpoint",
                "health",
                "--dial-timeout=1s",
                "--command-timeout=2s",
                check=False,
                timeout=10,
            )
            if result.returncode == 0:
                pending.pop(0)
                continue
            last = (result.stdout + result.stderr).strip()[-500:]
            if deadline.expired():
                raise AssertionError(
                    f"{self.kind} not healthy after {timeout_s:.0f}s (last probe of "
                    f"{pending[0]}: {last})\n{self.log_tails()}"
                )
            threading.Event().wait(READY_POLL_INTERVAL_S)

    def statuses(self) -> dict[str, dict]:
        """`etcdctl endpoint status -w json` of each running member, by endpoint (members that
        do not answer are left out)."""
        found = {}
        for endpoint in self.endpoints:
            result = etcdctl(
                [endpoint], "endpoint", "status", "-w", "json", check=False, timeout=15
            )
            if result.returncode != 0:
                continue
            for entry in json.loads(result.stdout):
                found[entry["Endpoint"]] = entry["Status"]
        return found

    def leader(self, timeout_s: float = 30.0):
        """The member that every running member's Status names as leader (its `leader` equals
        the leader's own `header.member_id`), once they agree."""
        deadline = Deadline(timeout_s, "the members to agree on a leader")
        while True:
            statuses = self.statuses()
            leaders = {s.get("leader", 0) for s in statuses.values()}
            by_id = {s["header"]["member_id"]: endpoint for endpoint, s in statuses.items()}
            if len(statuses) == len(self.endpoints) and len(leaders) == 1:
                (leader_id,) = leaders
                if leader_id and leader_id in by_id:
                    endpoint = by_id[leader_id]
                    return next(m for m in self.members if m.endpoint == endpoint)
            deadline.check(f"statuses {statuses}")
            threading.Event().wait(0.1)

    def log_tails(self, lines: int = LOG_TAIL_LINES) -> str:
        return "\n".join(m.log_tail(lines) for m in self.members)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return self.log_tails(lines)


def reference_members(work_dir: Path, size: int) -> list[EtcdMember]:
    ports = free_loopback_ports(2 * size)
    members = [
        EtcdMember(f"m{i + 1}", work_dir / f"etcd-{i + 1}", ports[2 * i], ports[2 * i + 1])
        for i in range(size)
    ]
    initial = ",".join(f"{m.name}={m.peer_url}" for m in members)
    token = f"cairn-compat-{uuid.uuid4().hex[:12]}"
    for member in members:
        member.initial_cluster = initial
        member.cluster_token = token
    return members


def running_etcd(work_dir: Path, size: int = 1, quota_bytes: int | None = None):
    """A started etcd API of `size` members (1 or 3), stopped after the yield: real etcd with
    `CAIRN_ETCD_REFERENCE=1`, else cairn. `quota_bytes`: the space quota of a single member
    (etcd's `--quota-backend-bytes`)."""
    if REFERENCE:
        yield from _running_reference(work_dir, size, quota_bytes)
    elif size == 1:
        yield from _running_cairn_single(work_dir, quota_bytes)
    else:
        yield from _running_cairn_cluster(work_dir, size)


def _running_reference(work_dir: Path, size: int, quota_bytes: int | None = None):
    if shutil.which("etcd") is None:
        pytest.fail(
            "CAIRN_ETCD_REFERENCE=1 needs a real etcd on the PATH: `apt-get install "
            "etcd-server` (Debian's 3.4.x)",
            pytrace=False,
        )
    members = reference_members(work_dir, size)
    if quota_bytes is not None:
        for member in members:
            member.extra_args = ["--quota-backend-bytes", str(quota_bytes)]
    service = EtcdService(members, "etcd")
    try:
        for member in members:
            member.spawn()
        service.wait_ready()
        yield service
    finally:
        for member in members:
            member.stop()


def _running_cairn_single(work_dir: Path, quota_bytes: int | None = None):
    (port,) = free_loopback_ports(1)
    endpoint = f"127.0.0.1:{port}"
    args = ("--etcd-listen", endpoint)
    if quota_bytes is not None:
        args += ("--etcd-quota-backend-bytes", str(quota_bytes))
    broker = Broker(cairn_binary(), work_dir, args)
    service = EtcdService([CairnMember(broker, endpoint)], "cairn")
    try:
        broker.start()
        service.wait_ready()
        yield service
    finally:
        if broker.process is not None:
            broker.stop()


def _running_cairn_cluster(work_dir: Path, size: int):
    from cluster import Cluster

    cluster = Cluster(work_dir, size, etcd_listen=True)
    members = [CairnMember(node, node.etcd_endpoint) for node in cluster.nodes.values()]
    service = EtcdService(members, "cairn")
    try:
        cluster.start()
        service.wait_ready()
        yield service
    except BaseException:
        cluster.kill()
        raise
    else:
        cluster.stop()


# --- helpers for the tests -------------------------------------------------------------------


def unique_prefix(name: str) -> str:
    """A key prefix no other test (or earlier run) uses."""
    return f"/compat/{name}/{uuid.uuid4().hex[:10]}/"


def b64(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return base64.b64encode(data).decode()


def unb64(text: str) -> str:
    return base64.b64decode(text).decode()


def kvs_of(answer: dict) -> list[dict]:
    """The `kvs` of a `get -w json` answer with keys and values decoded, zero fields filled in
    (etcdctl's JSON leaves fields with zero values out)."""
    return [
        {
            "key": unb64(kv["key"]),
            "value": unb64(kv.get("value", "")),
            "create_revision": kv.get("create_revision", 0),
            "mod_revision": kv.get("mod_revision", 0),
            "version": kv.get("version", 0),
            "lease": kv.get("lease", 0),
        }
        for kv in answer.get("kvs", [])
    ]


def wait_until(what: str, timeout_s: float, check, interval_s: float = 0.05) -> None:
    """Polls `check()` until it returns true; fails after `timeout_s`."""
    deadline = Deadline(timeout_s, what)
    while not check():
        deadline.check("")
        threading.Event().wait(interval_s)
