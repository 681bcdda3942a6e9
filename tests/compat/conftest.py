"""pytest fixtures of the compat suite: a real `cairn serve` process per test module.

The binary comes from `CAIRN_BIN` (set by `cargo xtask compat`; defaults to
`target/debug/cairn`). Each module gets its own broker on free loopback ports with a fresh data
directory; tests inside a module share it and use unique topic names. A failing test's report
carries the tail of the broker's log; teardown stops the broker with SIGTERM and fails unless it
exits 0 in time.
"""

from __future__ import annotations

import ctypes
import os
import random
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from support import Deadline

REPO_ROOT = Path(__file__).resolve().parents[2]

# Seconds a starting broker has to answer 200 on /health/ready.
READY_TIMEOUT_S = 30.0
# Seconds a broker has to exit after SIGTERM (graceful shutdown flushes every log).
STOP_TIMEOUT_S = 30.0
# Seconds between two readiness probes while a broker starts.
READY_POLL_INTERVAL_S = 0.05
# Lines of the broker's log attached to a failing test's report.
LOG_TAIL_LINES = 200

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the forked child before exec: the kernel SIGKILLs the broker if pytest dies, so
    a killed test run leaves no broker behind."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


# Where listener ports are picked from: below Linux's default ephemeral range (32768-60999), so
# no client connection's local port can take a listener's port while the broker restarts.
LISTENER_PORTS = range(20000, 32768)


def ephemeral_port_range() -> range:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return range(int(low), int(high) + 1)
    except (OSError, ValueError):
        return range(32768, 61000)


def free_loopback_ports(count: int) -> list[int]:
    """`count` distinct TCP ports free on 127.0.0.1 right now, outside the ephemeral range when
    possible (each checked by binding it), so a restart can bind them again."""
    ephemeral = ephemeral_port_range()
    candidates = [port for port in LISTENER_PORTS if port not in ephemeral]
    random.shuffle(candidates)
    ports: list[int] = []
    for port in candidates[:2000]:
        if len(ports) == count:
            break
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
    while len(ports) < count:
        # No free port outside the ephemeral range: let the kernel pick one.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port not in ports:
            ports.append(port)
    return ports


def cairn_binary() -> Path:
    path = Path(os.environ.get("CAIRN_BIN", REPO_ROOT / "target" / "debug" / "cairn"))
    if not path.is_file():
        pytest.fail(
            f"cairn binary not found at {path}: run `cargo xtask compat`, or build with "
            "`cargo build --bin cairn` and set CAIRN_BIN",
            pytrace=False,
        )
    return path


class Broker:
    """One `cairn serve` process on fixed loopback ports and a fixed data directory, which
    `restart()` keeps."""

    def __init__(self, binary: Path, work_dir: Path, extra_args: tuple[str, ...] = ()):
        kafka_port, admin_port = free_loopback_ports(2)
        self.binary = binary
        self.extra_args = list(extra_args)
        self.data_dir = work_dir / "data"
        self.log_path = work_dir / "cairn.log"
        self.bootstrap = f"127.0.0.1:{kafka_port}"
        self.admin_url = f"http://127.0.0.1:{admin_port}"
        self.admin_listen = f"127.0.0.1:{admin_port}"
        self.process: subprocess.Popen | None = None
        # Exit codes of every stop so far, for the teardown check.
        self.exit_codes: list[int] = []

    def command(self) -> list[str]:
        return [
            str(self.binary),
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--kafka-listen",
            self.bootstrap,
            "--admin-listen",
            self.admin_listen,
            "--advertise",
            self.bootstrap,
            # Every test creates its topics; a metadata request or produce that created one
            # by itself could hide a broken CreateTopics or a topic that outlived its delete.
            "--auto-create-topics",
            "false",
            *self.extra_args,
        ]

    def start(self) -> None:
        """Starts the process and waits until `/health/ready` answers 200."""
        self.spawn()
        self.wait_ready()

    def spawn(self) -> None:
        """Starts the process without waiting for it to be ready (a node of a cluster is ready
        only once a majority of the cluster runs)."""
        assert self.process is None, "broker already running"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Only the flags configure the broker: no CAIRN_* variable of the caller leaks in.
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
        with open(self.log_path, "ab") as log:
            log.write(f"==> compat: starting {' '.join(self.command())}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=_die_with_parent,
            )

    def wait_ready(self) -> None:
        """Waits until `/health/ready` answers 200; fails if the process exits first."""
        deadline = Deadline(READY_TIMEOUT_S, f"{self.admin_url}/health/ready to answer 200")
        last = "no answer yet"
        while True:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                raise AssertionError(
                    f"cairn exited with {code} before it was ready\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.admin_url}/health/ready", timeout=1) as answer:
                    if answer.status == 200:
                        return
                    last = f"HTTP {answer.status}"
            except urllib.error.HTTPError as error:
                last = f"HTTP {error.code}"
            except (urllib.error.URLError, OSError) as error:
                last = str(error)
            if deadline.expired():
                self.kill()
                raise AssertionError(
                    f"cairn not ready after {READY_TIMEOUT_S:.0f}s (last probe: {last})\n"
                    f"{self.log_tail()}"
                )
            # The poll interval: returns early if the process exits meanwhile.
            try:
                self.process.wait(timeout=READY_POLL_INTERVAL_S)
            except subprocess.TimeoutExpired:
                pass

    def stop(self) -> int:
        """SIGTERM, then waits for the exit; fails unless it exits 0 within STOP_TIMEOUT_S."""
        assert self.process is not None, "broker not running"
        process = self.process
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"cairn did not exit within {STOP_TIMEOUT_S:.0f}s of SIGTERM; killed it\n"
                f"{self.log_tail()}"
            ) from None
        self.process = None
        self.exit_codes.append(code)
        if code != 0:
            raise AssertionError(f"cairn exited with {code} after SIGTERM\n{self.log_tail()}")
        return code

    def restart(self) -> None:
        """A graceful stop (exit code 0 checked), then a start on the same ports and data."""
        self.stop()
        self.start()

    def kill(self) -> None:
        """SIGKILL, for a broker that failed; no exit-code check."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT_S)
            self.process = None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as error:
            return f"(cannot read the broker log {self.log_path}: {error})"
        tail = text.splitlines()[-lines:]
        return f"--- last {len(tail)} lines of {self.log_path} ---\n" + "\n".join(tail)


def running_broker(work_dir: Path, extra_args: tuple[str, ...] = ()):
    """A started broker in `work_dir` (with `extra_args` to `cairn serve`), stopped (with its
    exit checked) after the yield."""
    instance = Broker(cairn_binary(), work_dir, extra_args)
    instance.start()
    try:
        yield instance
    finally:
        if instance.process is not None:
            instance.stop()


@pytest.fixture(scope="module")
def broker(request, tmp_path_factory) -> Broker:
    """A running cairn broker shared by the tests of one module."""
    yield from running_broker(tmp_path_factory.mktemp(f"cairn-{request.module.__name__}"))


@pytest.fixture
def fresh_broker(tmp_path) -> Broker:
    """A cairn broker of the test's own, on which nothing ran yet (its first group request
    creates the offsets topic)."""
    yield from running_broker(tmp_path)


@pytest.fixture(scope="module")
def etcd(request, tmp_path_factory):
    """An etcd v3 API of one member shared by the tests of one module (etcd_support.py): `cairn
    serve --etcd-listen`, or a real etcd with `CAIRN_ETCD_REFERENCE=1`."""
    from etcd_support import running_etcd

    yield from running_etcd(tmp_path_factory.mktemp(f"etcd-{request.module.__name__}"), 1)


@pytest.fixture(scope="module")
def etcd_cluster(request, tmp_path_factory):
    """Three members serving etcd's v3 API (etcd_support.py): three `cairn serve` nodes, or a
    three-member real etcd cluster with `CAIRN_ETCD_REFERENCE=1`."""
    from etcd_support import running_etcd

    yield from running_etcd(tmp_path_factory.mktemp(f"etcd3-{request.module.__name__}"), 3)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Attaches the broker's (or the etcd members') log tail to the report of a failing test
    (or fixture)."""
    report = yield
    if report.failed:
        funcargs = getattr(item, "funcargs", {})
        broker_instance = funcargs.get("broker") or funcargs.get("fresh_broker")
        if isinstance(broker_instance, Broker):
            report.sections.append(("cairn broker log", broker_instance.log_tail()))
        service = funcargs.get("etcd") or funcargs.get("etcd_cluster")
        if service is not None and hasattr(service, "log_tails"):
            report.sections.append((f"{service.kind} logs", service.log_tails()))
    return report
