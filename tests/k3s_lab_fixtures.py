"""Pytest fixtures for the k3s lab: a simulated k3s server node (one `k3s server` process running every
component), created and started in a temp folder, stopped at teardown with no process left behind.

    from k3s_lab_fixtures import k3s_lab, make_k3s_lab  # noqa: F401 (fixtures)

    def test_something(k3s_lab):
        k3s_lab.write_dropin("50-test.yaml", 'kube-apiserver-arg: ["profiling=true"]\\n')
        assert k3s_lab.restart().returncode == 0
"""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Callable, List

import pytest
from lab_fixtures import lab_factory, poll

from cisfix.lab import k3s
from cisfix.lab.control import Lab
from cisfix.lab.k3s_tree import create

RUNNING = re.compile(r'^time="[^"]+" level=info msg="Running (kube-apiserver|kube-scheduler|kube-controller-manager|'
                     r'kubelet) (.*)"$')


class K3sNode(Lab):
    """A running k3s lab plus what tests need: config drop-ins, the log's `Running ...` lines, waiting."""

    def write_dropin(self, name: str, text: str) -> Path:
        path = self.layout.host(f"{k3s.DROPINS}/{name}")
        path.write_text(text)
        return path

    def restart(self) -> subprocess.CompletedProcess:
        """The restart program the lab names in /etc/cisfix/config.yaml, as cisfix runs it."""
        return subprocess.run(self.node_config()["components"]["k3s"]["restart"], capture_output=True, text=True,
                              timeout=120)

    def log_text(self) -> str:
        return self.layout.host(k3s.LOG).read_text(errors="replace")

    def running(self, component: str) -> List[List[str]]:
        """Every `Running <component> ...` line's arguments, oldest first."""
        return [m.group(2).split(" ") for m in map(RUNNING.match, self.log_text().splitlines())
                if m and m.group(1) == component]

    def starts(self) -> int:
        try:
            return json.loads(self.layout.init_state.read_text())["unitStarts"]
        except (OSError, ValueError, KeyError):
            return 0

    def wait_for(self, condition: Callable[[], object], timeout: float = 60.0, what: str = "condition") -> object:
        return poll(condition, timeout, what, lambda: "k3s.log ends:\n" + "\n".join(self.log_text().splitlines()[-8:]))


# A k3s server's real timings are 10-20 s to serve and RestartSec=5s; tests ask for speed.
FAST = {"startup_delay": 0.3, "restart_sec": 0.3}


@pytest.fixture
def make_k3s_lab(tmp_path: Path):
    """make_k3s_lab(name="k3s", start=True, timing=FAST, version="1.32", **create options) -> K3sNode;
    stopped at teardown."""
    yield from lab_factory(tmp_path, K3sNode, create, "k3s", FAST, version="1.32")


@pytest.fixture
def k3s_lab(make_k3s_lab) -> K3sNode:
    return make_k3s_lab()
