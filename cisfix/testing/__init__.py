"""A test kit for check plugins: a pytest plugin whose fixtures build a kubeadm-shaped node under a
temp root and run cisfix against it.

Enable it in your `conftest.py`::

    pytest_plugins = ["cisfix.testing"]

    def test_my_check(cisfix_node):
        assert cisfix_node.audit("ACME-1")["ACME-1"]["status"] == "FAIL"
        cisfix_node.fix("ACME-1")
        assert cisfix_node.audit("ACME-1")["ACME-1"]["status"] == "PASS"

The node is a copy of a kubeadm 1.31 control plane's files (the four static pod manifests and the
kubelet's config.yaml, with kubeadm's modes) and a node configuration saying `offline: true`: no
component runs, so audits read the manifests and changes are applied without a health gate.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional

import pytest

MODES = {"etc/kubernetes/manifests": 0o600, "var/lib/kubelet": 0o644}


@dataclass(frozen=True)
class RunResult:
    exit_code: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)


class TestNode:
    """A node root in a temp folder. Paths are node paths (`/etc/kubernetes/...`)."""

    __test__ = False  # not a test class, whatever pytest thinks of its name

    def __init__(self, root: Path, checks_dirs: Iterable[str] = ()) -> None:
        self.root = root
        self.checks_dirs = [str(d) for d in checks_dirs]

    def path(self, node_path: str) -> Path:
        return self.root / node_path.lstrip("/")

    def read(self, node_path: str) -> bytes:
        return self.path(node_path).read_bytes()

    def write(self, node_path: str, data: bytes, mode: int = 0o600) -> Path:
        target = self.path(node_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        os.chmod(target, mode)
        return target

    def run(self, *args: str) -> RunResult:
        """Run the cisfix CLI in this process against the node (global options are added)."""
        from cisfix.cli import main

        options = ["--root", str(self.root)]
        for directory in self.checks_dirs:
            options += ["--checks-dir", directory]
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([*options, *args])
            except SystemExit as exc:  # argparse's usage errors
                code = exc.code if isinstance(exc.code, int) else 2
        return RunResult(code, out.getvalue(), err.getvalue())

    def audit(self, *ids: str) -> Dict[str, dict]:
        """Audit results by check id (every check that applies to the node when no id is given)."""
        args = ["audit", "--format", "json"] + [a for i in ids for a in ("--check", i)]
        result = self.run(*args)
        if result.exit_code not in (0, 1):
            raise AssertionError(f"cisfix audit failed ({result.exit_code}): {result.stderr}")
        return {r["id"]: r for r in result.json()["results"]}

    def fix(self, *ids: str, dry_run: bool = False) -> dict:
        """Remediate the given failing checks in one transaction; returns the outcome as a dict."""
        from cisfix.audit import select
        from cisfix.fix import apply_fix, plan_fix
        from cisfix.node import Node
        from cisfix.plugins import Plugins

        plugins = Plugins(Node(str(self.root)), self.checks_dirs)
        plan = plan_fix(plugins, select(plugins, ids))
        outcome = apply_fix(plugins, plan, dry_run=dry_run).as_dict()
        outcome["skipped"] = {r.check.id: r.audit.reason for r in plan.skipped}
        return outcome

    def snapshot(self) -> Dict[str, bytes]:
        """Every file under the root except cisfix's own state and log: node path -> bytes."""
        files = {}
        for p in sorted(self.root.rglob("*")):
            rel = "/" + str(p.relative_to(self.root))
            if p.is_file() and not p.is_symlink() and not rel.startswith(("/var/lib/cisfix", "/var/log/cisfix")):
                files[rel] = p.read_bytes()
        return files

    @property
    def state_dir(self) -> Path:
        return self.path("/var/lib/cisfix")

    def journal_records(self) -> List[dict]:
        journal = self.state_dir / "journal.jsonl"
        return [json.loads(line) for line in journal.read_text().splitlines()] if journal.exists() else []


def build_node(root: Path, checks_dirs: Iterable[str] = ()) -> TestNode:
    """Copy the bundled kubeadm node into `root` (read through importlib.resources: works in a zipapp)."""
    from importlib.resources import files

    def copy(source, target: Path) -> None:
        for entry in source.iterdir():
            if entry.is_dir():
                target.joinpath(entry.name).mkdir(parents=True, exist_ok=True)
                copy(entry, target / entry.name)
            else:
                target.joinpath(entry.name).write_bytes(entry.read_bytes())

    root.mkdir(parents=True, exist_ok=True)
    copy(files("cisfix.testing").joinpath("node"), root)
    # Nothing runs on this node: say so, as the configuration of any offline node image would.
    config = root / "etc/cisfix/config.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("apiVersion: cisfix/v1\nkind: NodeConfig\noffline: true\n")
    for folder, mode in MODES.items():
        for f in (root / folder).iterdir():
            os.chmod(f, mode)
    return TestNode(root, checks_dirs)


@pytest.fixture
def cisfix_node(tmp_path: Path, request: pytest.FixtureRequest) -> TestNode:
    """A fresh kubeadm-shaped node under a temp root. Mark a test with
    `@pytest.mark.cisfix_checks_dirs("path/to/checks.d")` to load checks from folders too."""
    marker: Optional[pytest.Mark] = request.node.get_closest_marker("cisfix_checks_dirs")
    return build_node(tmp_path / "node", marker.args if marker else ())


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cisfix_checks_dirs(*dirs): checks.d folders cisfix_node loads")
