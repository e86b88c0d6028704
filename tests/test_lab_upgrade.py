"""`cisfix lab upgrade`: the lab's API server keeps kubeadm's ConfigMaps, and an upgrade regenerates the
node from them the way `kubeadm upgrade apply` does."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from cisfix.health import fetch
from cisfix.lab.control import find_process
from cisfix.node import Node
from cisfix.state import NodeState
from cisfix.types import NodeInfo

ADMIN = {"kubeconfig": "/etc/kubernetes/admin.conf", "caFile": "/etc/kubernetes/pki/ca.crt"}
# The kubelet's credentials: a node may read kubeadm's ConfigMaps, not change them.
NODE = {"kubeconfig": "/etc/kubernetes/kubelet.conf", "caFile": "/etc/kubernetes/pki/ca.crt"}


def api(lab, method: str, name: str, credentials: dict = ADMIN, body: dict = None, path: str = ""):
    url = (f"https://127.0.0.1:{lab.layout.settings().ports['apiserver']}"
           + (path or f"/api/v1/namespaces/kube-system/configmaps/{name}"))
    state = NodeState(Node(str(lab.root)), NodeInfo())
    code, data = fetch(url, state, credentials, timeout=10, method=method,
                       body=json.dumps(body).encode() if body is not None else None)
    return code, json.loads(data)


def cluster_configuration(lab) -> dict:
    return YAML(typ="safe").load(api(lab, "GET", "kubeadm-config")[1]["data"]["ClusterConfiguration"])


def put_cluster_configuration(lab, config: dict) -> dict:
    code, current = api(lab, "GET", "kubeadm-config")
    current["data"]["ClusterConfiguration"] = json.dumps(config)
    code, stored = api(lab, "PUT", "kubeadm-config", body=current)
    assert code == 200, stored
    return stored


def lab_upgrade(lab, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cisfix", "lab", "upgrade", str(lab.root), *args],
                          capture_output=True, text=True, timeout=300)


def manifest(lab, component: str) -> str:
    return lab.manifest(component).read_text()


def cmdline(lab, component: str) -> list:
    """The running container's argv; [] between a container's exit and its restart."""
    pid = find_process(str(lab.layout.launcher(component)))
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0") if pid else []
    except FileNotFoundError:
        return []


def test_configmaps_need_an_admin_certificate_to_change_and_a_stale_resource_version_conflicts(make_lab):
    lab = make_lab(version="1.31")
    code, kubelet_config = api(lab, "GET", "kubelet-config", NODE)
    assert code == 200 and "kind: KubeletConfiguration" in kubelet_config["data"]["kubelet"]
    code, status = api(lab, "GET", "kubeadm-config", {"caFile": "/etc/kubernetes/pki/ca.crt"})
    assert (code, status["reason"]) == (401, "Unauthorized")

    code, config = api(lab, "GET", "kubeadm-config")
    version = config["metadata"]["resourceVersion"]
    code, status = api(lab, "PUT", "kubeadm-config", NODE, body=config)
    assert (code, status["reason"]) == (403, "Forbidden")
    code, stored = api(lab, "PUT", "kubeadm-config", body=config)
    assert code == 200 and int(stored["metadata"]["resourceVersion"]) > int(version)
    code, status = api(lab, "PUT", "kubeadm-config", body=config)  # still names the old resourceVersion
    assert (code, status["reason"]) == (409, "Conflict")
    assert api(lab, "GET", "kubeadm-config")[1] == stored

    # Creating one (POST), as only an admin may; a second of the same name is refused.
    new = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "made", "namespace": "kube-system"},
           "data": {"k": "v"}}
    create = "/api/v1/namespaces/kube-system/configmaps"
    assert api(lab, "POST", "", NODE, new, create)[0] == 403
    code, made = api(lab, "POST", "", body=new, path=create)
    assert code == 201 and made["data"] == {"k": "v"}
    assert api(lab, "POST", "", body=new, path=create)[1]["reason"] == "AlreadyExists"
    assert api(lab, "GET", "made")[1] == made


def test_the_api_server_lists_the_control_plane_nodes_by_label(lab):
    code, nodes = api(lab, "GET", "", path="/api/v1/nodes?labelSelector=node-role.kubernetes.io/control-plane")
    assert code == 200 and [n["metadata"]["name"] for n in nodes["items"]] == ["lab-node"]
    assert api(lab, "GET", "", path="/api/v1/nodes?labelSelector=node-role.kubernetes.io/control-plane=x")[1]["items"] == []
    assert api(lab, "GET", "", {"caFile": "/etc/kubernetes/pki/ca.crt"}, path="/api/v1/nodes")[0] == 401


def test_configmaps_survive_an_api_server_restart(lab):
    code, before = api(lab, "GET", "kubeadm-config")
    old_pid = find_process(str(lab.layout.launcher("kube-apiserver")))
    lab.edit_manifest("kube-apiserver", "--allow-privileged=true", "--allow-privileged=false")
    lab.wait_for(lambda: find_process(str(lab.layout.launcher("kube-apiserver"))) not in (None, old_pid),
                 what="a new API server")
    lab.wait_healthy(60)
    assert api(lab, "GET", "kubeadm-config") == (200, before)


def test_upgrade_drops_a_manual_edit_applies_patch_files_and_restarts_the_components(make_lab, tmp_path):
    lab = make_lab(version="1.31")
    assert cluster_configuration(lab)["apiVersion"] == "kubeadm.k8s.io/v1beta4"  # kubeadm 1.31's default
    lab.add_flag("kube-scheduler", "--profiling=false")  # a hand edit: kubeadm does not know it
    lab.wait_for(lambda: "--profiling=false" in cmdline(lab, "kube-scheduler"), what="the edited scheduler")
    old_api_server = find_process(str(lab.layout.launcher("kube-apiserver")))
    patches = tmp_path / "patches"
    patches.mkdir()
    (patches / "kube-apiserver+json.yaml").write_text(
        "- op: add\n  path: /spec/containers/0/command/-\n  value: --profiling=false\n")
    (patches / "kube-controller-manager0.yaml").write_text(  # strategic: containers merge by name
        "spec:\n  containers:\n  - name: kube-controller-manager\n    resources:\n      requests:\n        cpu: 300m\n")
    (patches / "kubeletconfiguration+merge.yaml").write_text("eventRecordQPS: 7\n")
    (patches / "README.txt").write_text("not a patch: skipped, as kubeadm skips it\n")

    result = lab_upgrade(lab, "--to", "1.32", "--patches", str(patches))

    assert result.returncode == 0, result.stderr
    assert "upgraded from v1.31.0 to v1.32.0" in result.stdout
    for component in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        assert f"image: registry.k8s.io/{component}:v1.32.0" in manifest(lab, component)
    assert "--profiling" not in manifest(lab, "kube-scheduler")
    assert "--profiling=false" not in cmdline(lab, "kube-scheduler")
    assert "--profiling=false" in manifest(lab, "kube-apiserver")
    assert "--profiling=false" in cmdline(lab, "kube-apiserver")
    assert find_process(str(lab.layout.launcher("kube-apiserver"))) != old_api_server
    assert "cpu: 300m" in manifest(lab, "kube-controller-manager")
    kubelet_config = lab.layout.host("/var/lib/kubelet/config.yaml").read_text()
    assert "eventRecordQPS: 7" in kubelet_config
    assert cluster_configuration(lab)["kubernetesVersion"] == "v1.32.0"
    assert "version: 1.32.0" in lab.layout.host("/etc/cisfix/config.yaml").read_text()
    backups = list(lab.layout.host("/etc/kubernetes/tmp").glob("kubeadm-backup-manifests-*/kube-scheduler.yaml"))
    assert len(backups) == 1 and "--profiling=false" in backups[0].read_text()
    assert all(s.healthy for s in lab.status().values())


def test_extra_args_and_volumes_override_kubeadm_defaults_and_v1beta3_becomes_v1beta4(make_lab):
    lab = make_lab(version="1.30")
    config = cluster_configuration(lab)
    assert config["apiVersion"] == "kubeadm.k8s.io/v1beta3"
    policy = lab.layout.host("/etc/kubernetes/audit/policy.yaml")
    policy.parent.mkdir()
    policy.write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n")
    config["apiServer"] = {
        "extraArgs": {"authorization-mode": "Node,RBAC", "audit-policy-file": "/etc/kubernetes/audit/policy.yaml"},
        "extraVolumes": [{"name": "audit", "hostPath": "/etc/kubernetes/audit", "mountPath": "/etc/kubernetes/audit",
                          "readOnly": True, "pathType": "DirectoryOrCreate"}]}
    config["scheduler"] = {"extraArgs": {"profiling": "false"}}
    put_cluster_configuration(lab, config)

    result = lab_upgrade(lab, "--to", "1.31")

    assert result.returncode == 0, result.stderr
    upgraded = cluster_configuration(lab)
    assert upgraded["apiVersion"] == "kubeadm.k8s.io/v1beta4"
    assert upgraded["scheduler"]["extraArgs"] == [{"name": "profiling", "value": "false"}]
    api_server = manifest(lab, "kube-apiserver")
    assert api_server.count("--authorization-mode=") == 1  # an extraArg replaces kubeadm's default by name
    assert "--audit-policy-file=/etc/kubernetes/audit/policy.yaml" in api_server
    assert "mountPath: /etc/kubernetes/audit" in api_server
    assert "--audit-policy-file=/etc/kubernetes/audit/policy.yaml" in cmdline(lab, "kube-apiserver")
    assert "--profiling=false" in cmdline(lab, "kube-scheduler")


def test_bad_upgrade_input_is_refused_before_anything_changes(make_lab, tmp_path):
    lab = make_lab(version="1.30", start=False)
    manifests = lab.layout.host("/etc/kubernetes/manifests")
    before = {p.name: p.read_bytes() for p in manifests.iterdir()}
    store = lab.layout.host("/var/lib/lab/configmaps.json").read_bytes()
    patches = tmp_path / "patches"
    patches.mkdir()
    (patches / "kube-apiserver.yaml").write_text("spec: [unclosed\n")

    for args, message in ((("--to", "1.29"), "down to"), (("--to", "1.32"), "one minor version at a time"),
                          (("--to", "1.31", "--patches", str(patches)), "kube-apiserver.yaml: cannot read the patch")):
        result = lab_upgrade(lab, *args)
        assert result.returncode == 2, result
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in manifests.iterdir()} == before
    assert lab.layout.host("/var/lib/lab/configmaps.json").read_bytes() == store


def test_patch_versions_compare_as_numbers():
    from cisfix.lab.layout import BadLabInput
    from cisfix.lab.upgrade import check_versions

    check_versions("1.31.9", "1.31.10")  # not a downgrade: 10 > 9
    check_versions("1.31.10", "1.32.0")
    with pytest.raises(BadLabInput, match="down to"):
        check_versions("1.31.10", "1.31.9")


def test_an_extra_volume_without_path_type_is_written_with_an_empty_type_as_kubeadm_does():
    from cisfix.lab import kubeadm

    cluster = kubeadm.Cluster("1.33.0", {p: 1 for p in ("apiserver", "controller-manager", "scheduler", "etcd-client",
                                                       "etcd-peer", "etcd-metrics", "kubelet-healthz", "kubelet")})
    config = kubeadm.cluster_configuration(cluster)
    config["apiServer"] = {"extraVolumes": [
        {"name": "audit", "hostPath": "/etc/kubernetes/audit", "mountPath": "/etc/kubernetes/audit"},
        {"name": "log", "hostPath": "/var/log/k", "mountPath": "/var/log/k", "pathType": "DirectoryOrCreate"}]}
    volumes = {v["name"]: v["hostPath"] for v in kubeadm.static_pods(cluster, config)["kube-apiserver"]["spec"]["volumes"]}
    assert volumes["audit"] == {"path": "/etc/kubernetes/audit", "type": ""}
    assert volumes["log"] == {"path": "/var/log/k", "type": "DirectoryOrCreate"}


def _offline_upgrade(lab, to: str, **options):
    from cisfix.lab.upgrade import upgrade

    return upgrade(lab.root, to, wait=0, **options)


def test_kubeadm_flags_env_per_version_and_kubeadms_rewrites_of_it_on_the_way_to_1_34_and_1_35(make_lab):
    flags_env = "/var/lib/kubelet/kubeadm-flags.env"
    for version, text in (("1.33", '"--container-runtime-endpoint=unix:///var/run/containerd/containerd.sock '
                                    '--pod-infra-container-image=registry.k8s.io/pause:3.10"'),
                          ("1.34", '"--pod-infra-container-image=registry.k8s.io/pause:3.10.1"'),
                          ("1.35", '""')):
        made = make_lab(name=f"lab-{version}", version=version, start=False)
        assert made.layout.host(flags_env).read_text() == f"KUBELET_KUBEADM_ARGS={text}\n"
        instance = made.layout.host("/var/lib/kubelet/instance-config.yaml")
        assert instance.exists() == (version != "1.33")
        config = YAML(typ="safe").load(made.layout.host("/var/lib/kubelet/config.yaml").read_text())
        assert config["containerRuntimeEndpoint"] == ("" if version == "1.33" else
                                                      "unix:///var/run/containerd/containerd.sock")

    lab = make_lab(version="1.33", start=False)
    # A node's own flags, unsorted, one given as two words: kubeadm re-serialises them as --name=value.
    lab.layout.host(flags_env).write_text(
        'KUBELET_KUBEADM_ARGS="--pod-infra-container-image=registry.k8s.io/pause:3.10 --v 2 '
        '--container-runtime-endpoint=unix:///run/custom.sock --node-ip=127.0.0.1"\n')
    report = _offline_upgrade(lab, "1.34")
    assert report.flags_rewritten
    assert lab.layout.host(flags_env).read_text() == (
        'KUBELET_KUBEADM_ARGS="--node-ip=127.0.0.1 --pod-infra-container-image=registry.k8s.io/pause:3.10 --v=2"\n')
    assert lab.layout.host("/var/lib/kubelet/instance-config.yaml").read_text() == \
        'containerRuntimeEndpoint: "unix:///run/custom.sock"\n'
    config = YAML(typ="safe").load(lab.layout.host("/var/lib/kubelet/config.yaml").read_text())
    assert config["containerRuntimeEndpoint"] == "unix:///run/custom.sock"  # the kubelet reads it from --config
    assert YAML(typ="safe").load(api_configmap_offline(lab))["containerRuntimeEndpoint"] == ""  # node-local only

    before = lab.layout.host(flags_env).read_text()
    assert _offline_upgrade(lab, "1.35").flags_rewritten
    assert lab.layout.host(flags_env).read_text() == 'KUBELET_KUBEADM_ARGS="--node-ip=127.0.0.1 --v=2"\n'
    backups = list(lab.layout.host("/etc/kubernetes/tmp").glob("kubeadm-kubelet-env-*/kubeadm-flags.env"))
    assert [b.read_text() for b in backups] == [before]
    config = YAML(typ="safe").load(lab.layout.host("/var/lib/kubelet/config.yaml").read_text())
    assert config["containerRuntimeEndpoint"] == "unix:///run/custom.sock"  # still applied at every upgrade
    assert not _offline_upgrade(lab, "1.35.1").flags_rewritten  # nothing left to strip


def api_configmap_offline(lab) -> str:
    from cisfix.lab.configmaps import STORE, ConfigMapStore

    return ConfigMapStore(lab.layout.host(STORE)).get("kubelet-config")["data"]["kubelet"]


def test_etcd_upgrade_false_leaves_etcds_manifest_as_it_is(make_lab):
    lab = make_lab(version="1.33", start=False)
    etcd = lab.manifest("etcd")
    before = etcd.read_bytes()
    report = _offline_upgrade(lab, "1.34", etcd_upgrade=False)
    assert etcd.read_bytes() == before and "etcd" not in report.changed
    assert "image: registry.k8s.io/kube-apiserver:v1.34.0" in manifest(lab, "kube-apiserver")

    other = make_lab(name="other", version="1.33", start=False)
    result = lab_upgrade(other, "--to", "1.34", "--etcd-upgrade=false", "--wait", "0")
    assert result.returncode == 0, result.stderr
    assert "etcd" not in result.stdout.split("unchanged:")[0] and "etcd:3.5.21-0" in manifest(other, "etcd")
    assert _offline_upgrade(other, "1.34.1").changed[0] == "etcd"  # an upgrade without the flag does it
    assert "etcd:3.6.4-0" in manifest(other, "etcd")
    assert lab_upgrade(other, "--to", "1.35", "--etcd-upgrade=maybe").returncode == 2


def test_patch_file_names_are_read_as_kubeadms_parse_filename_reads_them(tmp_path):
    from cisfix.lab import patches

    folder = tmp_path / "patches"
    (folder / "sub").mkdir(parents=True)
    (folder / "kube-apiserver+jsonx.yaml").write_text("- op: add\n  path: /metadata/labels/a\n  value: b\n")
    (folder / "kube-scheduler-extra.json").write_text('{"metadata": {"labels": {"x": "y"}}}')
    (folder / "sub" / "etcd+merge.yaml").write_text("metadata:\n  labels:\n    in: sub\n")
    (folder / "corednsdeployment+strategic.yaml").write_text("spec:\n  replicas: 3\n")
    (folder / "kubeletconfiguration.yaml").write_text("")  # empty: skipped
    for skipped in ("README.md", "kube-proxy.yaml", "etcd.yml", "notes+json.yaml"):
        (folder / skipped).write_text("not: read\n")
    loaded = patches.load(folder)
    assert [(Path(p.source).name, p.target, p.kind) for p in loaded] == [
        ("corednsdeployment+strategic.yaml", "corednsdeployment", "strategic"),
        ("kube-apiserver+jsonx.yaml", "kube-apiserver", "json"),
        ("kube-scheduler-extra.json", "kube-scheduler", "strategic"),
        ("etcd+merge.yaml", "etcd", "merge")]
    assert patches.unapplied(loaded) == [str(folder / "corednsdeployment+strategic.yaml")]

    for name, text, message in (("etcd+xml.yaml", "a: b\n", "unknown or missing patch type after '+', must be one "
                                                           "of [json merge strategic]"),
                                ("kube-scheduler+.json", "{}", "unknown or missing patch type after '+'"),
                                ("corednsdeployment+json.yaml", "spec: {}\n", "a json patch is a list of operations"),
                                ("corednsdeployment.yaml", "- 1\n", "a strategic patch must be a mapping")):
        bad = tmp_path / name.replace("+", "_").replace(".", "_")
        bad.mkdir()
        (bad / name).write_text(text)
        with pytest.raises(patches.PatchError, match=re.escape(message)) as caught:
            patches.load(bad)
        assert str(bad / name) in str(caught.value)


def test_a_corednsdeployment_patch_is_reported_as_applied_to_nothing(make_lab, tmp_path):
    lab = make_lab(version="1.33", start=False)
    (tmp_path / "corednsdeployment.yaml").write_text("spec:\n  replicas: 3\n")
    result = lab_upgrade(lab, "--to", "1.34", "--patches", str(tmp_path), "--wait", "0")
    assert result.returncode == 0, result.stderr
    assert f"applied to nothing (the lab has no CoreDNS Deployment): {tmp_path / 'corednsdeployment.yaml'}" in \
        result.stdout


def test_an_instance_config_kubeadm_cannot_apply_is_refused_before_anything_changes(make_lab):
    lab = make_lab(version="1.33", start=False)
    lab.layout.host("/var/lib/kubelet/instance-config.yaml").write_text("- not a patch\n")
    watched = [lab.manifest("kube-apiserver"), lab.layout.host("/var/lib/kubelet/kubeadm-flags.env"),
               lab.layout.host("/var/lib/kubelet/config.yaml"), lab.layout.host("/var/lib/lab/configmaps.json")]
    before = [p.read_bytes() for p in watched]
    result = lab_upgrade(lab, "--to", "1.34", "--wait", "0")
    assert result.returncode == 2
    assert result.stderr.strip().endswith("/var/lib/kubelet/instance-config.yaml: not a KubeletConfiguration patch "
                                          "(a YAML mapping)"), result.stderr
    assert [p.read_bytes() for p in watched] == before
