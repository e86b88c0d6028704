"""Fixes that survive `kubeadm upgrade`: on running lab nodes, `fix --persist` puts the fixes into the
cluster's kubeadm-config and kubelet-config ConfigMaps, and `lab upgrade` (which regenerates the node
from them as `kubeadm upgrade apply` does) keeps every verdict; without persisting, the upgrade loses the
fixes and `fix` has to make them again."""
from __future__ import annotations

import json
import subprocess
import sys

from ruamel.yaml import YAML

from test_lab_upgrade import api, cluster_configuration, lab_upgrade

GATE = ("--timeout", "60", "--stability-window", "1")


def cisfix(lab, *args):
    return subprocess.run([sys.executable, "-m", "cisfix", "--root", str(lab.root), *args],
                          capture_output=True, text=True, timeout=600)


def fix(lab, *args):
    result = cisfix(lab, "fix", "--level", "1", "--format", "json", *GATE, *args)
    assert result.returncode in (0, 1), result.stdout[-2000:] + result.stderr[-2000:]
    return json.loads(result.stdout)


def persist(lab, *args):
    result = cisfix(lab, "persist", "--format", "json", *args)
    return result.returncode, json.loads(result.stdout) if result.stdout.startswith("{") else result


def audit(lab):
    report = json.loads(cisfix(lab, "audit", "--format", "json").stdout)
    benchmark = json.loads(cisfix(lab, "benchmarks", "--format", "json").stdout)["node"]["benchmark"]
    return benchmark, {r["id"]: r["status"] for r in report["results"]}


def kubelet_configmap(lab) -> dict:
    return YAML(typ="safe").load(api(lab, "GET", "kubelet-config")[1]["data"]["kubelet"])


def extra_args(section: dict) -> dict:
    return {a["name"]: a["value"] for a in section.get("extraArgs") or []}


def test_fix_persist_then_upgrade_keeps_every_verdict_and_persisting_again_changes_nothing(make_lab):
    lab = make_lab(version="1.31")
    (lab.root / "etc/hostname").write_text("lab-node\n")  # the name of its Node: its verdict is its own
    report = fix(lab, "--persist")
    fixed = {r["id"] for r in report["results"] if r["fix"] == "FIXED"}
    assert {"1.2.15", "1.2.16", "1.3.2", "1.4.1", "4.2.12"} <= fixed
    assert {o["name"]: o["status"] for o in report["persist"]["objects"]} == {
        "kube-system/kubeadm-config": "updated", "kube-system/kubelet-config": "updated",
        "kube-system/cisfix-control-plane-files": "created"}  # the files it created, for other control planes
    assert report["persist"]["control_plane"]["nodes"] == ["lab-node"] and report["persist"]["exit_code"] == 0
    config = cluster_configuration(lab)  # v1beta4 on 1.31: extraArgs is a list of name/value
    assert extra_args(config["apiServer"])["profiling"] == "false"
    assert extra_args(config["scheduler"]) == {"profiling": "false"}
    assert extra_args(config["controllerManager"]) == {"profiling": "false"}
    audit_policy = extra_args(config["apiServer"])["audit-policy-file"]
    assert any(v["hostPath"] == audit_policy for v in config["apiServer"]["extraVolumes"])
    assert kubelet_configmap(lab)["tlsCipherSuites"]
    benchmark, before = audit(lab)
    assert benchmark == "cis-1.11" and all(before[i] == "PASS" for i in fixed)

    versions = {name: api(lab, "GET", name)[1]["metadata"]["resourceVersion"]
                for name in ("kubeadm-config", "kubelet-config")}
    code, again = persist(lab)
    assert code == 0 and {o["status"] for o in again["objects"]} == {"unchanged"}
    assert not any(o["changes"] or o["conflicts"] for o in again["objects"])
    assert {name: api(lab, "GET", name)[1]["metadata"]["resourceVersion"] for name in versions} == versions

    result = lab_upgrade(lab, "--to", "1.32")
    assert result.returncode == 0, result.stderr
    benchmark, after = audit(lab)
    assert benchmark == "cis-1.12"
    assert {i: after[i] for i in after} == {i: before[i] for i in after}  # cis-1.12 only drops checks
    # Nothing persisted needs fixing again (1.32 can fix more than 1.31: 1.2.1 through an
    # AuthenticationConfiguration).
    refixed = {r["id"] for r in fix(lab)["results"] if r["fix"] == "FIXED"}
    assert refixed & fixed == set()


def test_without_persist_an_upgrade_loses_the_fixes_and_fix_makes_them_again(make_lab):
    lab = make_lab(version="1.31")
    fixed = {r["id"] for r in fix(lab)["results"] if r["fix"] == "FIXED"}
    _, before = audit(lab)

    assert lab_upgrade(lab, "--to", "1.32").returncode == 0
    benchmark, after = audit(lab)
    assert benchmark == "cis-1.12"
    lost = {i for i in fixed if after.get(i) == "FAIL"}
    assert {"1.2.15", "1.2.16", "1.3.2", "1.4.1", "4.2.12"} <= lost
    code, late = persist(lab)  # the manifests changed since the fixes: nothing of them is left to persist
    assert code == 0 and late["objects"] == []
    assert any("changed since cisfix last fixed it" in note for note in late["notes"])

    refixed = {r["id"] for r in fix(lab)["results"] if r["fix"] == "FIXED"}
    assert lost <= refixed  # the files the first fix created are put back in use, not refused as foreign
    _, again = audit(lab)
    assert {i for i in again if again[i] != before[i]} == {"1.2.1"} and again["1.2.1"] == "PASS"  # 1.32 can fix it
