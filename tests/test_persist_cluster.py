"""Persisting on a cluster of several control-plane nodes: the files fixes created that the persisted
configuration refers to must be on every control-plane node before its `kubeadm upgrade node`.

The running lab node (`lab-node`) makes the fixes and publishes the list in
kube-system/cisfix-control-plane-files with a bundle of the files; a second control-plane node
(`node-b`: registered in the cluster store, its own node tree using the first node's API server, as
every control plane of a cluster does) checks itself against the list and installs the bundle."""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from cisfix.lab.configmaps import STORE, ConfigMapStore
from cisfix.lab.kubeadm import CONTROL_PLANE_LABEL

from test_lab_upgrade import api

GATE = ("--timeout", "60", "--stability-window", "1")
CONFIGMAP = "cisfix-control-plane-files"
AUDIT_POLICY = "etc/kubernetes/audit-policy.yaml"


def cisfix(root, *args):
    return subprocess.run([sys.executable, "-m", "cisfix", "--root", str(root), *args],
                          capture_output=True, text=True, timeout=600)


def as_json(result):
    assert result.stdout.startswith("{"), result.stdout[-2000:] + result.stderr[-2000:]
    return json.loads(result.stdout)


def name_node(root: Path, name: str) -> None:
    (root / "etc/hostname").write_text(f"{name}\n")


def second_node(lab, make_lab) -> Path:
    """node-b: a control-plane node's tree whose admin credentials reach the lab's API server."""
    other = make_lab(name="node-b", start=False)
    for path in ("etc/kubernetes/admin.conf", "etc/kubernetes/pki/ca.crt"):
        shutil.copy2(lab.root / path, other.root / path)
    name_node(other.root, "node-b")
    ConfigMapStore(lab.root / STORE.lstrip("/")).add_node("node-b", {CONTROL_PLANE_LABEL: ""})
    return other.root


def published(lab) -> dict:
    code, answer = api(lab, "GET", CONFIGMAP)
    assert code == 200, answer
    return answer["data"]


def fixed_and_published(lab):
    name_node(lab.root, "lab-node")
    result = cisfix(lab.root, "fix", "--level", "1", "--format", "json", *GATE)
    assert result.returncode in (0, 1), result.stdout[-2000:] + result.stderr[-2000:]
    result = cisfix(lab.root, "persist", "--format", "json")
    return result.returncode, as_json(result)


def test_the_publishing_node_waits_until_every_other_control_plane_holds_the_files(lab, make_lab):
    node_b = second_node(lab, make_lab)
    code, report = fixed_and_published(lab)

    control_plane = report["control_plane"]
    assert code == 7 and control_plane["waiting"] == ["node-b"] and control_plane["nodes"] == ["lab-node", "node-b"]
    listed = {f["path"]: f for f in control_plane["files"]}
    assert {"/etc/kubernetes/audit-policy.yaml", "/etc/kubernetes/admission-config.yaml",
            "/etc/kubernetes/event-rate-limit.yaml"} <= set(listed)
    data = published(lab)
    assert json.loads(data["files"]) == sorted(listed.values(), key=lambda f: f["path"])
    assert json.loads(data["node.lab-node"])["ready"] is True
    for path in listed:  # paths and checksums only: never a file's content (an encryption key)
        content = (lab.root / path.lstrip("/")).read_text()
        assert content.strip().splitlines()[-1] not in "\n".join(data.values())

    bundle = Path(control_plane["bundle"])
    assert bundle == lab.root / "var/lib/cisfix/persist/control-plane"
    text = cisfix(lab.root, "persist")
    assert text.returncode == 7 and f"bundle for the other control-plane nodes: {bundle}" in text.stdout
    assert "not persisted yet: node-b not confirmed to hold the files" in text.stdout
    for folder, _, files in os.walk(bundle):
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
        for name in files:
            assert stat.S_IMODE(os.stat(Path(folder, name)).st_mode) == 0o600
    assert json.loads((bundle / "index.json").read_text()) == json.loads(data["files"])
    assert (bundle / AUDIT_POLICY).read_bytes() == (lab.root / AUDIT_POLICY).read_bytes()

    # node-b lacks every file: --check names each, exits 1, records it, and changes nothing on the node.
    before = sorted(str(p) for p in node_b.rglob("*"))
    result = cisfix(node_b, "persist", "--check")
    assert result.returncode == 1
    assert f"missing /{AUDIT_POLICY}" in result.stdout.splitlines()
    assert "node-b: not ready for `kubeadm upgrade node`" in result.stdout
    assert sorted(str(p) for p in node_b.rglob("*")) == before
    assert json.loads(published(lab)["node.node-b"])["ready"] is False

    # A file of node-b with other content: --check says different; --install refuses it, installs nothing.
    (node_b / AUDIT_POLICY).write_text("# someone else's policy\n")
    os.chmod(node_b / AUDIT_POLICY, 0o600)
    check = as_json(cisfix(node_b, "persist", "--check", "--format", "json"))
    assert check["ready"] is False and any(p.startswith(f"different /{AUDIT_POLICY}: sha256") for p in check["problems"])
    result = cisfix(node_b, "persist", "--install", str(bundle))
    assert result.returncode == 2 and "exists with other content" in result.stderr
    assert not (node_b / "etc/kubernetes/admission-config.yaml").exists()

    (node_b / AUDIT_POLICY).unlink()
    admission = node_b / "etc/kubernetes/admission-config.yaml"  # there already, but readable by all
    admission.write_bytes((lab.root / "etc/kubernetes/admission-config.yaml").read_bytes())
    os.chmod(admission, 0o644)
    result = cisfix(node_b, "persist", "--install", str(bundle), "--format", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    installed = as_json(result)
    assert installed["present"] == ["/etc/kubernetes/admission-config.yaml"]
    assert sorted(installed["installed"] + installed["present"]) == sorted(listed)
    for path, entry in listed.items():
        target = node_b / path.lstrip("/")
        assert target.read_bytes() == (lab.root / path.lstrip("/")).read_bytes()
        assert f"{stat.S_IMODE(target.stat().st_mode):04o}" == entry["mode"] and target.stat().st_uid == 0
    journal = (node_b / "var/lib/cisfix/journal.jsonl").read_text()
    assert installed["outcome"]["txid"] in journal and "persist --install" in journal

    result = cisfix(node_b, "persist", "--check")
    assert result.returncode == 0 and "node-b: ready for `kubeadm upgrade node`" in result.stdout
    code, report = as_json_code(cisfix(lab.root, "persist", "--format", "json"))
    assert code == 0 and report["control_plane"]["waiting"] == []

    # The installed files are undone like any fix's: the rollback leaves node-b without them again.
    result = cisfix(node_b, "rollback", installed["outcome"]["txid"], *GATE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (node_b / AUDIT_POLICY).exists()


def as_json_code(result):
    return result.returncode, as_json(result)


def test_a_hostile_bundle_is_refused_and_nothing_is_written(lab, make_lab, tmp_path):
    node_b = second_node(lab, make_lab)
    _, report = fixed_and_published(lab)
    bundle = Path(report["control_plane"]["bundle"])

    def attempt(spoil) -> str:
        copy = tmp_path / "bundle"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(bundle, copy, symlinks=True)
        spoil(copy / AUDIT_POLICY)
        result = cisfix(node_b, "persist", "--install", str(copy))
        assert result.returncode == 2, result.stdout + result.stderr
        assert not any((node_b / f["path"].lstrip("/")).exists() for f in report["control_plane"]["files"])
        assert not (node_b / "var/lib/cisfix/journal.jsonl").exists()
        return result.stderr

    def other_content(path: Path) -> None:
        path.write_text(path.read_text().replace("level: None", "level: Metadata"))

    def symlink(path: Path) -> None:
        path.unlink()
        path.symlink_to(lab.root / AUDIT_POLICY)

    def not_root_owned(path: Path) -> None:
        os.chown(path, 1000, 1000)

    assert "is not the published" in attempt(other_content)
    assert "symbolic link" in attempt(symlink)
    assert "owned by uid 1000, not root" in attempt(not_root_owned)
    assert cisfix(node_b, "persist", "--check").returncode == 1


# ---- the encryption key on several control planes (the CIS plugin's 1.2.27) ----

ENCRYPTION = "/etc/kubernetes/encryption-config.yaml"
ETCD = "/etc/kubernetes/manifests/etcd.yaml"
API_SERVER = "/etc/kubernetes/manifests/kube-apiserver.yaml"


def ha_node(path: Path):
    """A static control-plane node whose etcd has a second member: one of several control planes."""
    from cisfix.testing import build_node

    node = build_node(path)
    text = node.read(ETCD).decode().replace("--initial-cluster=master=https://10.0.0.10:2380",
                                            "--initial-cluster=master=https://10.0.0.10:2380,cp-2=https://10.0.0.11:2380")
    node.write(ETCD, text.encode(), 0o600)
    return node


def fix_encryption(node, first_control_plane: bool = False):
    from dataclasses import replace

    from cisfix.audit import select
    from cisfix.fix import apply_fix, plan_fix
    from cisfix.node import Node
    from cisfix.plugins import Plugins

    plugins = Plugins(Node(str(node.root)))
    plugins.info = replace(plugins.info, first_control_plane=first_control_plane)
    plan = plan_fix(plugins, select(plugins, ["1.2.27"]))
    return plan, apply_fix(plugins, plan)


def test_with_several_control_planes_only_the_chosen_node_makes_the_key_and_the_others_adopt_it(tmp_path):
    first = ha_node(tmp_path / "first")
    plan, _ = fix_encryption(first)  # by default: no node makes a key of its own
    assert "--first-control-plane" in plan.skipped[0].audit.reason
    assert not first.path(ENCRYPTION).exists() and b"encryption-provider-config" not in first.read(API_SERVER)

    _, outcome = fix_encryption(first, first_control_plane=True)
    assert outcome.status == "FIXED" and b"secretbox:" in first.read(ENCRYPTION)
    assert f"--encryption-provider-config={ENCRYPTION}".encode() in first.read(API_SERVER)

    # Another control plane with the cluster's file (as `persist --install` leaves it): adopted, nothing made.
    second = ha_node(tmp_path / "second")
    second.write(ENCRYPTION, first.read(ENCRYPTION), 0o600)
    _, outcome = fix_encryption(second)
    assert outcome.status == "FIXED" and second.read(ENCRYPTION) == first.read(ENCRYPTION)
    assert f"--encryption-provider-config={ENCRYPTION}".encode() in second.read(API_SERVER)

    # Not root's, or not recognisably cisfix's: never taken as the cluster's key.
    third = ha_node(tmp_path / "third")
    third.write(ENCRYPTION, first.read(ENCRYPTION), 0o600)
    os.chown(third.path(ENCRYPTION), 1000, 1000)
    plan, _ = fix_encryption(third)
    assert "owned by uid 1000, not root" in plan.skipped[0].audit.reason
    os.chown(third.path(ENCRYPTION), 0, 0)
    third.write(ENCRYPTION, first.read(ENCRYPTION).replace(b"secretbox:", b"identity: {}\n      - secretbox:"), 0o600)
    plan, _ = fix_encryption(third)
    assert "review it before using it" in plan.skipped[0].audit.reason


# ---- a removed default flag: a JSON patch of the exact item, extraArgs still in force ----

def upgrade(lab, patches: Path):
    return subprocess.run([sys.executable, "-m", "cisfix", "lab", "upgrade", str(lab.root), "--to", "1.32",
                           "--patches", str(patches), "--wait", "0"], capture_output=True, text=True, timeout=300)


def set_extra_args(lab, **args: str) -> None:
    from ruamel.yaml import YAML

    def change(data):
        config = YAML(typ="safe").load(data["ClusterConfiguration"])
        config["apiServer"]["extraArgs"] = [{"name": k, "value": v} for k, v in sorted(args.items())]
        return {**data, "ClusterConfiguration": json.dumps(config)}

    ConfigMapStore(lab.root / STORE.lstrip("/")).update("kubeadm-config", change)


def test_a_removed_flag_stays_removed_by_a_json_patch_while_extra_args_changes_take_effect(make_lab):
    lab = make_lab(version="1.31", start=False)
    result = cisfix(lab.root, "edit", "/etc/kubernetes/manifests/kube-apiserver.yaml", "--no-health-gate",
                    "--unflag", "enable-bootstrap-token-auth", "--flag", "profiling=false")
    assert result.returncode == 0, result.stderr
    pinned = lab.root / "var/lib/cisfix/persist/files/kube-apiserver+strategic.yaml"  # an earlier cisfix's
    pinned.parent.mkdir(parents=True)
    pinned.write_text("spec:\n  containers:\n  - name: kube-apiserver\n    command: [kube-apiserver]\n")
    report = as_json(cisfix(lab.root, "persist", "--format", "json"))  # the lab is not running: merged by hand
    patches = Path(report["files_dir"])
    assert report["files"] == ["kube-apiserver+json.yaml"]  # no strategic patch pins the command any more
    assert not pinned.exists() and any(note.startswith(f"{pinned}: removed") for note in report["notes"])
    assert "kubeadm upgrade node" in report["files_usage"] and "every control-plane node" in report["files_usage"]
    from ruamel.yaml import YAML

    operations = YAML(typ="safe").load((patches / "kube-apiserver+json.yaml").read_text())
    assert [op["op"] for op in operations] == ["test", "remove"]
    assert operations[0]["value"] == "--enable-bootstrap-token-auth=true"
    assert operations[0]["path"] == operations[1]["path"]

    # Someone changes extraArgs later (the persisted profiling, and a flag of their own): both take effect.
    set_extra_args(lab, profiling="false", **{"event-ttl": "2h"})
    result = upgrade(lab, patches)
    assert result.returncode == 0, result.stderr
    manifest = lab.manifest("kube-apiserver").read_text()
    assert "kube-apiserver:v1.32.0" in manifest and "--enable-bootstrap-token-auth" not in manifest
    assert "--profiling=false" in manifest and "--event-ttl=2h" in manifest


def test_a_json_patch_whose_item_moved_stops_the_upgrade_before_it_changes_anything(make_lab):
    lab = make_lab(version="1.31", start=False)
    assert cisfix(lab.root, "edit", "/etc/kubernetes/manifests/kube-apiserver.yaml", "--no-health-gate",
                  "--unflag", "enable-bootstrap-token-auth").returncode == 0
    patches = Path(as_json(cisfix(lab.root, "persist", "--format", "json"))["files_dir"])
    before = lab.manifest("kube-apiserver").read_text()
    set_extra_args(lab, **{"audit-log-maxage": "30"})  # sorts before it: the removed item is one further on
    result = upgrade(lab, patches)
    assert result.returncode != 0 and "test failed" in result.stderr
    assert lab.manifest("kube-apiserver").read_text() == before


# ---- package-owned files ----

def test_the_package_upgrade_resetting_10_kubeadm_conf_is_an_upgrade_drift(lab):
    dropin = lab.root / "usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf"
    result = cisfix(lab.root, "fix", "--level", "1", "--check", "4.1.1", "--format", "json", *GATE)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert stat.S_IMODE(dropin.stat().st_mode) == 0o600
    report = as_json(cisfix(lab.root, "persist", "--format", "json"))
    assert report["package_owned"] == ["/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf"]
    assert any("re-applied by drift after the package upgrade" in note for note in report["notes"])

    os.chmod(dropin, 0o644)  # what the package's `install -m 644` does
    drift = as_json(cisfix(lab.root, "drift", "--format", "json", *GATE))
    [event] = [d for d in drift["corrections"] if d["id"] == "4.1.1"]
    assert event["class"] == "upgrade" and event["file"] == "/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf"
    assert stat.S_IMODE(dropin.stat().st_mode) == 0o600


# ---- the published list ----

def test_two_nodes_with_two_different_keys_are_a_conflict_and_a_verdict_names_its_list():
    import pytest

    from cisfix.controlplane import FileEntry, checksum, confirmed, decode, encode, merge, verdict
    from cisfix.errors import InputError

    key_a, key_b = FileEntry(ENCRYPTION, "a" * 64, 0o600), FileEntry(ENCRYPTION, "b" * 64, 0o600)
    policy = FileEntry("/etc/kubernetes/audit-policy.yaml", "c" * 64, 0o600)
    merged, changes, conflicts = merge([key_a], [key_b, policy], force=False)
    assert merged == [policy, key_a] and len(changes) == 1 and "kept (--force replaces it)" in conflicts[0]
    assert merge([key_a], [key_b], force=True)[0] == [key_b]

    text = encode(merged)
    assert decode(text, "cm") == merged and encode(reversed(merged)) == text  # one text, one checksum
    data = {"node.cp-2": verdict(checksum(text), [])}
    assert confirmed(data, "cp-2", checksum(text))
    assert not confirmed(data, "cp-2", checksum(encode([key_a])))  # a verdict on another list counts for nothing
    assert not confirmed(data, "cp-3", checksum(text))
    for bad in ('[{"path": "/etc/../shadow", "sha256": "' + "a" * 64 + '", "mode": "0600"}]',
                '[{"path": "etc/x", "sha256": "' + "a" * 64 + '", "mode": "0600"}]',
                '[{"path": "/etc/x", "sha256": "xyz", "mode": "0600"}]', '{"files": []}', "not json",
                encode([key_a]).replace("]", ", " + encode([key_a])[1:-2] + "]")):
        with pytest.raises(InputError, match="^cm: "):
            decode(bad, "cm")


def test_the_bundle_is_private_and_holds_only_the_files_of_its_last_list(tmp_path):
    from cisfix.controlplane import FileEntry, INDEX, sha256, write_bundle

    def files(**contents: bytes):
        return {f"/etc/kubernetes/{name}.yaml": (FileEntry(f"/etc/kubernetes/{name}.yaml", sha256(data), 0o600), data)
                for name, data in contents.items()}

    bundle = tmp_path / "state/persist/control-plane"
    write_bundle(bundle, files(key=b"old key", policy=b"policy"))
    write_bundle(bundle, files(policy=b"policy"))  # the key replaced elsewhere, say: no copy stays behind
    assert sorted(str(p.relative_to(bundle)) for p in bundle.rglob("*") if p.is_file()) == [
        "etc/kubernetes/policy.yaml", INDEX]
    assert {stat.S_IMODE(p.stat().st_mode) for p in bundle.rglob("*")} | {stat.S_IMODE(bundle.stat().st_mode)} == {
        0o700, 0o600}


def test_a_single_control_plane_under_another_name_is_taken_to_be_this_node(lab):
    """No /etc/hostname (or a Node named by its FQDN): the cluster's only control-plane Node is this one."""
    result = cisfix(lab.root, "fix", "--check", "1.2.16", "--format", "json", *GATE)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    code, report = as_json_code(cisfix(lab.root, "persist", "--format", "json"))
    control_plane = report["control_plane"]
    assert code == 0 and control_plane["node"] is None and control_plane["waiting"] == []
    assert control_plane["note"] == "the only control-plane Node, lab-node, is taken to be this node"

    ConfigMapStore(lab.root / STORE.lstrip("/")).add_node("node-b", {CONTROL_PLANE_LABEL: ""})
    code, report = as_json_code(cisfix(lab.root, "persist", "--format", "json"))
    assert code == 7 and report["control_plane"]["waiting"] == ["lab-node", "node-b"]
    assert "no control-plane Node is named (this node has no name)" in report["control_plane"]["note"]
