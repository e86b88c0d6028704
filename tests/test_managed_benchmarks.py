"""The managed providers' worker benchmarks (kube-bench's eks-1.8.0, eks-1.7.0, gke-1.9.0 node section,
aks-1.8): kube-bench's check ids, the catalog's kubelet checks reused under them, the provider's modes
(644) and files, what cisfix judges differently from kube-bench said in the guidance, and the kube-bench
JSON. Nodes are written under a temp root and described by the node configuration (`distribution:`,
`version:`, components.kubelet), or, for a kubelet on flags alone, directly (NodeInfo, Component)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict

import pytest

from cisfix.audit import audit_one
from cisfix.node import Node
from cisfix.plan import SetFlag, SetSetting, UnsetPath
from cisfix.settings import resolve
from cisfix.state import NodeState
from cisfix.testing import TestNode
from cisfix.types import FAIL, NOT_APPLICABLE, PASS, CheckResult, Component, Configure, NodeInfo, SetMode
from cisfix_cis import catalog
from cisfix_cis.checks import benchmarks, checks_for, specs_for
from cisfix_cis.kubebench import report

# kube-bench's ids, in its order: cfg/<benchmark>/node.yaml of aquasecurity/kube-bench (a73ce37, 2026-06).
# gke-1.9.0's node.yaml has the configuration files' group only.
FILES = ["3.1.1", "3.1.2", "3.1.3", "3.1.4"]
KUBELET = [f"3.2.{n}" for n in range(1, 10)]
KUBE_BENCH_IDS = {"eks-1.8.0": FILES + KUBELET, "eks-1.7.0": FILES + KUBELET, "gke-1.9.0": FILES,
                  "aks-1.8": FILES + KUBELET}
# their control's text (kube-bench's node.yaml `text`; `type: node`) and groups' texts
CONTROL_TEXT = {"eks-1.8.0": "Worker Nodes", "eks-1.7.0": "Worker Nodes", "gke-1.9.0": "Worker Nodes",
                "aks-1.8": "Worker Node Security Configuration"}
GROUP_TEXT = {"3.1": "Worker Node Configuration Files", "3.2": "Kubelet"}
DISTRIBUTION = {"eks-1.8.0": "eks", "eks-1.7.0": "eks", "gke-1.9.0": "gke", "aks-1.8": "aks"}


def check(benchmark: str, check_id: str):
    return next(c for c in checks_for(benchmark) if c.id == check_id)


# ---- the benchmarks ----

@pytest.mark.parametrize("benchmark", list(KUBE_BENCH_IDS))
def test_the_check_ids_are_kube_benchs_and_every_one_is_an_automated_scored_worker_check(benchmark):
    checks = checks_for(benchmark)
    assert [c.id for c in checks] == KUBE_BENCH_IDS[benchmark]
    assert all(c.automated and c.node_types == ("worker",) and c.benchmark == benchmark for c in checks)
    assert all(spec.scored for spec in specs_for(benchmark).values())  # kube-bench: scored: true, all
    registered = benchmarks()[benchmark]
    assert registered.distribution == DISTRIBUTION[benchmark]
    assert registered.title.endswith(f"(kube-bench {benchmark})")


def test_versions_follow_kube_benchs_choice():
    versions = {name: b.versions for name, b in benchmarks().items() if b.distribution in ("eks", "gke", "aks")}
    assert versions["eks-1.7.0"] == ("1.29", "1.30", "1.31")
    assert versions["eks-1.8.0"] == ("1.32", "1.33", "1.34")
    assert versions["gke-1.9.0"] == ("1.31", "1.32", "1.33", "1.34")
    assert "1.32" in versions["aks-1.8"] and not {"1.29", "1.30", "1.31"} & set(versions["aks-1.8"])  # aks-1.7's


def test_the_kubelet_checks_are_the_catalogs_under_kube_benchs_ids():
    base = catalog.specs_for(catalog.CIS_1_12)
    for benchmark in ("eks-1.8.0", "aks-1.8"):
        managed = specs_for(benchmark)
        for generic, managed_id in (("4.2.1", "3.2.1"), ("4.2.2", "3.2.2"), ("4.2.5", "3.2.5"), ("4.2.6", "3.2.6"),
                                    ("4.2.8", "3.2.7"), ("4.2.11", "3.2.9")):
            assert managed[managed_id].audit == base[generic].audit, managed_id
            assert managed[managed_id].fix == base[generic].fix, managed_id
    # aks-1.8's kube-bench test for 3.2.2 looks at --anonymous-auth; cisfix at the authorization mode
    assert specs_for("aks-1.8")["3.2.2"].audit.flag == "authorization-mode"
    assert "--anonymous-auth" in check("aks-1.8", "3.2.2").remediation


# ---- nodes described by the node configuration ----

KUBECONFIG = "/var/lib/kubelet/kubeconfig"
COMPLIANT = """\
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: {ca}
authorization:
  mode: Webhook
featureGates:
  RotateKubeletServerCertificate: true
readOnlyPort: 0
"""
NON_COMPLIANT = """\
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous:
    enabled: true
authorization:
  mode: AlwaysAllow
featureGates:
  RotateKubeletServerCertificate: false
readOnlyPort: 10255
makeIPTablesUtilChains: false
eventRecordQPS: -1
rotateCertificates: false
"""


def managed_node(tmp_path: Path, distribution: str, version: str, config: str, kubelet_config: str,
                 args: str = "--node-ip=10.0.0.1", ca: str = "/etc/kubernetes/pki/ca.crt") -> TestNode:
    """A worker as the provider leaves it: a systemd unit starting the kubelet with --config and
    --kubeconfig, a drop-in with more flags, the kubeconfig and the config file 0644, the cluster CA."""
    node = TestNode(tmp_path / distribution)
    unit, dropin = "/etc/systemd/system/kubelet.service", "/etc/systemd/system/kubelet.service.d/10-kubelet-args.conf"
    node.write("/etc/cisfix/config.yaml", (
        f"apiVersion: cisfix/v1\nkind: NodeConfig\noffline: true\ndistribution: {distribution}\n"
        f"version: \"{version}\"\nnodeTypes: [worker]\ncomponents:\n  kubelet:\n    config: {config}\n"
        f"    flagFiles: [{unit}, {dropin}]\n").encode())
    node.write(unit, (f"[Service]\nExecStart=/usr/bin/kubelet --config {config} --kubeconfig {KUBECONFIG} "
                      "$KUBELET_ARGS\n").encode(), 0o644)
    node.write(dropin, f'[Service]\nEnvironment="KUBELET_ARGS={args}"\n'.encode(), 0o644)
    node.write(config, kubelet_config.format(ca=ca).encode(), 0o644)
    node.write(KUBECONFIG, b"apiVersion: v1\nkind: Config\n", 0o644)
    node.write(ca, b"-----BEGIN CERTIFICATE-----\n", 0o644)
    return node


EKS_CONFIG = "/etc/kubernetes/kubelet/kubelet-config.yaml"


def statuses(node: TestNode) -> Dict[str, str]:
    return {i: r["status"] for i, r in node.audit().items() if not i.startswith("CISFIX")}


@pytest.mark.parametrize("distribution, version, benchmark", [
    ("eks", "1.30.4-eks-a737599", "eks-1.7.0"), ("eks", "1.32.3-eks-4096722", "eks-1.8.0"),
    ("gke", "1.31.5-gke.1023000", "gke-1.9.0"), ("aks", "1.32.3", "aks-1.8")])
def test_a_compliant_worker_passes_every_check_of_its_providers_benchmark(tmp_path, distribution, version, benchmark):
    config = "/home/kubernetes/kubelet-config.yaml" if distribution == "gke" else EKS_CONFIG
    node = managed_node(tmp_path, distribution, version, config, COMPLIANT,
                        ca="/etc/kubernetes/certs/ca.crt" if distribution == "aks" else "/etc/kubernetes/pki/ca.crt")
    if distribution == "aks":
        node.write("/etc/kubernetes/azure.json", b"{}\n", 0o600)  # AgentBaker writes it 0600
    result = node.run("audit", "--format", "kube-bench")
    assert result.exit_code == 0, result.stderr
    kube_bench = result.json()
    (control,) = kube_bench["Controls"]  # the node section only: nothing of the control plane
    assert (control["id"], control["text"], control["node_type"], control["version"]) == \
        ("3", CONTROL_TEXT[benchmark], "node", benchmark)
    assert [(t["section"], t["desc"]) for t in control["tests"]] == \
        [(g, GROUP_TEXT[g]) for g in sorted({i.rsplit(".", 1)[0] for i in KUBE_BENCH_IDS[benchmark]})]
    assert [r["test_number"] for t in control["tests"] for r in t["results"]] == KUBE_BENCH_IDS[benchmark]
    assert {r["status"] for t in control["tests"] for r in t["results"]} == {"PASS"}


def test_a_non_compliant_eks_worker_fails_and_one_fix_makes_it_pass(tmp_path):
    node = managed_node(tmp_path, "eks", "1.32.3-eks-4096722", EKS_CONFIG, NON_COMPLIANT,
                        args="--node-ip=10.0.0.1 --streaming-connection-idle-timeout=0")
    os.chmod(node.path(KUBECONFIG), 0o666)
    os.chmod(node.path(EKS_CONFIG), 0o664)
    before = statuses(node)
    assert {i for i, s in before.items() if s == FAIL} == set(FILES + KUBELET) - {"3.1.2", "3.1.4"}
    outcome = node.fix(*[i for i, s in before.items() if s == FAIL])
    assert not outcome["skipped"]
    assert set(statuses(node).values()) == {PASS}
    # 644, not the generic benchmark's 600: bits are only removed
    assert oct(node.path(KUBECONFIG).stat().st_mode & 0o777) == "0o644"
    assert oct(node.path(EKS_CONFIG).stat().st_mode & 0o777) == "0o644"
    fixed = node.read(EKS_CONFIG).decode()
    assert "rotateCertificates" not in fixed and "eventRecordQPS" not in fixed  # unset: what EKS ships
    assert "clientCAFile: /etc/kubernetes/pki/ca.crt" in fixed and "readOnlyPort: 0" in fixed
    assert b"--streaming-connection-idle-timeout=4h0m0s" in node.read(
        "/etc/systemd/system/kubelet.service.d/10-kubelet-args.conf")  # the flag wins: fixed where it is set


@pytest.mark.parametrize("value, status", [(None, PASS), ("true", PASS), ("false", FAIL)])
def test_eks_client_certificate_rotation_may_be_unset_or_true(tmp_path, value, status):
    setting = f"rotateCertificates: {value}\n" if value else ""
    node = managed_node(tmp_path, "eks", "1.32.3", EKS_CONFIG, COMPLIANT + setting)
    assert node.audit("3.2.8")["3.2.8"]["status"] == status
    assert "set: true" in check("eks-1.8.0", "3.2.8").remediation  # kube-bench FAILs `true`: said


@pytest.mark.parametrize("value, status", [(None, PASS), ("0", PASS), ("5", PASS), ("-1", FAIL)])
def test_aks_event_qps_zero_or_a_limit_passes(tmp_path, value, status):
    setting = f"eventRecordQPS: {value}\n" if value else ""
    node = managed_node(tmp_path, "aks", "1.32.3", EKS_CONFIG, COMPLIANT + setting)
    node.write("/etc/kubernetes/azure.json", b"{}\n", 0o600)
    assert node.audit("3.2.7")["3.2.7"]["status"] == status
    assert "explicit 0" in check("aks-1.8", "3.2.7").remediation


def test_gke_checks_the_kubelets_kubeconfig_and_config_file_for_644(tmp_path):
    config = "/home/kubernetes/kubelet-config.yaml"
    node = managed_node(tmp_path, "gke", "1.31.5-gke.1023000", config, COMPLIANT)
    os.chmod(node.path(config), 0o600)  # stricter than the benchmark's 644 passes, as kube-bench's bitmask
    assert statuses(node) == dict.fromkeys(FILES, PASS)
    os.chmod(node.path(KUBECONFIG), 0o664)
    verdict = node.audit("3.1.1")["3.1.1"]
    assert verdict["status"] == FAIL and "664" in verdict["actual"]
    assert "$proxykubeconfig" in check("gke-1.9.0", "3.1.1").remediation


def test_checks_list_shows_a_managed_benchmark(tmp_path):
    node = managed_node(tmp_path, "eks", "1.32.3", EKS_CONFIG, COMPLIANT)
    listed = node.run("--benchmark", "aks-1.8", "checks", "list", "--format", "json")
    assert listed.exit_code == 0, listed.stderr
    shown = json.loads(listed.stdout)
    rows = shown if isinstance(shown, list) else shown["checks"]
    assert [r["id"] for r in rows if not r["id"].startswith("CISFIX")] == KUBE_BENCH_IDS["aks-1.8"]


# ---- a kubelet on flags alone (AKS without kubeletconfig.json) ----

AKS_UNIT = "/etc/systemd/system/kubelet.service"
AKS_FLAGS = "/etc/default/kubelet"
AKS_KUBELET_FLAGS = ("--address=0.0.0.0 --anonymous-auth=false --authorization-mode=Webhook "
                     "--client-ca-file=/etc/kubernetes/certs/ca.crt --kubeconfig=/var/lib/kubelet/kubeconfig "
                     "--event-qps=0 --feature-gates=RotateKubeletServerCertificate=true --rotate-certificates=true")


def flags_only_node(tmp_path: Path, benchmark: str, flags: str = AKS_KUBELET_FLAGS, config_flags: str = "") -> NodeState:
    """AgentBaker's unit: the flags in /etc/default/kubelet, a --config only when KUBELET_CONFIG_FILE_FLAGS
    names one."""
    node = TestNode(tmp_path / "flags-only")
    node.write(AKS_UNIT, b"[Service]\nEnvironmentFile=/etc/default/kubelet\nExecStart=/usr/local/bin/kubelet "
                         b"--enable-server --v=2 $KUBELET_CONFIG_FILE_FLAGS $KUBELET_FLAGS\n", 0o644)
    node.write(AKS_FLAGS, (f"KUBELET_CONFIG_FILE_FLAGS={config_flags}\n" if config_flags else "").encode()
               + f"KUBELET_FLAGS={flags}\n".encode(), 0o644)
    node.write("/etc/kubernetes/azure.json", b"{}\n", 0o600)
    node.write("/etc/kubernetes/certs/ca.crt", b"-----BEGIN CERTIFICATE-----\n", 0o644)
    node.write(KUBECONFIG, b"apiVersion: v1\nkind: Config\n", 0o600)
    kubelet = Component("kubelet", flag_files=(AKS_UNIT, AKS_FLAGS), config_flag="config")
    info = NodeInfo(DISTRIBUTION[benchmark], "1.32.3", ("worker",), {"kubelet": kubelet}, benchmark)
    return NodeState(Node(str(node.root)), info)


def test_aks_on_flags_alone_passes_with_azure_json_and_legacy_read_only_port_is_a_finding(tmp_path):
    state = flags_only_node(tmp_path, "aks-1.8")
    verdicts = {c.id: audit_one(state, c) for c in checks_for("aks-1.8")}
    # without a config file the kubelet's --read-only-port defaults to 10255 (applyLegacyDefaults)
    assert verdicts["3.2.4"].status == FAIL and verdicts["3.2.4"].actual == "10255"
    assert {i for i, v in verdicts.items() if v.status != PASS} == {"3.2.4"}
    plan = check("aks-1.8", "3.2.4").remediate(state)
    assert plan.changes == (Configure("kubelet", (SetSetting("read-only-port", None, 0),)),)
    (edit,) = resolve(state, plan.changes[0])
    assert edit.path == AKS_FLAGS and edit.ops == (SetFlag("read-only-port", "0"),)


def test_aks_azure_json_mode_is_fixed_by_chmod(tmp_path):
    state = flags_only_node(tmp_path, "aks-1.8")
    os.chmod(state.node.host("/etc/kubernetes/azure.json"), 0o666)
    state = NodeState(state.node, state.info)
    assert audit_one(state, check("aks-1.8", "3.1.3")).status == FAIL
    assert check("aks-1.8", "3.1.3").remediate(state).changes == (SetMode("/etc/kubernetes/azure.json", 0o644, None),)


def test_with_a_config_file_an_unset_read_only_port_is_the_config_default(tmp_path):
    config = "/etc/default/kubeletconfig.json"
    state = flags_only_node(tmp_path, "aks-1.8", config_flags=f"--config={config}")
    Path(state.node.host(config)).write_text('{"kind": "KubeletConfiguration"}\n')
    assert audit_one(state, check("aks-1.8", "3.2.4")).status == PASS


def test_eks_without_a_config_file_has_no_config_file_checks(tmp_path):
    state = flags_only_node(tmp_path, "eks-1.8.0")
    for check_id in ("3.1.3", "3.1.4"):
        verdict = audit_one(state, check("eks-1.8.0", check_id))
        assert verdict.status == NOT_APPLICABLE and "without a --config file" in verdict.reason
    results = [audit_result(state, c) for c in checks_for("eks-1.8.0")]
    listed = {r["test_number"]: r["status"] for c in report(results)["Controls"] for t in c["tests"] for r in t["results"]}
    assert list(listed) == KUBE_BENCH_IDS["eks-1.8.0"] and listed["3.1.3"] == listed["3.1.4"] == "INFO"


def audit_result(state: NodeState, c) -> CheckResult:
    return CheckResult(c, audit_one(state, c))


def test_removing_rotate_certificates_false_unsets_it(tmp_path):
    node = managed_node(tmp_path, "eks", "1.32.3", EKS_CONFIG, COMPLIANT + "rotateCertificates: false\n")
    state = NodeState(Node(str(node.root)), NodeInfo("eks", "1.32.3", ("worker",), {
        "kubelet": Component("kubelet", config=EKS_CONFIG, config_flag="config",
                             flag_files=("/etc/systemd/system/kubelet.service",))}, "eks-1.8.0"))
    plan = check("eks-1.8.0", "3.2.8").remediate(state)
    (edit,) = resolve(state, plan.changes[0])
    assert edit.path == EKS_CONFIG and edit.ops == (UnsetPath("rotateCertificates"),)

