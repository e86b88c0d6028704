"""RKE2 and k3s node trees (offline: nothing runs): where the layouts read a component's settings and
where a fix writes them. The running nodes are tested in test_rke2_k3s_fix.py."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from cisfix.testing import TestNode
from conftest import run_cisfix
from corpus import corpus_file

RKE2_CONFIG = "/etc/rancher/rke2/config.yaml"
RKE2_OWNED = "/etc/rancher/rke2/config.yaml.d/90-cisfix.yaml"
RKE2_APISERVER = "/var/lib/rancher/rke2/agent/pod-manifests/kube-apiserver.yaml"
K3S_CONFIG = "/etc/rancher/k3s/config.yaml"
K3S_OWNED = "/etc/rancher/k3s/config.yaml.d/90-cisfix.yaml"
GENERIC = "cis-1.11"  # the Kubernetes benchmark: these tests are about the layouts, not RKE2's benchmark


def _node(tmp_path: Path, distribution: str, version: str) -> TestNode:
    node = TestNode(tmp_path / "node")
    node.write("/etc/cisfix/config.yaml", json.dumps({
        "apiVersion": "cisfix/v1", "kind": "NodeConfig", "distribution": distribution, "version": version,
        "offline": True}).encode(), 0o644)
    return node


@pytest.fixture
def rke2(tmp_path: Path) -> TestNode:
    """An RKE2 server's files: its configuration and the API server manifest rke2 generated from it."""
    node = _node(tmp_path, "rke2", "1.31.4+rke2r1")
    node.write(RKE2_APISERVER, corpus_file("manifests", "sallyom-otel-kubeadm__kube-apiserver.yaml"), 0o600)
    node.path("/etc/rancher/rke2/config.yaml.d").mkdir(parents=True)
    return node


@pytest.fixture
def k3s(tmp_path: Path) -> TestNode:
    node = _node(tmp_path, "k3s", "1.31.4+k3s1")
    node.path("/var/lib/rancher/k3s/server").mkdir(parents=True)
    node.write(K3S_CONFIG, corpus_file("manifests", "praveen902012-k3s-conf__k3s-config.yaml"), 0o600)
    return node


def cisfix(node: TestNode, *args: str, benchmark: str = GENERIC):
    return run_cisfix(node, *args, "--benchmark", benchmark) if args[0] in ("audit", "fix") else run_cisfix(node, *args)


def status(node: TestNode, check: str, benchmark: str = GENERIC) -> str:
    done = cisfix(node, "audit", "--check", check, "--format", "json", benchmark=benchmark)
    assert done.returncode in (0, 1), done.stderr
    return next(r for r in json.loads(done.stdout)["results"] if r["id"] == check)["status"]


def test_a_flag_no_file_decides_goes_into_the_cisfix_dropin_and_never_into_the_generated_manifest(rke2):
    rke2.write(RKE2_CONFIG, b'write-kubeconfig-mode: "0644"\n', 0o600)
    manifest = rke2.read(RKE2_APISERVER)
    assert status(rke2, "1.2.15") == "FAIL"
    done = cisfix(rke2, "fix", "--check", "1.2.15")
    assert done.returncode == 0, done.stdout + done.stderr
    assert rke2.read(RKE2_APISERVER) == manifest
    assert rke2.read(RKE2_CONFIG) == b'write-kubeconfig-mode: "0644"\n'
    owned = rke2.path(RKE2_OWNED)
    assert "profiling=false" in owned.read_text()
    assert stat.S_IMODE(owned.stat().st_mode) == 0o600
    assert status(rke2, "1.2.15") == "PASS"


def test_a_flag_the_operator_set_is_changed_in_the_operators_file(rke2):
    original = b'# ours\nkube-apiserver-arg:\n  - "profiling=true"   # for the perf team\n  - "v=2"\n'
    rke2.write(RKE2_CONFIG, original, 0o600)
    done = cisfix(rke2, "fix", "--check", "1.2.15")
    assert done.returncode == 0, done.stdout + done.stderr
    assert RKE2_CONFIG in done.stdout + done.stderr  # the file chosen is named
    after = rke2.read(RKE2_CONFIG)
    assert after == original.replace(b'"profiling=true"', b'"profiling=false"'), after
    assert not rke2.path(RKE2_OWNED).exists()
    assert status(rke2, "1.2.15") == "PASS"


def test_a_later_dropin_that_replaces_the_list_is_where_the_flag_goes(rke2):
    rke2.write(RKE2_CONFIG, b"kube-apiserver-arg: [profiling=true]\n", 0o600)
    rke2.write("/etc/rancher/rke2/config.yaml.d/95-site.yaml", b"kube-apiserver-arg:\n- v=2\n", 0o600)
    assert status(rke2, "1.2.15") == "FAIL"  # 95-site.yaml replaced the list: profiling is the manifest's
    done = cisfix(rke2, "fix", "--check", "1.2.15")
    assert done.returncode == 0, done.stdout + done.stderr
    assert b"profiling=false" in rke2.read("/etc/rancher/rke2/config.yaml.d/95-site.yaml")
    assert status(rke2, "1.2.15") == "PASS"


def test_editing_a_generated_manifest_is_refused_naming_the_configuration(rke2):
    rke2.write(RKE2_CONFIG, b"{}\n", 0o600)
    before = rke2.read(RKE2_APISERVER)
    done = cisfix(rke2, "edit", RKE2_APISERVER, "--flag", "profiling=false")
    assert done.returncode == 2
    assert "config.yaml" in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert rke2.read(RKE2_APISERVER) == before


def test_persist_says_the_configuration_is_persistent_and_writes_nothing(rke2):
    rke2.write(RKE2_CONFIG, b"{}\n", 0o600)
    assert cisfix(rke2, "fix", "--check", "1.2.15").returncode == 0
    files = sorted(str(p) for p in rke2.root.rglob("*"))
    done = cisfix(rke2, "persist")
    assert done.returncode == 0, done.stderr
    assert f"note: rke2: the fixes are in {rke2.root}{RKE2_CONFIG} and {rke2.root}{RKE2_CONFIG}.d/, " in done.stdout
    assert "persistent already" in done.stdout
    assert sorted(str(p) for p in rke2.root.rglob("*")) == files


def test_k3s_value_rules_keep_its_default_admission_plugins(k3s):
    """The corpus config replaces enable-admission-plugins with a plain `=`: a fix adding a plugin edits
    that item; one adding to an unset list uses `+=`, keeping k3s's NodeRestriction."""
    done = cisfix(k3s, "edit", K3S_CONFIG, "--component", "kube-apiserver", "--flag-add",
                  "enable-admission-plugins=AlwaysPullImages")
    assert done.returncode == 0, done.stdout + done.stderr
    text = k3s.path(K3S_CONFIG).read_text()
    assert '"enable-admission-plugins=NodeRestriction,EventRateLimit,AlwaysPullImages"' in text
    assert not text.endswith("\n")  # the file had no trailing newline: kept
    done = cisfix(k3s, "edit", K3S_CONFIG, "--component", "kube-controller-manager", "--flag",
                  "profiling=false")
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"terminated-pod-gc-threshold=100"' in k3s.path(K3S_CONFIG).read_text()


def test_a_k3s_pod_spec_file_check_is_not_applicable(k3s):
    assert status(k3s, "1.1.1", "k3s-cis-1.9") == "NOT_APPLICABLE"


def test_a_configuration_file_another_user_may_write_is_refused(rke2):
    rke2.write(RKE2_CONFIG, b"{}\n", 0o600)
    dropin = rke2.write("/etc/rancher/rke2/config.yaml.d/50-theirs.yaml", b"kube-apiserver-arg: [profiling=false]\n", 0o666)
    os.chmod(dropin, 0o666)
    audit = cisfix(rke2, "audit", "--check", "1.2.15", "--format", "json")
    [result] = [r for r in json.loads(audit.stdout)["results"] if r["id"] == "1.2.15"]
    assert result["status"] == "ERROR" and "50-theirs.yaml" in result["reason"], result
    files = {p: p.read_bytes() for p in rke2.root.rglob("*") if p.is_file()}
    done = cisfix(rke2, "fix", "--check", "1.2.15")
    assert done.returncode == 2 and "50-theirs.yaml" in done.stderr, done.stdout + done.stderr
    assert {p: p.read_bytes() for p in rke2.root.rglob("*") if p.is_file()} == files


def test_an_rke2_agent_has_the_kubelet_only_restarted_with_rke2_agent(tmp_path):
    from cisfix.layouts import rke2
    from cisfix.node import Node

    node = TestNode(tmp_path / "agent")
    node.write(RKE2_CONFIG, b"server: https://10.0.0.1:9345\n", 0o600)
    info = rke2.cisfix_describe_node(Node(str(node.root)), {})
    assert sorted(info.components) == ["kubelet", "rke2-agent"]
    assert info.components["rke2-agent"].restart == ("systemctl", "restart", "rke2-agent")
    assert info.components["rke2-agent"].runs == ("kubelet",) and info.node_types == ("worker",)
    assert info.components["kubelet"].unit == "system.slice/rke2-agent.service"


def test_the_rke2_version_is_read_from_the_generated_api_server_image(rke2):
    from cisfix.config import load_node_config
    from cisfix.layouts import rke2 as layout
    from cisfix.node import Node

    text = rke2.read(RKE2_APISERVER).decode()
    image = next(line for line in text.splitlines() if "image:" in line)
    rke2.write(RKE2_APISERVER, text.replace(image, "    image: index.docker.io/rancher/hardened-kubernetes:"
                                                   "v1.31.4-rke2r1-build20241212").encode())
    config = {k: v for k, v in load_node_config(Node(str(rke2.root))).items() if k != "version"}
    assert layout.cisfix_describe_node(Node(str(rke2.root)), config).version == "1.31.4+rke2r1"


@pytest.mark.parametrize("text, why", [
    (b"kube-apiserver-arg: [profiling=false\n", "invalid YAML"),
    (b"kube-apiserver-arg:\n  - a: b\n", "not a string"),
    (b"a: &x 1\nb: *x\n", "alias"),
])
def test_a_broken_configuration_is_one_line_naming_it_and_nothing_changes(rke2, text, why):
    rke2.write(RKE2_CONFIG, text, 0o600)
    files = {p: p.read_bytes() for p in rke2.root.rglob("*") if p.is_file()}
    done = cisfix(rke2, "fix", "--check", "1.2.15")
    assert done.returncode == 2, done.stdout + done.stderr
    [line] = done.stderr.strip().splitlines()
    assert "config.yaml" in line and why in line, line
    assert {p: p.read_bytes() for p in rke2.root.rglob("*") if p.is_file()} == files


def test_a_kubelet_with_no_config_file_is_fixed_through_kubelet_arg(rke2):
    """An older RKE2 passes the kubelet flags only: any setting is a kubelet-arg item."""
    rke2.write(RKE2_CONFIG, b"{}\n", 0o600)
    assert status(rke2, "4.2.1") == "FAIL"
    done = cisfix(rke2, "fix", "--check", "4.2.1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "kubelet-arg+:\n  - anonymous-auth=false\n" in rke2.path(RKE2_OWNED).read_text()
    assert status(rke2, "4.2.1") == "PASS"
