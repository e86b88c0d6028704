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
from typing import Callable, Iterator, List, Optional, Type

import pytest

from cisfix.lab.control import Lab, processes_under
from cisfix.lab.join import join
from cisfix.lab.layout import Layout, read_events
from cisfix.lab.tree import create


def poll(condition: Callable[[], object], timeout: float, what: str, situation: Callable[[], str]) -> object:
    """condition()'s first truthy value, tried every 0.1 s for `timeout` s; then an AssertionError naming
    `what` and the lab's `situation()` (what a reader of the failure needs to see)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; {situation()}")


class LabNode(Lab):
    """A running lab plus what tests need: manifest edits as an editor makes them, events, waiting."""

    MANIFESTS = "/etc/kubernetes/manifests"  # the static pod folder; a subclass for another layout names its own

    def manifest(self, component: str) -> Path:
        return self.layout.host(f"{self.MANIFESTS}/{component}.yaml")

    def write_manifest(self, name: str, text: str) -> None:
        """Replace a file in the manifests directory atomically, through a dotfile the kubelet ignores,
        keeping the file's mode (0600, kubeadm's, for a new one)."""
        target = self.layout.host(f"{self.MANIFESTS}/{name}")
        mode = target.stat().st_mode & 0o777 if target.exists() else 0o600
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(text)
        os.chmod(tmp, mode)
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
        return poll(condition, timeout, what, lambda: "events:\n" + "\n".join(str(e) for e in self.events()[-15:]))

    def wait_for_event(self, event: str, component: str, since: float = 0.0, count: int = 1,
                       timeout: float = 60.0) -> List[dict]:
        return self.wait_for(lambda: (lambda found: found if len(found) >= count else None)(
            self.events(event, component, since)), timeout, f"{count} {event} event(s) of {component}")


# A lab's defaults are a real node's timings (20 s re-list, 10 s/300 s back-off, 10 s kubelet RestartSec);
# most tests ask for these instead, and the tests of the gate also run once at the real ones.
FAST = {"file_check_frequency": "1s", "backoff": (1.0, 30.0), "kubelet_restart_sec": 1.0}
REAL = {}


def lab_factory(tmp_path: Path, node_class: Type[Lab], create: Callable[..., Layout], default_name: str,
                default_timing: dict, **defaults) -> Iterator[Callable[..., Lab]]:
    """The body of a make_*lab fixture (`yield from` it), for any distribution's lab: yields
    make(name=default_name, start=True, timing=default_timing, **create options) -> node_class, which
    creates the lab under tmp_path with `create` (options over timing over `defaults`) and starts it; at
    teardown stops every lab made and asserts no process of it is left."""
    labs: List[Lab] = []

    def make(name: str = default_name, start: bool = True, timing: dict = default_timing, **options) -> Lab:
        node = node_class(create(tmp_path / name, **{**defaults, **timing, **options}).root)
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
def make_lab(tmp_path: Path):
    """make_lab(name="lab", start=True, timing=FAST, **create options) -> LabNode; every lab is stopped at
    teardown."""
    yield from lab_factory(tmp_path, LabNode, create, "lab", FAST, key_algorithm="ECDSA-P256")


@pytest.fixture
def lab(make_lab) -> LabNode:
    return make_lab()


@pytest.fixture
def make_cluster(tmp_path: Path):
    """make_cluster(n=3, timing=FAST, **create options) -> [LabNode]: a lab cluster of n control-plane nodes
    (node-1 created and started, then each next one joined to it, as `lab create --join`, and started);
    every node is stopped at teardown."""
    def make(n: int = 3, timing: dict = FAST, **options) -> List[LabNode]:
        first = make_node("node-1", create, **{**timing, **options})
        joined = {k: v for k, v in {**timing, **options}.items() if k not in ("version", "file_check_frequency")}
        return [first] + [make_node(f"node-{i}", lambda root, **o: join(root, first.root, **o), **joined)
                          for i in range(2, n + 1)]

    made = lab_factory(tmp_path, LabNode, lambda root, make_layout, **o: make_layout(root, **o), "node-1", {},
                       key_algorithm="ECDSA-P256")
    factory = next(made)

    def make_node(name: str, make_layout: Callable[..., Layout], **options) -> LabNode:
        return factory(name, make_layout=make_layout, **options)

    yield make
    next(made, None)
