"""Every report format says what it judged against: the node's name, its Kubernetes version, distribution
and layout, the benchmark and level, and the cisfix build. On the test kit's offline kubeadm node."""
from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET

import pytest

from cisfix import __version__
from cisfix.testing import TestNode, build_node
from prometheus import parse_prometheus, value

JUDGED = {"node": "cp-1", "kubernetes_version": "1.31.2", "distribution": "kubeadm", "layout": "kubeadm",
          "benchmark": "cis-1.11", "level": "1", "cisfix_version": __version__, "commit": ""}


@pytest.fixture
def node(tmp_path) -> TestNode:
    node = build_node(tmp_path / "node")
    node.write("/etc/hostname", b"CP-1\n", 0o644)  # the kubelet lowercases the host name, so do reports
    return node


def audit(node: TestNode, fmt: str, *args: str) -> str:
    result = node.run("audit", "--format", fmt, *args)
    assert result.exit_code in (0, 1), result.stderr
    return result.stdout


def test_text_opens_with_the_node_the_benchmark_and_the_build(node):
    lines = audit(node, "text", "--level", "1").splitlines()
    assert lines[:2] == ["Node cp-1: Kubernetes 1.31.2, kubeadm, master, etcd, worker",
                         f"Audited against cis-1.11, level 1, by cisfix {__version__} (source checkout)"]
    assert lines[2] == "== 1.1 =="
    assert audit(node, "text").splitlines()[1].startswith("Audited against cis-1.11, all levels,")


def test_json_has_a_judged_against_object_beside_the_keys_consumers_read(node):
    report = json.loads(audit(node, "json", "--level", "1"))
    assert {"summary", "warnings", "results"} <= report.keys()
    assert report["judged_against"] == {
        "node": {"name": "cp-1", "distribution": "kubeadm", "layout": "kubeadm", "kubernetes_version": "1.31.2",
                 "node_types": ["master", "etcd", "worker"]},
        "benchmark": {"name": "cis-1.11", "level": 1},
        "cisfix": {"version": __version__, "commit": None}}  # a source checkout: no build, no commit
    assert json.loads(audit(node, "json"))["judged_against"]["benchmark"]["level"] is None


def test_every_junit_testsuite_has_the_judged_against_properties(node):
    suites = ET.fromstring(audit(node, "junit", "--level", "1")).findall("testsuite")
    assert suites
    for suite in suites:
        assert {p.get("name"): p.get("value") for p in suite.findall("properties/property")} == JUDGED


def test_prometheus_has_an_info_metric_with_escaped_labels(node):
    samples = parse_prometheus(audit(node, "prometheus", "--level", "1"))
    assert value(samples, "cisfix_audit_info", **JUDGED) == 1
    assert [name for name, _ in samples].count("cisfix_audit_info") == 1
    config = b'apiVersion: cisfix/v1\nkind: NodeConfig\noffline: true\ndistribution: acme "edge"\\ncloud\n'
    node.write("/etc/cisfix/config.yaml", config, 0o644)
    text = audit(node, "prometheus", "--benchmark", "cis-1.11")
    assert 'distribution="acme \\"edge\\"\\\\ncloud",layout="kubeadm"' in text


def test_fix_and_drift_json_say_it_too(node):
    for command in (("fix", "--dry-run"), ("drift",)):
        result = node.run(*command, "--format", "json", "--level", "1")
        assert result.json()["judged_against"]["node"]["name"] == "cp-1", (command, result.stderr)
        assert result.json()["judged_against"]["benchmark"] == {"name": "cis-1.11", "level": 1}


def test_the_kubelets_hostname_override_names_the_node(node):
    """The name the node registered with: the kubelet's --hostname-override over the host name."""
    node.write("/var/lib/kubelet/kubeadm-flags.env", b'KUBELET_KUBEADM_ARGS="--hostname-override=Worker-7.Example"\n')
    assert json.loads(audit(node, "json"))["judged_against"]["node"]["name"] == "worker-7.example"


def test_without_a_hostname_the_name_is_unknown_not_invented(tmp_path):
    node = build_node(tmp_path / "bare")
    assert json.loads(audit(node, "json"))["judged_against"]["node"]["name"] is None
    assert audit(node, "text").startswith("Node (name unknown): Kubernetes 1.31.2")


@pytest.mark.skipif(os.geteuid() != 0, reason="trust is enforced only when cisfix runs as root")
def test_a_hostname_file_another_user_could_write_names_no_node(node):
    node.path("/etc/hostname").chmod(0o666)  # cisfix runs as root: such a file says nothing it can trust
    assert json.loads(audit(node, "json"))["judged_against"]["node"]["name"] is None
