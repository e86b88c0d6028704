"""A lab cluster of three kubeadm control-plane nodes (`lab create --join`): one etcd cluster, one cluster
store, and the documented rolling upgrade — `lab upgrade` on the first node, `lab upgrade-node` on each
other one, with kubeadm's roll-back when a node's new API server cannot start."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from cisfix.lab.control import find_process
from cisfix.lab.etcdcluster import EtcdClient, client_url

from test_lab_upgrade import api, cluster_configuration, cmdline, put_cluster_configuration

CONTROL_PLANE = "/api/v1/nodes?labelSelector=node-role.kubernetes.io/control-plane"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
POLICY = "/etc/kubernetes/audit/policy.yaml"
DROPIN = "/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf"


def lab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cisfix", "lab", *args], capture_output=True, text=True, timeout=300)


def image(node, component: str) -> str:
    """The image the running container was started from (the lab's runtime hands it in its environment)."""
    pid = find_process(str(node.layout.launcher(component)))
    environ = Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
    return next(v.partition("=")[2] for v in environ if v.startswith("LAB_IMAGE="))


def started(node, since: float) -> dict:
    """component -> how many of its pods were started since `since`."""
    counts = {}
    for event in node.events("pod-started", since=since):
        counts[event["component"]] = counts.get(event["component"], 0) + 1
    return counts


def kubelet_starts(node) -> int:
    return json.loads(node.layout.init_state.read_text())["unitStarts"]


def manifests(node) -> dict:
    return {c: node.manifest(c).read_bytes() for c in COMPONENTS}


def test_three_joined_nodes_share_etcd_and_store_and_upgrade_node_by_node_with_roll_back(make_cluster, tmp_path):
    nodes = make_cluster(3, version="1.31")
    first, second, third = nodes

    # One etcd cluster of three members; each API server talks to its own member.
    members = EtcdClient(client_url(first.layout.settings().ports), first.layout).members()
    assert sorted(m["name"] for m in members) == ["lab-node", "lab-node-2", "lab-node-3"]
    for node in nodes:
        own = f"--etcd-servers=https://127.0.0.1:{node.layout.settings().ports['etcd-client']}"
        assert own in cmdline(node, "kube-apiserver")
    assert "--initial-cluster-state=existing" in third.manifest("etcd").read_text()
    # The cluster's authorities, the node's own leaf certificates; admin.conf, as `kubeadm join` writes.
    pki = "/etc/kubernetes/pki"
    for shared in ("ca.key", "sa.key", "front-proxy-ca.key", "etcd/ca.key"):
        assert third.layout.host(f"{pki}/{shared}").read_bytes() == first.layout.host(f"{pki}/{shared}").read_bytes()
    assert third.layout.host(f"{pki}/apiserver.key").read_bytes() != first.layout.host(f"{pki}/apiserver.key").read_bytes()
    assert third.layout.host("/etc/kubernetes/admin.conf").exists()
    assert not third.layout.host("/etc/kubernetes/super-admin.conf").exists()
    # One cluster store: the three control-plane nodes, and a change through one API server seen through another.
    names = [n["metadata"]["name"] for n in api(second, "GET", "", path=CONTROL_PLANE)[1]["items"]]
    assert sorted(names) == ["lab-node", "lab-node-2", "lab-node-3"]
    new = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared", "namespace": "kube-system"},
           "data": {"from": "node 2"}}
    assert api(second, "POST", "", body=new, path="/api/v1/namespaces/kube-system/configmaps")[0] == 201
    assert api(first, "GET", "shared")[1]["data"] == {"from": "node 2"}

    # A persisted audit policy whose file exists only on node 2 (yet).
    second.layout.host(POLICY).parent.mkdir()
    second.layout.host(POLICY).write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n")
    config = cluster_configuration(second)
    config["apiServer"] = {
        "extraArgs": [{"name": "audit-policy-file", "value": POLICY}],
        "extraVolumes": [{"name": "audit", "hostPath": "/etc/kubernetes/audit", "mountPath": "/etc/kubernetes/audit",
                          "readOnly": True, "pathType": "DirectoryOrCreate"}]}
    put_cluster_configuration(second, config)
    second.layout.host(DROPIN).chmod(0o600)  # as a CIS 4.1.1 fix leaves it

    # `kubeadm upgrade apply` on the first node, whose new API server cannot start: rolled back, and the
    # new ClusterConfiguration not uploaded (that comes after the control plane).
    before = manifests(first)
    result = lab("upgrade", str(first.root), "--to", "1.32", "--wait", "10")
    assert result.returncode == 1 and "couldn't upgrade control plane" in result.stderr
    assert cluster_configuration(third)["kubernetesVersion"] == "v1.31.0"
    assert first.layout.settings().version == "1.31.0"
    assert {c: manifests(first)[c] == before[c] for c in COMPONENTS[1:]} == dict.fromkeys(COMPONENTS[1:], True)
    first.wait_healthy(60)
    # With the policy in place: every component left to upgrade once, then the kubelet once.
    first.layout.host(POLICY).parent.mkdir(exist_ok=True)
    first.layout.host(POLICY).write_text(second.layout.host(POLICY).read_text())
    since, kubelet = time.time(), kubelet_starts(first)
    result = lab("upgrade", str(first.root), "--to", "1.32")
    assert result.returncode == 0, result.stderr
    assert "unchanged: etcd" in result.stdout  # upgraded by the first try, which kept it
    assert cluster_configuration(third)["kubernetesVersion"] == "v1.32.0"
    assert started(first, since) == dict.fromkeys(COMPONENTS[1:], 1)
    assert kubelet_starts(first) == kubelet + 1
    assert f"--audit-policy-file={POLICY}" in cmdline(first, "kube-apiserver")
    assert "--initial-cluster-state" not in first.manifest("etcd").read_text()

    # `kubeadm upgrade node` with the package step on the second.
    since, kubelet, kubelet_pid = time.time(), kubelet_starts(second), second.unit_pid()
    patches = tmp_path / "patches"
    patches.mkdir()
    (patches / "kube-scheduler+json.yaml").write_text(
        "- op: add\n  path: /spec/containers/0/command/-\n  value: --profiling=false\n")
    result = lab("upgrade-node", str(second.root), "--packages", "--patches", str(patches))
    assert result.returncode == 0, result.stderr
    assert "--profiling=false" in cmdline(second, "kube-scheduler")
    assert "upgraded from v1.31.0 to v1.32.0" in result.stdout
    assert started(second, since) == dict.fromkeys(COMPONENTS, 1)
    assert kubelet_starts(second) == kubelet + 1 and second.unit_pid() != kubelet_pid
    assert second.layout.host(DROPIN).stat().st_mode & 0o777 == 0o644
    assert "--initial-cluster-state" not in second.manifest("etcd").read_text()  # upgrade names only itself
    for node in (first, second):
        for component in COMPONENTS[1:]:
            assert image(node, component) == f"registry.k8s.io/{component}:v1.32.0"
        assert image(node, "etcd") == "registry.k8s.io/etcd:3.5.16-0"

    # The third node's new API server cannot start (no audit policy there): kubeadm puts the old manifests back.
    before, kubelet = manifests(third), kubelet_starts(third)
    result = lab("upgrade-node", str(third.root), "--wait", "10")
    assert result.returncode == 1
    assert "couldn't upgrade control plane. kubeadm has tried to recover everything" in result.stderr
    after = manifests(third)
    assert {c: after[c] == before[c] for c in COMPONENTS[1:]} == dict.fromkeys(COMPONENTS[1:], True)
    assert after["etcd"] != before["etcd"]  # etcd upgraded fine, and kubeadm rolls it back only when it failed
    assert third.layout.settings().version == "1.31.0" and kubelet_starts(third) == kubelet
    assert "version: 1.31.0" in third.layout.host("/etc/cisfix/config.yaml").read_text()
    third.wait_healthy(60)
    assert image(third, "kube-apiserver") == "registry.k8s.io/kube-apiserver:v1.31.0"
    for node in (first, second):
        assert all(s.healthy for s in node.status().values())

    # With the file in place, the retry upgrades what is left, each once.
    third.layout.host(POLICY).parent.mkdir(exist_ok=True)
    third.layout.host(POLICY).write_text(first.layout.host(POLICY).read_text())
    since = time.time()
    result = lab("upgrade-node", str(third.root))
    assert result.returncode == 0, result.stderr
    assert "unchanged: etcd" in result.stdout
    assert started(third, since) == dict.fromkeys(COMPONENTS[1:], 1)
    assert image(third, "kube-apiserver") == "registry.k8s.io/kube-apiserver:v1.32.0"
    assert len(EtcdClient(client_url(third.layout.settings().ports), third.layout).members()) == 3
    for node in nodes:
        assert all(s.healthy for s in node.status().values())

    # Nothing left to upgrade: refused, nothing changed.
    before = manifests(first)
    result = lab("upgrade-node", str(first.root))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "upgrade the cluster first" in result.stderr and manifests(first) == before

    # Stopping one node leaves the others (etcd keeps its quorum of two).
    third.stop()
    for node in (first, second):
        assert all(s.healthy for s in node.wait_healthy(30).values())


def test_a_node_joins_only_a_running_kubeadm_lab(make_lab, tmp_path):
    first = make_lab(start=False)
    result = lab("create", str(tmp_path / "second"), "--join", str(first.root), "--key-algorithm", "ECDSA-P256")
    assert result.returncode == 2 and "is not running" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "second").exists()
    result = lab("create", str(tmp_path / "second"), "--join", str(first.root), "--k8s-version", "1.31")
    assert result.returncode == 2 and "cluster's version" in result.stderr
