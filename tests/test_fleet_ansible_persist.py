"""The fleet playbook's persist mode on a lab cluster of two control-plane nodes (cp1 = lab-node, cp2 =
lab-node-2): cp1's fix made the cluster's encryption key (`--first-control-plane`); persist mode publishes
cp1's files, carries their bundle to cp2, installs and checks it there, and ends with cp1's `persist`
confirming every control-plane node holds them; no copy of the bundle is left anywhere, also when a node
refuses the bundle and the line stops there."""
from __future__ import annotations

import hashlib
import json
import re
import stat
from pathlib import Path

from fleet_fixtures import Fleet, output, recap, task_outcomes
from test_persist_cluster import cisfix, name_node

GATE = ("--timeout", "60", "--stability-window", "2")
ENCRYPTION = "1.2.27"  # the encryption configuration: a file every control-plane node must hold
BUNDLE = "var/lib/cisfix/persist/control-plane"
INSTALL = "cisfix : cisfix | install the bundle's files this node lacks"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_persist_mode_carries_the_first_nodes_files_to_the_other_control_plane_node(make_cluster, pyz, shiv_root,
                                                                                      tmp_path):
    first, second = make_cluster(2)
    for node, name in ((first, "lab-node"), (second, "lab-node-2")):  # the names their Nodes have
        name_node(node.root, name)
    fixed = cisfix(first.root, "fix", "--check", ENCRYPTION, "--first-control-plane", *GATE)
    assert fixed.returncode == 0, fixed.stdout[-2000:] + fixed.stderr[-2000:]
    key_file = first.root / "etc/kubernetes/encryption-config.yaml"
    secret = re.search(rb"secret: *(\S+)", key_file.read_bytes()).group(1)

    work = tmp_path / "controller"
    (work / "tmp").mkdir(parents=True)
    fleet = Fleet({"cp1": first, "cp2": second}, work, pyz, shiv_root, groups={"control_plane": ["cp1", "cp2"]})
    fleet.all_vars = {"cisfix_args": f"--check {ENCRYPTION}"}
    fleet.env = {"TMPDIR": str(work / "tmp")}  # the controller's private copy goes there: searched below
    installed = second.root / "etc/kubernetes/encryption-config.yaml"
    allowed = {key_file, installed}

    def copies() -> set:
        """Files holding the key other than cp1's own, its bundle and cp2's installed file: on the
        controller, in Ansible's temporary files, on cp2."""
        return {path for path in tmp_path.rglob("*") if path.is_file() and not path.is_symlink()
                and path not in allowed and first.root / BUNDLE not in path.parents and secret in path.read_bytes()}

    # cp2 holds another key where the cluster's goes: the install refuses it, the line stops there, and
    # the bundle's copies are removed all the same.
    installed.write_text("# another key\n")
    installed.chmod(0o600)
    result = fleet.play("-e", "cisfix_mode=persist")
    assert result.returncode != 0
    assert "cisfix persist --install failed on cp2: exit 2: " in result.stdout, output(result)
    assert "exists with other content" in result.stdout, output(result)
    assert "PLAY [cisfix | every control-plane node holds the files]" not in result.stdout
    assert copies() == set() and installed.read_text() == "# another key\n"
    installed.unlink()

    result = fleet.play("-e", "cisfix_mode=persist")
    assert result.returncode == 0, output(result)
    assert task_outcomes(result, INSTALL) == {"cp2": "changed"}, output(result)

    published = json.loads((first.root / BUNDLE / "index.json").read_text())
    assert "/etc/kubernetes/encryption-config.yaml" in {f["path"] for f in published}
    for entry in published:
        mine, theirs = first.root / entry["path"].lstrip("/"), second.root / entry["path"].lstrip("/")
        assert sha256(theirs) == sha256(mine) == entry["sha256"], entry
        assert stat.S_IMODE(theirs.stat().st_mode) == int(entry["mode"], 8) and theirs.stat().st_uid == 0, entry
    check = cisfix(second.root, "persist", "--check")
    assert check.returncode == 0 and "lab-node-2: ready for `kubeadm upgrade node`" in check.stdout, check.stdout
    assert cisfix(first.root, "persist").returncode == 0

    assert copies() == set()
    assert not any(p.name.startswith("persist-bundle.") for p in (work / "bin-cp2").iterdir())

    again = fleet.play("-e", "cisfix_mode=persist")
    assert again.returncode == 0, output(again)
    assert {host: r["changed"] for host, r in recap(again).items()} == {"cp1": 0, "cp2": 0}, output(again)
    assert task_outcomes(again, INSTALL) == {"cp2": "ok"}


def persist_filters():
    import importlib.util

    from fleet_fixtures import REPO

    spec = importlib.util.spec_from_file_location("cisfix_fleet", REPO / "deploy/ansible/roles/cisfix/filter_plugins/cisfix_fleet.py")
    filters = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(filters)
    return filters


def persisted(rc: int, waiting=(), reason: str = "", status: str = "unchanged") -> dict:
    report = {"objects": [{"name": "kube-system/kubeadm-config", "status": status, "reason": ""}],
              "control_plane": {"waiting": list(waiting), "reason": reason, "bundle": "/b"}}
    return {"rc": rc, "stdout": json.dumps(report), "stderr": ""}


def test_only_other_nodes_not_yet_confirmed_is_an_exit_7_persist_mode_goes_on_from():
    filters = persist_filters()
    assert filters.cisfix_persist_waiting(persisted(7, waiting=["lab-node-2"]))
    unreachable = persisted(7, waiting=["lab-node-2"], reason="the control-plane nodes cannot be listed: refused")
    elsewhere = persisted(7, waiting=["lab-node-2"], status="elsewhere")
    for result in (unreachable, elsewhere, persisted(1, waiting=["lab-node-2"]), persisted(7)):
        assert not filters.cisfix_persist_waiting(result)
    assert filters.cisfix_persist_failure(unreachable, "cp1", "persist") == (
        "cisfix persist failed on cp1: exit 7: the control-plane nodes cannot be listed: refused")
    assert filters.cisfix_persist_failure(persisted(7, waiting=["lab-node-2"]), "cp1", "persist") == (
        "cisfix persist failed on cp1: exit 7: not confirmed to hold the files: lab-node-2")
    crash = {"rc": 2, "stdout": "", "stderr": "cisfix: /x: not in the bundle; nothing installed\n"}
    assert filters.cisfix_persist_failure(crash, "cp2", "persist --install") == (
        "cisfix persist --install failed on cp2: exit 2: cisfix: /x: not in the bundle; nothing installed")
    assert filters.cisfix_persist_changed(persisted(0, status="updated"))
    assert filters.cisfix_persist_changed(persisted(7, waiting=["lab-node-2"], status="would-update"))  # --check
    assert not filters.cisfix_persist_changed(persisted(0))
