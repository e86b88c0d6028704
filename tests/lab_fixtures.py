"""Pytest fixtures for the node lab: a simulated kubeadm control-plane node, created and started in a temp
folder, stopped at teardown with no process left behind.

    # conftest.py: pytest_plugins = ["lab_fixtures"]

    def test_something(lab):
        lab.edit_manifest("kube-scheduler", "--leader-elect=true", "--leader-elect=false")
        lab.wait_for_event("pod-started", "kube-scheduler")
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, List, Optional

import pytest

from cisfix.lab.control import Lab, processes_under
from cisfix.lab.layout import read_events
from cisfix.lab.tree import create


class LabNode(Lab):
    """A running lab plus what tests need: manifest edits as an editor makes them, events, waiting."""

    def manifest(self, component: str) -> Path:
        return self.layout.host(f"/etc/kubernetes/manifests/{component}.yaml")

    def write_manifest(self, name: str, text: str) -> None:
        """Replace a file in the manifests directory atomically, through a dotfile the kubelet ignores."""
        target = self.layout.host(f"/etc/kubernetes/manifests/{name}")
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)

    def edit_manifest(self, component: str, old: str, new: str) -> None:
        text = self.manifest(component).read_text()
        assert old in text, f"{old!r} not in {component}.yaml"
        self.write_manifest(f"{component}.yaml", text.replace(old, new, 1))

    def add_flag(self, component: str, flag: str) -> None:
        """Append a flag after the command's first word, as the first flag."""
        self.edit_manifest(component, f"    - {component}\n", f"    - {component}\n    - {flag}\n")

    def events(self, event: Optional[str] = None, component: Optional[str] = None, since: float = 0.0) -> List[dict]:
        return [e for e in read_events(self.layout, since, component) if event in (None, e["event"])]

    def wait_for(self, condition: Callable[[], object], timeout: float = 60.0, what: str = "condition") -> object:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; events:\n" +
                             "\n".join(str(e) for e in self.events()[-15:]))

    def wait_for_event(self, event: str, component: str, since: float = 0.0, count: int = 1,
                       timeout: float = 60.0) -> List[dict]:
        return self.wait_for(lambda: (lambda found: found if len(found) >= count else None)(
            self.events(event, component, since)), timeout, f"{count} {event} event(s) of {component}")


# A lab's defaults are a real node's timings (20 s re-list, 10 s/300 s back-off, 10 s kubelet RestartSec);
# most tests ask for these instead, and the tests of the gate also run once at the real ones.
FAST = {"file_check_frequency": "1s", "backoff": (1.0, 30.0), "kubelet_restart_sec": 1.0}
REAL = {}


@pytest.fixture
def make_lab(tmp_path: Path):
    """make_lab(name="lab", start=True, timing=FAST, **create options) -> LabNode; every lab is stopped at
    teardown."""
    labs: List[LabNode] = []

    def make(name: str = "lab", start: bool = True, timing: dict = FAST, **options) -> LabNode:
        options = {"key_algorithm": "ECDSA-P256", **timing, **options}
        node = LabNode(create(tmp_path / name, **options).root)
        labs.append(node)
        if start:
            node.start(wait=120)  # bounds a failure only: a loaded machine starts a lab slowly
        return node

    yield make
    for node in labs:
        leftovers = node.stop()
        assert leftovers == [], f"processes of {node.root} outlived `lab stop`: {leftovers}"
        assert processes_under(node.root) == []


@pytest.fixture
def lab(make_lab) -> LabNode:
    return make_lab()
