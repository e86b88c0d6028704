"""The CIS plugin against a running lab node (kubeadm 1.31 and 1.32): fresh-node verdicts as kube-bench
reports them, and all failing level-1 API server checks fixed at once with the API server healthy."""
from __future__ import annotations

import json
import shutil

import pytest
from corpus import corpus_files, node_name

from cisfix.audit import select
from cisfix.fix import apply_fix, plan_fix
from cisfix.node import Node
from cisfix.plugins import Plugins
from cisfix.testing import TestNode, build_node

pytestmark = pytest.mark.skipif(shutil.which("etcd") is None, reason="the lab needs etcd")

# What kube-bench reports on a fresh kubeadm node; every other check PASSes. (id: status, why)
FRESH = {
    "1.1.9": ("WARN", "the network plugin's files are 644; unscored"),  # 1.1.10 (root:root) passes
    "1.1.12": ("FAIL", "kubeadm runs etcd as root; there is no etcd user"),
    "1.2.1": ("WARN", "kubeadm leaves anonymous auth on (its probes need it); unscored"),
    "1.2.3": ("WARN", "DenyServiceExternalIPs not enabled; unscored"),
    "1.2.5": ("FAIL", "kubeadm does not set --kubelet-certificate-authority (kubelet certs are self-signed)"),
    "1.2.9": ("WARN", "EventRateLimit not enabled; unscored"),
    "1.2.11": ("WARN", "AlwaysPullImages not enabled; unscored"),
    "1.2.15": ("FAIL", "kubeadm does not disable profiling"),
    "1.2.16": ("FAIL", "kubeadm configures no audit log"),
    "1.2.17": ("FAIL", "no audit log rotation"),
    "1.2.18": ("FAIL", "no audit log rotation"),
    "1.2.19": ("FAIL", "no audit log rotation"),
    "1.2.20": ("WARN", "manual"),
    "1.2.27": ("WARN", "no encryption at rest; unscored"),
    "1.2.28": ("WARN", "no encryption at rest; unscored"),
    "1.2.29": ("WARN", "no cipher suite list; unscored"),
    "1.3.1": ("WARN", "no --terminated-pod-gc-threshold; unscored"),
    "1.3.2": ("FAIL", "kubeadm does not disable controller manager profiling"),
    "1.4.1": ("FAIL", "kubeadm does not disable scheduler profiling"),
    "3.1.1": ("WARN", "manual"), "3.1.2": ("WARN", "manual"), "3.1.3": ("WARN", "manual"),
    "3.2.1": ("WARN", "no audit policy; unscored"), "3.2.2": ("WARN", "manual"),
    "4.1.1": ("FAIL", "the kubelet drop-in is 644"),
    "4.1.3": ("WARN", "kube-proxy's kubeconfig is not on the host (DaemonSet); unscored"),
    "4.1.4": ("WARN", "kube-proxy's kubeconfig is not on the host (DaemonSet); unscored"),
    "4.1.9": ("FAIL", "kubeadm writes config.yaml with mode 644"),
    "4.2.9": ("WARN", "no tlsCertFile (self-signed serving cert); unscored"),
    "4.2.12": ("WARN", "no tlsCipherSuites; unscored"),
    "4.2.13": ("WARN", "no podPidsLimit; unscored"),
    "4.2.14": ("WARN", "no seccompDefault; unscored"),
}
FRESH_BY_BENCHMARK = {
    "1.31": {**FRESH, "1.2.30": ("FAIL", "tokens are extended by default; scored in v1.11 as in v1.12"),
             "4.2.15": ("WARN", "manual")},
    "1.32": {**FRESH, "1.2.30": ("FAIL", "tokens are extended by default; scored in v1.12")},
}


def _kube_bench(root) -> dict:
    report = TestNode(root).run("audit", "--format", "kube-bench").json()
    return {r["test_number"]: r["status"] for c in report["Controls"] for t in c["tests"] for r in t["results"]
            if c["node_type"] != "policies"}


@pytest.mark.parametrize("version", ["1.31", "1.32"])
def test_fresh_node_matches_kube_bench_then_api_server_fix(make_lab, version):
    lab = make_lab(version=version)
    verdicts = _kube_bench(lab.root)
    expected = {i: FRESH_BY_BENCHMARK[version].get(i, ("PASS", ""))[0] for i in verdicts}
    assert verdicts == expected

    plugins = Plugins(Node(str(lab.root)))
    checks = [c for c in select(plugins) if c.id.startswith("1.2.") and c.level == 1]
    plan = plan_fix(plugins, checks)
    assert apply_fix(plugins, plan).status == "FIXED"
    lab.wait_for(lambda: all(s.healthy for s in lab.status().values())
                 and TestNode(lab.root).audit("1.2.15")["1.2.15"]["status"] == "PASS", timeout=90,
                 what="the API server healthy with the new flags")
    results = TestNode(lab.root).audit(*(c.id for c, _ in plan.planned))
    assert {i: r["status"] for i, r in results.items()} == {c.id: "PASS" for c, _ in plan.planned}
    lab.wait_for(lambda: lab.status()["kube-apiserver"].healthy, timeout=30, what="the API server still healthy")
    again = Plugins(Node(str(lab.root)))
    assert plan_fix(again, [c for c in select(again) if c.id.startswith("1.2.") and c.level == 1]).planned == []
    assert ("1.2.1" in {c.id for c, _ in plan.planned}) == (version == "1.32")


def _static_pod_name(name: str) -> bool:
    return name.endswith(".yaml") and name.split(".")[0] in ("kube-apiserver", "kube-controller-manager",
                                                             "kube-scheduler", "etcd")


@pytest.mark.parametrize("path", corpus_files("manifests", _static_pod_name))
def test_corpus_manifests_get_verdicts_without_error(tmp_path, path):
    node = build_node(tmp_path / "node")
    # The corpus spans Kubernetes versions no benchmark covers: audit them all against the newest.
    node.write("/etc/cisfix/config.yaml", node.read("/etc/cisfix/config.yaml") + b"benchmark: cis-1.12\n")
    name = node_name(path)
    node.write(f"/etc/kubernetes/manifests/{name}", path.read_bytes())
    results = node.audit()
    assert not [i for i, r in results.items() if r["status"] == "ERROR"], json.dumps(
        {i: r["reason"] for i, r in results.items() if r["status"] == "ERROR"})
