"""aetcd (asyncio etcd v3 client) against one etcd API endpoint: KV and txn compare-and-swap,
a lease with keys (refresh, revoke, expiry), its lock recipe, a watch from a start revision
resumed after the last event seen. The checks are in etcd_aetcd.py, each run in a Python
process of its own (aetcd and etcd-sdk-python cannot share one: both register etcd's
`kv.proto` in protobuf's default descriptor pool).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

DRIVER = Path(__file__).resolve().parent / "etcd_aetcd.py"
# Seconds one check's process may run.
CHECK_TIMEOUT_S = 90


@pytest.mark.parametrize("check", ["kv_txn", "lease", "lock", "watch"])
def test_aetcd(etcd, check):
    command = [sys.executable, str(DRIVER), etcd.endpoint, check]
    result = subprocess.run(
        command,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CHECK_TIMEOUT_S,
        cwd=DRIVER.parent,
    )
    assert result.returncode == 0, (
        f"{' '.join(command)} exited with {result.returncode}\n"
        f"stdout: {result.stdout}\nstderr: {result.stderr}"
    )
    assert result.stdout.strip() == f"ok {check}"
