"""Fixtures that build a node under a temp root and run cisfix against it, as a user would."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SAMPLE_NODE = Path(__file__).parent / "data" / "node"
APISERVER = "/etc/kubernetes/manifests/kube-apiserver.yaml"
KUBELET_CONFIG = "/var/lib/kubelet/config.yaml"


class NodeTree:
    """A node root in a temp folder; paths are node paths (`/etc/...`)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, node_path: str) -> Path:
        return self.root / node_path.lstrip("/")

    def read(self, node_path: str) -> bytes:
        return self.path(node_path).read_bytes()

    def write(self, node_path: str, data: bytes, mode: int = 0o600) -> Path:
        p = self.path(node_path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        os.chmod(p, mode)
        return p

    @property
    def state(self) -> Path:
        return self.path("/var/lib/cisfix")

    def journal_records(self) -> list:
        import json

        journal = self.state / "journal.jsonl"
        return [json.loads(line) for line in journal.read_text().splitlines()] if journal.exists() else []

    def snapshot(self) -> dict:
        """Every file under the root except cisfix's own state and log: path -> bytes."""
        out = {}
        for p in sorted(self.root.rglob("*")):
            rel = "/" + str(p.relative_to(self.root))
            if p.is_file() and not p.is_symlink() and not rel.startswith(("/var/lib/cisfix", "/var/log/cisfix")):
                out[rel] = p.read_bytes()
        return out


@pytest.fixture
def node(tmp_path: Path) -> NodeTree:
    root = tmp_path / "node"
    shutil.copytree(SAMPLE_NODE, root, symlinks=True)
    for manifest in (root / "etc/kubernetes/manifests").iterdir():
        os.chmod(manifest, 0o600)  # kubeadm's mode; git does not keep it
    return NodeTree(root)


def run_cisfix(node: NodeTree, *args: str, env: dict = None, **kwargs) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "CISFIX_FAULT"}
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "cisfix", "--root", str(node.root), *args],
                          capture_output=True, text=True, env=environment, **kwargs)


@pytest.fixture
def cisfix(node: NodeTree):
    """Run the CLI against the node: `cisfix("edit", APISERVER, "--flag", "profiling=false")`."""
    return lambda *args, **kwargs: run_cisfix(node, *args, **kwargs)
