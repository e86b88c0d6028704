"""Backups, the journal, history and rollback: what a committed edit leaves behind, and the way back."""
from __future__ import annotations

import json
import os
import stat

from conftest import APISERVER, KUBELET_CONFIG

EDIT = ("edit", APISERVER, "--flag", "profiling=false")


def edit(cisfix, *args):
    result = cisfix(*(args or EDIT), "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_journal_announces_each_step_of_a_committed_edit(node, cisfix):
    original = node.read(APISERVER)
    out = edit(cisfix)
    records = node.journal_records()
    assert [r["type"] for r in records] == ["begin", "backup", "applied", "commit"]
    assert all(r["v"] == 2 and r["txid"] == out["txid"] for r in records)
    (entry,) = records[0]["files"]
    import hashlib

    assert entry["path"] == APISERVER
    assert entry["before"]["sha256"] == hashlib.sha256(original).hexdigest()
    assert entry["after"]["sha256"] == hashlib.sha256(node.read(APISERVER)).hexdigest()
    assert entry["before"]["mode"] == "0600" and entry["before"]["uid"] == os.getuid()
    assert records[2]["sha256"] == entry["after"]["sha256"]


def test_backup_is_private_and_outside_the_manifest_directory(node, cisfix):
    original = node.read(APISERVER)
    out = edit(cisfix)
    backup = node.state_dir / "backups" / out["txid"] / APISERVER.lstrip("/")
    assert backup.read_bytes() == original
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert stat.S_IMODE((node.state_dir / "backups" / out["txid"]).stat().st_mode) == 0o700
    assert sorted(os.listdir(node.path("/etc/kubernetes/manifests"))) == ["etcd.yaml", "kube-apiserver.yaml", "kube-controller-manager.yaml", "kube-scheduler.yaml"]


def test_mode_owner_and_xattrs_are_preserved(node, cisfix):
    path = node.path(APISERVER)
    os.chown(path, 1234, 5678)
    os.chmod(path, 0o640)
    try:
        os.setxattr(path, "user.cisfix-test", b"kept")
        has_xattr = True
    except OSError:
        has_xattr = False
    edit(cisfix)
    st = path.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 1234, 5678)
    if has_xattr:
        assert os.getxattr(path, "user.cisfix-test") == b"kept"


def test_symlinked_manifest_is_edited_through_the_link(node, cisfix):
    real = node.write("/opt/manifests/kube-apiserver.yaml", node.read(APISERVER))
    link = node.path(APISERVER)
    link.unlink()
    link.symlink_to("/opt/manifests/kube-apiserver.yaml")  # absolute: resolved inside the node root
    out = edit(cisfix)
    assert link.is_symlink() and os.readlink(link) == "/opt/manifests/kube-apiserver.yaml"
    assert b"--profiling=false" in real.read_bytes()
    assert node.journal_records()[0]["files"][0]["path"] == "/opt/manifests/kube-apiserver.yaml"
    assert out["status"] == "FIXED"


def test_rollback_last_restores_bytes_and_mode(node, cisfix):
    original = node.read(APISERVER)
    edit(cisfix)
    result = cisfix("rollback", "--last")
    assert result.returncode == 0, result.stderr
    assert node.read(APISERVER) == original
    assert stat.S_IMODE(node.path(APISERVER).stat().st_mode) == 0o600
    types = [r["type"] for r in node.journal_records()]
    assert types[-3:] == ["rollback-begin", "restored", "rolled-back"]
    log = node.path("/var/log/cisfix.log").read_text()
    assert "ROLLBACK" in log and f"file={APISERVER}" in log


def test_rollback_by_txid_of_an_older_transaction(node, cisfix):
    original_kubelet = node.read(KUBELET_CONFIG)
    first = edit(cisfix, "edit", KUBELET_CONFIG, "--set", "readOnlyPort=0")
    edit(cisfix)
    assert cisfix("rollback", first["txid"]).returncode == 0
    assert node.read(KUBELET_CONFIG) == original_kubelet
    assert b"--profiling=false" in node.read(APISERVER)


def test_rollback_refuses_a_file_changed_since_and_names_the_backup(node, cisfix):
    out = edit(cisfix)
    changed = node.read(APISERVER) + b"# edited by hand\n"
    node.write(APISERVER, changed)
    result = cisfix("rollback", out["txid"])
    assert result.returncode == 4
    assert "changed since cisfix wrote it" in result.stderr
    assert out["backup_path"] in result.stderr
    assert node.read(APISERVER) == changed
    assert node.journal_records()[-1]["type"] == "rollback-failed"


def test_rollback_twice_is_an_input_error(node, cisfix):
    out = edit(cisfix)
    assert cisfix("rollback", out["txid"]).returncode == 0
    again = cisfix("rollback", out["txid"])
    assert again.returncode == 2 and "nothing to roll back" in again.stderr


def test_rollback_of_an_unknown_transaction(node, cisfix):
    result = cisfix("rollback", "nope")
    assert result.returncode == 2 and "no transaction nope" in result.stderr


def test_history_lists_transactions_with_backups_and_hashes(node, cisfix):
    out = edit(cisfix)
    (tx,) = json.loads(cisfix("history", "--format", "json").stdout)
    assert tx["txid"] == out["txid"] and tx["state"] == "committed"
    (f,) = tx["files"]
    assert f["path"] == APISERVER and f["backup"].startswith(out["backup_path"])
    assert f["sha256_before"] != f["sha256_after"]
    text = cisfix("history").stdout
    assert out["txid"] in text and "committed" in text


def test_torn_last_journal_line_is_tolerated_and_cut_off(node, cisfix):
    edit(cisfix)
    journal = node.state_dir / "journal.jsonl"
    with open(journal, "ab") as f:
        f.write(b'{"v": 1, "type": "beg')
    assert cisfix("history").returncode == 0
    edit(cisfix, "edit", APISERVER, "--flag", "profiling=true")
    lines = journal.read_text().splitlines()
    assert all(json.loads(line) for line in lines)


def test_damaged_journal_is_reported_not_guessed(node, cisfix):
    edit(cisfix)
    journal = node.state_dir / "journal.jsonl"
    journal.write_bytes(b"garbage\n" + journal.read_bytes())
    result = cisfix("edit", APISERVER, "--flag", "profiling=true")
    # A journal that cannot be believed needs a person, like a recovery conflict.
    assert result.returncode == 4 and f"{journal}:1" in result.stderr


def test_recovery_conflict_touches_nothing_and_exits_4(node, cisfix):
    killed = cisfix(*EDIT, env={"CISFIX_FAULT": "before-commit"})
    assert killed.returncode == -9
    meddled = node.read(APISERVER) + b"# someone else\n"
    node.write(APISERVER, meddled)
    result = cisfix("recover")
    assert result.returncode == 4
    assert "CONFLICT" in result.stderr and "backups" in result.stderr
    assert node.read(APISERVER) == meddled


def test_plans_create_files_and_change_modes_in_one_transaction_and_roll_back(node, cisfix):
    from cisfix.engine import run_changes
    from cisfix.node import Node
    from cisfix.plan import SetFlag
    from cisfix.types import CreateFile, EditFile, SetMode

    kubelet = node.path(KUBELET_CONFIG)
    os.chmod(kubelet, 0o644)
    outcome = run_changes(Node(str(node.root)), [
        CreateFile("/etc/kubernetes/audit-policy.yaml", b"apiVersion: audit.k8s.io/v1\nkind: Policy\n", 0o600),
        EditFile(APISERVER, (SetFlag("audit-policy-file", "/etc/kubernetes/audit-policy.yaml"),)),
        SetMode(KUBELET_CONFIG, 0o600, "root:root"),
    ])
    assert outcome.status == "FIXED", outcome.reason
    policy = node.path("/etc/kubernetes/audit-policy.yaml")
    assert stat.S_IMODE(policy.stat().st_mode) == 0o600
    assert stat.S_IMODE(kubelet.stat().st_mode) == 0o600
    (begin,) = [r for r in node.journal_records() if r["type"] == "begin"]
    assert [f["before"] is None for f in begin["files"]] == [True, False, False]

    assert cisfix("rollback", "--last").returncode == 0
    assert not policy.exists()
    assert stat.S_IMODE(kubelet.stat().st_mode) == 0o644
    assert b"audit-policy-file" not in node.read(APISERVER)


def test_set_mode_only_removes_bits(node):
    from cisfix.engine import run_changes
    from cisfix.node import Node
    from cisfix.types import SetMode

    kubelet = node.path(KUBELET_CONFIG)
    os.chmod(kubelet, 0o640)
    assert run_changes(Node(str(node.root)), [SetMode(KUBELET_CONFIG, 0o644)]).status == "ALREADY_COMPLIANT"
    os.chmod(kubelet, 0o666)
    assert run_changes(Node(str(node.root)), [SetMode(KUBELET_CONFIG, 0o644)]).status == "FIXED"
    assert stat.S_IMODE(kubelet.stat().st_mode) == 0o644
