"""One mutating run at a time; read-only commands never wait."""
from __future__ import annotations

import fcntl
import os
import threading
import time

from conftest import APISERVER


def hold_lock(node):
    node.state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(node.state_dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.pwrite(fd, b"4242\n", 0)
    return fd


def test_second_run_exits_5_naming_the_holder(node, cisfix):
    fd = hold_lock(node)
    try:
        before = node.read(APISERVER)
        result = cisfix("edit", APISERVER, "--flag", "profiling=false")
        assert result.returncode == 5
        assert "another cisfix run (pid 4242) holds the lock" in result.stderr
        assert node.read(APISERVER) == before
        assert cisfix("history").returncode == 0  # read-only: no lock needed
        assert cisfix("edit", APISERVER, "--flag", "profiling=false", "--dry-run").returncode == 0
    finally:
        os.close(fd)


def test_wait_gets_the_lock_once_released(node, cisfix):
    fd = hold_lock(node)
    threading.Timer(0.5, os.close, [fd]).start()
    started = time.monotonic()
    result = cisfix("edit", APISERVER, "--flag", "profiling=false", "--wait", "30")
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started >= 0.4


def test_a_killed_run_leaves_no_stale_lock(node, cisfix):
    assert cisfix("edit", APISERVER, "--flag", "profiling=false", env={"CISFIX_FAULT": "after-begin"}).returncode == -9
    assert cisfix("edit", APISERVER, "--flag", "profiling=false").returncode == 0
