"""Pytest fixtures for the RKE2 lab: a simulated RKE2 server node (`rke2 server` writing the static pods and
running the kubelet), created and started in a temp folder, stopped at teardown with no process left
behind.

    from rke2_lab_fixtures import make_rke2_lab  # noqa: F401 (fixture)

    def test_something(make_rke2_lab):
        lab = make_rke2_lab()
        lab.dropin("50-test.yaml").write_text('kube-apiserver-arg: ["audit-log-maxage=30"]\\n')
        assert lab.restart_rke2().returncode == 0
"""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import List

import pytest
from lab_fixtures import LabNode, lab_factory

from cisfix.lab import rke2, rke2tree


class RKE2Node(LabNode):
    """A running RKE2 lab: its configuration drop-ins, its generated manifests, `systemctl restart
    rke2-server`, and LabNode's events and waiting."""

    MANIFESTS = rke2.MANIFESTS

    def dropin(self, name: str) -> Path:
        return self.layout.host(f"{rke2.CONFIG_D}/{name}")

    def restart_rke2(self, wait: float = 120.0) -> subprocess.Popen:
        """The restart program the lab names in /etc/cisfix/config.yaml, as cisfix runs it: `systemctl
        restart rke2-server`, which returns once the new rke2 is ready. Waits up to `wait` s (0: not at all)."""
        proc = subprocess.Popen(self.node_config()["components"]["rke2-server"]["restart"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        if wait:
            proc.wait(wait)
        return proc

    def argv(self, pid: int) -> List[str]:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


# An RKE2 lab's defaults are a real node's (API server 15 s to serve, RestartSec 5 s, 10 s/300 s back-off);
# tests ask for these.
RKE2_FAST = {"startup_delay": 0.0, "backoff": (1.0, 30.0), "restart_sec": 1.0}


@pytest.fixture
def make_rke2_lab(tmp_path: Path):
    """make_rke2_lab(name="rke2", start=True, timing=RKE2_FAST, **create options) -> RKE2Node; every lab is
    stopped at teardown."""
    yield from lab_factory(tmp_path, RKE2Node, rke2tree.create, "rke2", RKE2_FAST)
