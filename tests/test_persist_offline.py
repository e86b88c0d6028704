"""`cisfix persist` where the API server cannot be reached or the node has no admin credentials: the
exact YAML to merge elsewhere and the kubeadm patch files are written under the state folder, the paths
printed, exit 7; and what kubeadm's ClusterConfiguration becomes, in both of its API versions."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from ruamel.yaml import YAML

from cisfix.lab.configmaps import STORE, ConfigMapStore
from cisfix.layouts.kubeadm.persist import PodChange, update_cluster_configuration

SCHEDULER = "/etc/kubernetes/manifests/kube-scheduler.yaml"
API_SERVER = "/etc/kubernetes/manifests/kube-apiserver.yaml"


def cisfix(lab, *args):
    return subprocess.run([sys.executable, "-m", "cisfix", "--root", str(lab.root), *args],
                          capture_output=True, text=True, timeout=300)


def edit(lab, path, *args):
    result = cisfix(lab, "edit", path, "--no-health-gate", *args)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("version, extra_args", [
    ("1.30", {"apiVersion": "kubeadm.k8s.io/v1beta3", "scheduler": {"extraArgs": {"profiling": "false"}}}),
    ("1.31", {"apiVersion": "kubeadm.k8s.io/v1beta4",
              "scheduler": {"extraArgs": [{"name": "profiling", "value": "false"}]}}),
])
def test_an_unreachable_api_server_gets_the_yaml_to_merge_elsewhere(make_lab, version, extra_args):
    lab = make_lab(version=version, start=False)  # nothing answers on its API server's port
    edit(lab, SCHEDULER, "--flag", "profiling=false")
    state = lab.root / "var/lib/cisfix"

    dry = cisfix(lab, "persist", "--dry-run")
    assert dry.returncode == 7 and not (state / "persist").exists()
    result = cisfix(lab, "persist")

    assert result.returncode == 7
    offline = state / "persist/kube-system_kubeadm-config.yaml"
    assert "kube-system/kubeadm-config: elsewhere: the API server cannot be reached" in result.stdout
    assert f"the YAML to merge there is in {offline}" in result.stdout
    text = offline.read_text()
    assert text.startswith("# Written by `cisfix persist`")
    assert YAML(typ="safe").load(text) == {**extra_args, "kind": "ClusterConfiguration"}
    assert oct(offline.stat().st_mode & 0o777) == "0o600"
    assert cisfix(lab, "persist").returncode == 7 and offline.read_text() == text  # the same again


def test_no_admin_credentials_and_a_removed_flag_get_a_patch_file_that_upgrade_applies(make_lab):
    lab = make_lab(version="1.31", start=False)
    edit(lab, API_SERVER, "--unflag", "enable-bootstrap-token-auth", "--flag", "profiling=false")
    (lab.root / "etc/kubernetes/admin.conf").unlink()  # a worker's view: no admin credentials

    result = cisfix(lab, "persist", "--format", "json")

    assert result.returncode == 7
    report = json.loads(result.stdout)
    config, published = report["objects"]  # the patch file is published for the other control-plane nodes
    assert config["status"] == "elsewhere" and "no admin credentials" in config["reason"]
    assert published["name"] == "kube-system/cisfix-control-plane-files" and published["status"] == "elsewhere"
    patches = lab.root / "var/lib/cisfix/persist/files"
    assert report["files_dir"] == str(patches) and report["files"] == ["kube-apiserver+json.yaml"]
    assert f"--patches {patches}" in report["files_usage"] and "every control-plane node" in report["files_usage"]
    offline = YAML(typ="safe").load((lab.root / "var/lib/cisfix/persist/kube-system_kubeadm-config.yaml").read_text())
    assert offline["apiServer"]["extraArgs"] == [{"name": "profiling", "value": "false"}]
    # What a person does where the API server can be reached: merge it into ClusterConfiguration.
    store = ConfigMapStore(lab.root / STORE.lstrip("/"))

    def merged(data):
        stored = YAML(typ="safe").load(data["ClusterConfiguration"])
        stored["apiServer"]["extraArgs"] = stored["apiServer"].get("extraArgs") or []
        stored["apiServer"]["extraArgs"] += offline["apiServer"]["extraArgs"]
        return {**data, "ClusterConfiguration": json.dumps(stored)}

    store.update("kubeadm-config", merged)

    upgrade = subprocess.run([sys.executable, "-m", "cisfix", "lab", "upgrade", str(lab.root), "--to", "1.32",
                              "--patches", str(patches)], capture_output=True, text=True, timeout=120)
    assert upgrade.returncode == 0, upgrade.stderr
    manifest = lab.manifest("kube-apiserver").read_text()
    assert "kube-apiserver:v1.32.0" in manifest
    assert "--enable-bootstrap-token-auth" not in manifest and "--profiling=false" in manifest


def test_flag_values_go_into_extra_args_in_the_form_the_stored_configuration_has():
    pods = {"kube-scheduler": PodChange(args={"profiling": "false"}),
            "kube-apiserver": PodChange(args={"audit-log-maxage": "30"}, volumes=[{
                "name": "audit-log", "hostPath": "/var/log/kubernetes/audit", "mountPath": "/var/log/kubernetes/audit",
                "readOnly": False, "pathType": "DirectoryOrCreate"}]),
            "etcd": PodChange(args={"auto-tls": "false"})}
    v1beta3 = {"apiVersion": "kubeadm.k8s.io/v1beta3", "apiServer": {"extraArgs": {"audit-log-maxage": "30"}},
               "etcd": {"local": {"dataDir": "/var/lib/etcd"}}}
    changes, conflicts = update_cluster_configuration(v1beta3, pods, force=False)
    assert conflicts == [] and len(changes) == 3  # the API server's value was there already
    assert v1beta3["scheduler"] == {"extraArgs": {"profiling": "false"}}
    assert v1beta3["etcd"]["local"] == {"dataDir": "/var/lib/etcd", "extraArgs": {"auto-tls": "false"}}
    assert v1beta3["apiServer"]["extraVolumes"][0]["name"] == "audit-log"

    v1beta4 = {"apiVersion": "kubeadm.k8s.io/v1beta4", "scheduler": {}}
    update_cluster_configuration(v1beta4, pods, force=False)
    assert v1beta4["scheduler"] == {"extraArgs": [{"name": "profiling", "value": "false"}]}
    again = json.loads(json.dumps(v1beta4))
    assert update_cluster_configuration(again, pods, force=False) == ([], []) and again == v1beta4


def test_a_different_value_there_is_a_conflict_kept_unless_forced():
    pods = {"kube-scheduler": PodChange(args={"profiling": "false"}, removed=["bind-address"])}
    config = {"apiVersion": "kubeadm.k8s.io/v1beta4",
              "scheduler": {"extraArgs": [{"name": "profiling", "value": "true"},
                                          {"name": "bind-address", "value": "0.0.0.0"}]}}
    changes, conflicts = update_cluster_configuration(config, pods, force=False)
    assert changes == [] and len(conflicts) == 2
    assert "profiling is 'true' there, the fixed node has 'false'; kept" in conflicts[0]
    assert config["scheduler"]["extraArgs"][0] == {"name": "profiling", "value": "true"}

    changes, conflicts = update_cluster_configuration(config, pods, force=True)
    assert conflicts == [] and config["scheduler"]["extraArgs"] == [{"name": "profiling", "value": "false"}]


def test_a_mount_for_local_etcd_becomes_a_patch_file_that_kubeadm_merges_by_name():
    from cisfix.lab import kubeadm, patches
    from cisfix.layouts.kubeadm.persist import volume_patch

    volume = {"hostPath": {"path": "/etc/kubernetes/etcd-extra", "type": "DirectoryOrCreate"}, "name": "etcd-extra"}
    mount = {"mountPath": "/etc/kubernetes/etcd-extra", "name": "etcd-extra", "readOnly": True}
    text = volume_patch("etcd", PodChange(pod_volumes=[volume], mounts=[mount]))
    assert volume_patch("kube-scheduler", PodChange(args={"profiling": "false"})) is None  # extraArgs say it all

    cluster = kubeadm.Cluster("1.31.0", {name: 30000 + i for i, name in enumerate(
        ("apiserver", "controller-manager", "scheduler", "etcd-client", "etcd-peer", "etcd-metrics",
         "kubelet-healthz", "kubelet"))})
    pod = kubeadm.etcd(cluster, {})
    patch = patches.Patch("etcd", "strategic", (YAML(typ="safe").load(text),), "etcd+strategic.yaml")
    patched = patches.apply([patch], "etcd", pod)
    assert [v["name"] for v in patched["spec"]["volumes"]] == ["etcd-certs", "etcd-data", "etcd-extra"]
    assert patched["spec"]["containers"][0]["volumeMounts"][-1] == mount
    assert patched["spec"]["containers"][0]["command"] == pod["spec"]["containers"][0]["command"]


def test_a_cluster_configuration_kubeadm_could_not_read_is_bad_input_naming_the_configmap():
    from cisfix.errors import InputError

    for section in ({"extraArgs": "profiling=false"}, {"extraArgs": ["profiling"]}, {"extraVolumes": {"a": 1}}):
        config = {"apiVersion": "kubeadm.k8s.io/v1beta4", "scheduler": section}
        with pytest.raises(InputError, match="kube-system/kubeadm-config: ClusterConfiguration scheduler: extraArgs"):
            update_cluster_configuration(config, {"kube-scheduler": PodChange(args={"profiling": "false"})}, False)
