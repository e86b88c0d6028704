"""Fixtures that build a node under a temp root and run cisfix against it, as a user would.

The node comes from `cisfix.testing`, the same kit plugin authors use."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cisfix.testing import TestNode, build_node

# `lab` and `make_lab`: a running lab node (kubelet simulator, stand-ins, real etcd) per test;
# `pyz`: the release archive, built once per session; `fleet`: three lab nodes for the fleet playbook;
# `report_story`: one lab node's fix and drift, told once per run for the report tests. long_files_first
# orders the files for xdist: the most lab starts first.
pytest_plugins = ["lab_fixtures", "pyz_fixtures", "fleet_fixtures", "report_story_fixtures", "long_files_first"]

APISERVER = "/etc/kubernetes/manifests/kube-apiserver.yaml"
KUBELET_CONFIG = "/var/lib/kubelet/config.yaml"


@pytest.fixture
def node(tmp_path: Path) -> TestNode:
    return build_node(tmp_path / "node")


def run_cisfix(node: TestNode, *args: str, env: dict = None, **kwargs) -> subprocess.CompletedProcess:
    """The CLI in a subprocess, as cron runs it (a crash point kills only that process)."""
    environment = {k: v for k, v in os.environ.items() if k != "CISFIX_FAULT"}
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "cisfix", "--root", str(node.root), *args],
                          capture_output=True, text=True, env=environment, **kwargs)


@pytest.fixture
def cisfix(node: TestNode):
    """Run the CLI against the node: `cisfix("edit", APISERVER, "--flag", "profiling=false")`."""
    return lambda *args, **kwargs: run_cisfix(node, *args, **kwargs)


# Lines a test module wants in the run's closing summary (the torture suite's counts). Under xdist a
# worker's prints are lost, so workers hand their lines to the controller, which prints them all.
SUMMARY_LINES: list = []


def add_summary_line(config, line: str) -> None:
    if hasattr(config, "workeroutput"):
        config.workeroutput.setdefault("cisfix_summary", []).append(line)
    else:
        SUMMARY_LINES.append(line)


def pytest_testnodedown(node, error) -> None:
    SUMMARY_LINES.extend(getattr(node, "workeroutput", {}).get("cisfix_summary", []))


def pytest_terminal_summary(terminalreporter) -> None:
    for line in SUMMARY_LINES:
        terminalreporter.write_line(line)
