"""What `persist` gives for the fixes of a managed worker node: the snippet for the provider's mechanism
that keeps a kubelet setting (EKS AL2023: a NodeConfig for the launch template's user data; EKS AL2: a
user-data script run before bootstrap.sh; AKS: the node pool's kubeletConfig JSON; GKE: the node pool's
system configuration), naming the settings the mechanism cannot hold, and the snippet printed."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from managed_nodes import AKS_FLAGS, AL2023_ENV, EKS_CONFIG, GKE_CONFIG, make
from ruamel.yaml import YAML

from cisfix.audit import node_state
from cisfix.node import Node
from cisfix.persist import PersistReport, print_report
from cisfix.plugins import Plugins
from cisfix.types import NetChange


def plan(node, changes):
    plugins = Plugins(Node(str(node.root)))
    found = plugins.pm.hook.cisfix_plan_persistence(node_info=plugins.info, state=node_state(plugins), changes=changes)
    assert found is not None
    return found


def json_change(path, before: dict, **settings) -> NetChange:
    after = json.loads(json.dumps(before))
    for dotted, value in settings.items():
        *parents, last = dotted.split("__")
        target = after
        for key in parents:
            target = target.setdefault(key, {})
        target[last] = value
    return NetChange(path, json.dumps(before, indent=4).encode(), json.dumps(after, indent=4).encode())


def test_al2023_gives_the_nodeconfig_of_the_fixed_settings_and_flags(tmp_path):
    node = make(tmp_path / "node", "eks-al2023")
    config = json_change("/etc/kubernetes/kubelet/config.json", {**EKS_CONFIG, "readOnlyPort": 10255}, readOnlyPort=0, rotateCertificates=True,
                         authentication__anonymous__enabled=False, authentication__webhook__cacheTTL="2m0s")
    config = NetChange(config.path, config.before.replace(b'"enabled": false', b'"enabled": true', 1), config.after)
    flags = NetChange("/etc/eks/kubelet/environment", AL2023_ENV.encode(),
                      AL2023_ENV.replace(" --v=2", " --v=2 --event-qps=5").encode())
    found = plan(node, [config, flags])
    assert found.show_files and set(found.files) == {"nodeconfig.yaml"}
    document = YAML(typ="safe", pure=True).load(found.files["nodeconfig.yaml"])
    assert document == {"apiVersion": "node.eks.aws/v1alpha1", "kind": "NodeConfig",
                        "spec": {"kubelet": {"config": {"readOnlyPort": 0, "rotateCertificates": True,
                                                        "authentication": {"anonymous": {"enabled": False}}},
                                             "flags": ["--event-qps=5"]}}}
    assert "application/node.eks.aws" in found.files_usage


def test_al2023_names_what_a_nodeconfig_cannot_remove(tmp_path):
    node = make(tmp_path / "node", "eks-al2023")
    flags = NetChange("/etc/eks/kubelet/environment", AL2023_ENV.encode(),
                      AL2023_ENV.replace(" --hostname-override=ip-192-168-60-14.ec2.internal", "").encode())
    found = plan(node, [flags])
    assert not found.files
    assert any("cannot remove" in note and "--hostname-override" in note for note in found.notes)


@pytest.mark.skipif(not shutil.which("jq"), reason="jq is not installed")
def test_al2s_user_data_script_sets_the_fixed_settings_in_the_images_kubelet_config(tmp_path):
    node = make(tmp_path / "node", "eks-al2")
    change = json_change("/etc/kubernetes/kubelet/kubelet-config.json", {**EKS_CONFIG, "readOnlyPort": 10255},
                         readOnlyPort=0, podPidsLimit=4096,
                         authentication__anonymous__enabled=False)
    found = plan(node, [change])
    script = found.files["user-data.sh"].decode()
    assert script.startswith("#!/bin/bash\n")
    # Run against a copy of the image's file, as the user data would before bootstrap.sh.
    image = tmp_path / "kubelet-config.json"
    image.write_text(json.dumps({**EKS_CONFIG, "readOnlyPort": 10255}, indent=2))
    subprocess.run(["bash", "-c", script.replace("/etc/kubernetes/kubelet/kubelet-config.json", str(image))], check=True)
    result = json.loads(image.read_text())
    assert (result["readOnlyPort"], result["podPidsLimit"], result["authentication"]["anonymous"]["enabled"]) == (0, 4096, False)
    assert {k: v for k, v in result.items() if k not in ("readOnlyPort", "podPidsLimit")} == \
        {k: v for k, v in EKS_CONFIG.items() if k not in ("readOnlyPort", "podPidsLimit")}


def test_aks_gives_the_kubeletconfig_it_supports_and_names_the_rest(tmp_path):
    node = make(tmp_path / "node", "aks")
    after = AKS_FLAGS.replace("--read-only-port=10255", "--read-only-port=0").replace(
        "--pod-max-pids=-1", "--pod-max-pids=4096").replace("--container-log-max-size=50M", "--container-log-max-size=100Mi")
    found = plan(node, [NetChange("/etc/default/kubelet", AKS_FLAGS.encode(), after.encode())])
    assert json.loads(found.files["aks-kubelet-config.json"]) == {"podMaxPids": 4096, "containerLogMaxSizeMB": 100}
    assert "--kubelet-config" in found.files_usage
    [unsupported] = [n for n in found.notes if n.startswith("not expressible")]
    assert "readOnlyPort" in unsupported and "podPidsLimit" not in unsupported


def test_aks_with_only_settings_it_cannot_hold_says_so_and_writes_nothing(tmp_path):
    node = make(tmp_path / "node", "aks")
    after = AKS_FLAGS.replace("--event-qps=0", "--event-qps=5") + "KUBELET_EXTRA=\n"
    found = plan(node, [NetChange("/etc/default/kubelet", AKS_FLAGS.encode(), after.encode())])
    assert not found.files
    assert any("--event-qps" in n for n in found.notes)


def test_gke_gives_the_system_configs_read_only_port_field(tmp_path):
    node = make(tmp_path / "node", "gke")
    after = GKE_CONFIG.replace("readOnlyPort: 10255", "readOnlyPort: 0").replace("cgroupRoot: /", "cgroupRoot: /\neventRecordQPS: 5")
    found = plan(node, [NetChange("/home/kubernetes/kubelet-config.yaml", GKE_CONFIG.encode(), after.encode())])
    document = YAML(typ="safe", pure=True).load(found.files["gke-system-config.yaml"])
    assert document == {"kubeletConfig": {"insecureKubeletReadonlyPortEnabled": False}}
    assert any(n.startswith("not expressible") and "eventRecordQPS" in n for n in found.notes)


def test_a_change_of_no_kubelet_setting_is_named_not_persisted(tmp_path):
    node = make(tmp_path / "node", "gke")
    found = plan(node, [NetChange("/etc/srv/kubernetes/pki/ca-certificates.crt", b"CA\n", b"CB\n")])
    assert not found.files and any("ca-certificates.crt: no kubelet setting" in n for n in found.notes)


def test_persist_prints_a_snippet_meant_for_a_person(capsys):
    report = PersistReport(files_dir="/var/lib/cisfix/persist/files", files=["nodeconfig.yaml"], files_usage="paste it",
                           shown={"nodeconfig.yaml": "apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\n"},
                           notes=["a note"])
    print_report(report, quiet=False, show_diff=False)
    out = capsys.readouterr().out
    assert "--- nodeconfig.yaml\napiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\n" in out
    assert report.as_dict()["shown"] == report.shown
