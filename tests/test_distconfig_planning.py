"""Changes of an RKE2/k3s component's settings are planned in sequence, within one change and across the
checks of one transaction: two items added to one flag both land (planned apart, the second looked for
the item the first had replaced, and the whole fix was refused)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from cisfix.testing import TestNode
from conftest import run_cisfix

CONFIG = "/etc/rancher/rke2/config.yaml"
OWNED = "/etc/rancher/rke2/config.yaml.d/90-cisfix.yaml"
APISERVER = "/var/lib/rancher/rke2/agent/pod-manifests/kube-apiserver.yaml"
# What rke2 generates, cut to what the layout reads (the component's identity and flags)
MANIFEST = b"""apiVersion: v1
kind: Pod
metadata:
  name: kube-apiserver
  namespace: kube-system
  labels:
    component: kube-apiserver
spec:
  containers:
  - name: kube-apiserver
    image: index.docker.io/rancher/hardened-kubernetes:v1.31.4-rke2r1-build20250101
    command:
    - kube-apiserver
    - --enable-admission-plugins=NodeRestriction
    - --profiling=true
"""
PLUGINS = "enable-admission-plugins"


@pytest.fixture
def rke2(tmp_path: Path) -> TestNode:
    """An offline RKE2 server's files: its configuration, the API server manifest rke2 generated."""
    node = TestNode(tmp_path / "node")
    node.write("/etc/cisfix/config.yaml", json.dumps({
        "apiVersion": "cisfix/v1", "kind": "NodeConfig", "distribution": "rke2", "version": "1.31.4+rke2r1",
        "offline": True}).encode(), 0o644)
    node.write(APISERVER, MANIFEST, 0o600)
    node.path("/etc/rancher/rke2/config.yaml.d").mkdir(parents=True)
    node.write(CONFIG, f"kube-apiserver-arg:\n  - {PLUGINS}=NodeRestriction\n".encode(), 0o600)
    return node


def test_two_items_added_to_one_flag_in_one_change_both_land(rke2):
    done = run_cisfix(rke2, "edit", CONFIG, "--component", "kube-apiserver", "--no-health-gate",
                      "--flag-add", f"{PLUGINS}=AlwaysPullImages", "--flag-add", f"{PLUGINS}=EventRateLimit")
    assert done.returncode == 0, done.stdout + done.stderr
    assert rke2.read(CONFIG) == \
        f"kube-apiserver-arg:\n  - {PLUGINS}=NodeRestriction,AlwaysPullImages,EventRateLimit\n".encode()
    assert not rke2.path(OWNED).exists()


def test_the_changes_of_several_checks_to_one_component_are_planned_in_sequence(rke2):
    from cisfix.audit import node_state
    from cisfix.engine import plan_changes
    from cisfix.node import Node
    from cisfix.plan import AddFlagItem, SetFlag
    from cisfix.plugins import Plugins
    from cisfix.types import Configure

    plugins = Plugins(Node(str(rke2.root)))
    changes = [Configure("kube-apiserver", (AddFlagItem(PLUGINS, "AlwaysPullImages"),)),
               Configure("kube-apiserver", (SetFlag("profiling", "false"),)),
               Configure("kube-apiserver", (AddFlagItem(PLUGINS, "EventRateLimit"),))]
    planned = {p.path: p for p in plan_changes(plugins.node, changes, plugins.editors(), node_state(plugins))}
    assert planned[CONFIG].after == \
        f"kube-apiserver-arg:\n  - {PLUGINS}=NodeRestriction,AlwaysPullImages,EventRateLimit\n".encode()
    assert planned[OWNED].after.endswith(b"kube-apiserver-arg+:\n  - profiling=false\n")
    assert rke2.read(CONFIG) == f"kube-apiserver-arg:\n  - {PLUGINS}=NodeRestriction\n".encode()
