"""`cisfix health`: the pre-check fleet tooling runs on the other control-plane nodes — the node's own
credentials, nothing changed, exit 0 only when every component asked about answers."""
from __future__ import annotations

import json
import subprocess
import sys

from cisfix.lab.control import find_process


def health(lab, *args):
    return subprocess.run([sys.executable, "-m", "cisfix", "--root", str(lab.root), "health", *args],
                          capture_output=True, text=True, timeout=60)


def test_healthy_node_answers_for_api_server_and_etcd(lab):
    result = health(lab, "--format", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout) == {"healthy": True, "components": {
        "kube-apiserver": {"healthy": True, "message": "kube-apiserver healthy"},
        "etcd": {"healthy": True, "message": "etcd healthy"}}}
    assert not (lab.root / "var/lib/cisfix/journal.jsonl").exists()


def test_a_stopped_api_server_is_named_with_exit_2(lab):
    parked = lab.root / "etc/kubernetes/kube-apiserver.parked"
    lab.manifest("kube-apiserver").rename(parked)  # the kubelet stops a pod whose manifest is gone
    launcher = str(lab.layout.launcher("kube-apiserver"))
    lab.wait_for(lambda: find_process(launcher) is None, 30, "the API server to stop")

    result = health(lab)
    assert result.returncode == 2
    assert "kube-apiserver: UNHEALTHY: " in result.stdout and "etcd: healthy" in result.stdout
    assert health(lab, "--component", "etcd").returncode == 0
