"""Every automated check of the CIS plugin on the static kubeadm 1.31 node: compliant input passes,
non-compliant input fails, and its plan (applied with `cisfix.fix.apply_fix`) makes the audit pass, or
it says why it cannot be fixed safely. No process runs on this node, so audits read the manifests."""
from __future__ import annotations

import os
import shutil
import sys
from typing import Callable, Dict

import pytest
from node_processes import fake_process, pod_cgroup, pod_log_folder

from cisfix.audit import select
from cisfix.fix import apply_fix, plan_fix
from cisfix.node import Node
from cisfix.plugins import Plugins
from cisfix.testing import TestNode, build_node

API = "/etc/kubernetes/manifests/kube-apiserver.yaml"
CM = "/etc/kubernetes/manifests/kube-controller-manager.yaml"
SCHED = "/etc/kubernetes/manifests/kube-scheduler.yaml"
ETCD = "/etc/kubernetes/manifests/etcd.yaml"
KUBELET = "/var/lib/kubelet/config.yaml"
FLAGS_ENV = "/var/lib/kubelet/kubeadm-flags.env"


def add_flag(path: str, component: str, flag: str) -> Callable:
    def mutate(node) -> None:
        text = node.read(path).decode()
        node.write(path, text.replace(f"    - {component}\n", f"    - {component}\n    - {flag}\n", 1).encode())
    return mutate


def replace(path: str, old: str, new: str) -> Callable:
    def mutate(node) -> None:
        text = node.read(path).decode()
        assert old in text, old
        node.write(path, text.replace(old, new, 1).encode(), mode=os.stat(node.path(path)).st_mode & 0o777)
    return mutate


def chmod(path: str, mode: int) -> Callable:
    return lambda node: os.chmod(node.path(path), mode)


def env_flag(flag: str) -> Callable:
    return lambda node: node.write(FLAGS_ENV, f'KUBELET_KUBEADM_ARGS="--pod-infra-container-image=x {flag}"\n'.encode(),
                                   0o644)


# check id -> how to break it on the compliant static node (after a full fix), and whether cisfix fixes it.
BREAK: Dict[str, Callable] = {
    "1.1.1": chmod(API, 0o644), "1.1.3": chmod(CM, 0o640), "1.1.5": chmod(SCHED, 0o666), "1.1.7": chmod(ETCD, 0o644),
    "1.2.3": replace(API, ",DenyServiceExternalIPs", ""),
    "1.2.6": replace(API, "--authorization-mode=Node,RBAC", "--authorization-mode=AlwaysAllow"),
    "1.2.7": replace(API, "--authorization-mode=Node,RBAC", "--authorization-mode=RBAC"),
    "1.2.8": replace(API, "--authorization-mode=Node,RBAC", "--authorization-mode=Node"),
    "1.2.10": replace(API, "--enable-admission-plugins=", "--enable-admission-plugins=AlwaysAdmit,"),
    "1.2.12": add_flag(API, "kube-apiserver", "--disable-admission-plugins=ServiceAccount"),
    "1.2.13": add_flag(API, "kube-apiserver", "--disable-admission-plugins=NamespaceLifecycle,Priority"),
    "1.2.14": replace(API, "NodeRestriction,", ""),
    "1.2.15": replace(API, "--profiling=false", "--profiling=true"),
    "1.2.17": replace(API, "--audit-log-maxage=30", "--audit-log-maxage=7"),
    "1.2.18": replace(API, "--audit-log-maxbackup=10", "--audit-log-maxbackup=2"),
    "1.2.19": replace(API, "--audit-log-maxsize=100", "--audit-log-maxsize=10"),
    "1.2.21": add_flag(API, "kube-apiserver", "--service-account-lookup=false"),
    "1.2.22": lambda node: (node.write("/etc/kubernetes/pki/sa.pub", b"key"),
                            replace(API, "    - --service-account-key-file=/etc/kubernetes/pki/sa.pub\n", "")(node)),
    "1.2.25": lambda node: (node.write("/etc/kubernetes/pki/ca.crt", b"ca", 0o644),
                            replace(API, "    - --client-ca-file=/etc/kubernetes/pki/ca.crt\n", "")(node)),
    "1.2.29": replace(API, "--tls-cipher-suites=", "--tls-cipher-suites=TLS_RSA_WITH_AES_128_CBC_SHA,"),
    "1.2.30": replace(API, "--service-account-extend-token-expiration=false",
                      "--service-account-extend-token-expiration=true"),
    "1.3.2": replace(CM, "--profiling=false", "--profiling=true"),
    "1.3.3": replace(CM, "--use-service-account-credentials=true", "--use-service-account-credentials=false"),
    "1.3.6": add_flag(CM, "kube-controller-manager", "--feature-gates=A=true,RotateKubeletServerCertificate=false"),
    "1.3.7": replace(CM, "--bind-address=127.0.0.1", "--bind-address=0.0.0.0"),
    "1.4.1": replace(SCHED, "--profiling=false", "--profiling=true"),
    "1.4.2": replace(SCHED, "--bind-address=127.0.0.1", "--bind-address=0.0.0.0"),
    "2.2": replace(ETCD, "--client-cert-auth=true", "--client-cert-auth=false"),
    "2.3": add_flag(ETCD, "etcd", "--auto-tls=true"),
    "2.5": replace(ETCD, "--peer-client-cert-auth=true", "--peer-client-cert-auth=false"),
    "2.6": add_flag(ETCD, "etcd", "--peer-auto-tls=true"),
    "4.1.9": chmod(KUBELET, 0o644),
    "4.2.1": replace(KUBELET, "    enabled: false", "    enabled: true"),
    "4.2.2": replace(KUBELET, "mode: Webhook", "mode: AlwaysAllow"),
    "4.2.4": env_flag("--read-only-port=10255"),
    "4.2.5": env_flag("--streaming-connection-idle-timeout=0"),
    "4.2.6": env_flag("--make-iptables-util-chains=false"),
    "4.2.8": env_flag("--event-qps=-1"),
    "4.2.10": replace(KUBELET, "rotateCertificates: true", "rotateCertificates: false"),
    "4.2.11": env_flag("--feature-gates=RotateKubeletServerCertificate=false"),
    "4.2.12": env_flag("--tls-cipher-suites=TLS_RSA_WITH_AES_128_CBC_SHA"),
}
# Non-compliant, but with no safe automatic fix: the plan must say why.
MANUAL = {"1.2.1", "1.2.2", "1.2.5", "1.3.1", "4.2.7", "4.2.9", "4.2.13", "4.2.14", "2.1", "2.4"}


def _plugins(node) -> Plugins:
    return Plugins(Node(str(node.root)))


def _fix(node, *ids: str):
    plugins = _plugins(node)
    plan = plan_fix(plugins, select(plugins, ids))
    outcome = apply_fix(plugins, plan)
    return plan, outcome


def _with_flag_files(node) -> None:
    """The static node has no kubelet flag files; give it kubeadm's."""
    node.write(FLAGS_ENV, b'KUBELET_KUBEADM_ARGS="--pod-infra-container-image=x"\n', 0o644)


@pytest.fixture(scope="module")
def hardened_template(tmp_path_factory):
    """One fully fixed node per module; each test gets its own copy (a full fix takes seconds)."""
    node = build_node(tmp_path_factory.mktemp("hardened") / "node")
    _with_flag_files(node)
    plan, outcome = _fix(node)
    assert outcome.status == "FIXED", outcome.reason
    return node


@pytest.fixture
def hardened(hardened_template, tmp_path):
    root = tmp_path / "node"
    shutil.copytree(hardened_template.root, root, symlinks=True)
    return TestNode(root)


def test_full_fix_leaves_only_manual_failures(hardened):
    results = hardened.audit()
    failing = {i for i, r in results.items() if r["status"] in ("FAIL", "ERROR")}
    assert failing <= MANUAL, failing
    assert not any(r["status"] == "ERROR" for r in results.values())
    plugins = _plugins(hardened)
    again = plan_fix(plugins, select(plugins))
    assert again.planned == []
    assert {r.check.id for r in again.skipped} == failing
    assert all(r.audit.reason for r in again.skipped)


@pytest.mark.parametrize("check_id", sorted(BREAK, key=lambda i: [int(p) for p in i.split(".")]))
def test_break_then_fix(hardened, check_id):
    assert hardened.audit(check_id)[check_id]["status"] == "PASS"
    BREAK[check_id](hardened)
    broken = hardened.audit(check_id)[check_id]
    assert broken["status"] == "FAIL", broken
    plan, outcome = _fix(hardened, check_id)
    assert [c.id for c, _ in plan.planned] == [check_id], plan.skipped
    assert outcome.status == "FIXED", outcome.reason
    assert hardened.audit(check_id)[check_id]["status"] == "PASS"


def test_kubelet_flag_is_fixed_in_the_flag_file(hardened):
    env_flag("--read-only-port=10255")(hardened)
    result = hardened.audit("4.2.4")["4.2.4"]
    assert result["status"] == "FAIL" and result["evidence"][0]["file"] == FLAGS_ENV
    before = hardened.read(KUBELET)
    _fix(hardened, "4.2.4")
    assert hardened.read(FLAGS_ENV) == b'KUBELET_KUBEADM_ARGS="--pod-infra-container-image=x --read-only-port=0"\n'
    assert hardened.read(KUBELET) == before


@pytest.mark.parametrize("check_id", sorted(MANUAL))
def test_manual_plans_say_why(node, check_id):
    _with_flag_files(node)
    {"4.2.7": env_flag("--hostname-override=x"), "1.2.2": add_flag(API, "kube-apiserver", "--token-auth-file=/t"),
     "2.1": replace(ETCD, "    - --cert-file=/etc/kubernetes/pki/etcd/server.crt\n", ""),
     "2.4": replace(ETCD, "    - --peer-cert-file=/etc/kubernetes/pki/etcd/peer.crt\n", "")}.get(check_id, lambda n: None)(node)
    assert node.audit(check_id)[check_id]["status"] == "FAIL"
    plan, outcome = _fix(node, check_id)
    assert plan.planned == [] and plan.skipped[0].audit.reason


def test_a_file_to_create_first_is_named_under_the_root(node):
    replace(API, "    - --client-ca-file=/etc/kubernetes/pki/ca.crt\n", "")(node)
    result = node.run("fix", "--check", "1.2.25")
    assert result.exit_code == 1
    assert (f"{node.root}/etc/kubernetes/pki/ca.crt not found (kubeadm creates them); create the files first"
            in result.stdout.splitlines()[1])


def test_etcd_data_dir_owner_needs_an_etcd_user(node):
    node.path("/var/lib/etcd").mkdir(mode=0o700)
    finding = node.audit("1.1.12")["1.1.12"]
    # an owner finding speaks of owners, not of the (compliant) mode
    assert (finding["status"], finding["expected"], finding["actual"]) == ("FAIL", "owner etcd:etcd", "root:root")
    assert finding["evidence"] == [{"file": "/var/lib/etcd", "detail": "owner root:root"}]
    plan, _ = _fix(node, "1.1.12")
    assert "no etcd user" in plan.skipped[0].audit.reason


def test_encryption_key_is_random_and_private(node):
    _fix(node, "1.2.27")
    config = node.path("/etc/kubernetes/encryption-config.yaml")
    assert os.stat(config).st_mode & 0o777 == 0o600
    assert b"secretbox:" in config.read_bytes()
    other = node.root.parent / "other"
    from cisfix.testing import build_node

    second = build_node(other)
    _fix(second, "1.2.27")
    assert second.read("/etc/kubernetes/encryption-config.yaml") != config.read_bytes()


def test_anonymous_auth_on_1_32_uses_an_authentication_config(node):
    for path in (API, CM, SCHED):
        replace(path, ":v1.31.2", ":v1.32.0")(node)
    assert node.run("audit", "--format", "kube-bench").json()["Controls"][0]["version"] == "cis-1.12"
    plan, outcome = _fix(node, "1.2.1")
    assert outcome.status == "FIXED"
    manifest = node.read(API).decode()
    assert "--authentication-config=/etc/kubernetes/authentication-config.yaml" in manifest
    assert "anonymous-auth" not in manifest
    assert node.audit("1.2.1")["1.2.1"]["status"] == "PASS"


def test_drift_between_process_and_manifest_is_reported(node, tmp_path):
    # The API server's container, with the evidence a node gives: run by root from a root-owned
    # executable, in its pod's cgroup, whose log folder the kubelet wrote.
    uid = pod_log_folder(node.root, "kube-system", "kube-apiserver")
    fake_process(tmp_path / "proc", 4242, ["kube-apiserver", "--profiling=true"], start_ticks=99,
                 exe=os.path.realpath(sys.executable), cgroup=pod_cgroup(uid))
    node.write("/etc/cisfix/config.yaml", f"apiVersion: cisfix/v1\nkind: NodeConfig\nproc: {tmp_path / 'proc'}\n".encode(), 0o644)
    replace(API, "    - kube-apiserver\n", "    - kube-apiserver\n    - --profiling=false\n")(node)
    result = node.audit("1.2.15")["1.2.15"]
    assert result["status"] == "FAIL"
    assert "has not restarted" in result["reason"]
