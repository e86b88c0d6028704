"""The journal cannot be forged or torn, a full disk loses no record, and odd state files (a folder, an
immutable file, a missing backup) get one line and the documented exit code."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
import sys

import pytest

from cisfix.journal import seal
from conftest import APISERVER, KUBELET_CONFIG, run_cisfix

EDIT = ("edit", APISERVER, "--flag", "profiling=false")


def one_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def history(node):
    result = run_cisfix(node, "history", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def journal(node):
    return node.state_dir / "journal.jsonl"


def killed_before_commit(node):
    """An unfinished transaction: the manifest holds cisfix's new bytes, no commit."""
    assert run_cisfix(node, *EDIT, env={"CISFIX_FAULT": "before-commit"}).returncode == -9
    (tx,) = history(node)
    return tx


def rewrite(node, change):
    """Rewrite the journal's records through `change(records)`, sealed with valid checksums (as root
    could), so that only the content rules are left to catch the forgery."""
    records = [json.loads(line) for line in journal(node).read_text().splitlines()]
    journal(node).write_text("".join(json.dumps(seal(r), sort_keys=True) + "\n" for r in change(records)))


def test_an_altered_record_is_detected_and_nothing_is_restored(node):
    killed_before_commit(node)
    after = node.read(APISERVER)
    text = journal(node).read_text()
    journal(node).write_text(text.replace('"label": "edit', '"label": "EDIT', 1))
    result = run_cisfix(node, "recover")
    assert result.returncode == 4
    assert f"{journal(node)}:1: checksum mismatch" in one_line(result)
    assert node.read(APISERVER) == after


@pytest.mark.parametrize("field,value,words", [
    ("backup", "/tmp/planted", "not this transaction's backup"),
    ("backup", "backups/20261130T000000Z-000000/etc/kubernetes/manifests/kube-apiserver.yaml", "not this transaction's"),
    ("backup", "backups/../../../../tmp/x", "not this transaction's"),
    ("path", "/etc/kubernetes/../../etc/shadow", "not an absolute node path"),
    ("path", "etc/shadow", "not an absolute node path"),
])
def test_a_record_naming_anything_but_node_paths_and_its_own_backups_is_refused(node, field, value, words):
    killed_before_commit(node)
    after = node.read(APISERVER)

    def forge(records):
        records[0]["files"][0][field] = value
        return records

    rewrite(node, forge)
    result = run_cisfix(node, "recover")
    assert result.returncode == 4
    line = one_line(result)
    assert f"{journal(node)}:1" in line and words in line
    assert node.read(APISERVER) == after


@pytest.mark.parametrize("how", ["group-writable", "other owner", "symlink"])
def test_a_journal_that_is_not_roots_alone_is_not_read(node, tmp_path, how):
    if os.geteuid() != 0 and how == "other owner":
        pytest.skip("only root can give a file to another user")
    killed_before_commit(node)
    after = node.read(APISERVER)
    if how == "group-writable":
        os.chmod(journal(node), 0o660)
    elif how == "other owner":
        os.chown(journal(node), 65534, 65534)
    else:
        moved = tmp_path / "elsewhere.jsonl"
        os.rename(journal(node), moved)
        os.symlink(moved, journal(node))
    result = run_cisfix(node, "recover")
    assert result.returncode == 4
    assert str(journal(node)) in one_line(result)
    assert node.read(APISERVER) == after


def test_a_format_1_journal_is_read_and_continued(node):
    """Format 1 (an older cisfix): read as it is, continued in format 2, never format 1 after 2."""
    tx = killed_before_commit(node)
    records = [json.loads(line) for line in journal(node).read_text().splitlines()]
    old = [{**{k: v for k, v in r.items() if k != "check"}, "v": 1} for r in records]
    journal(node).write_text("".join(json.dumps(r) + "\n" for r in old))
    assert run_cisfix(node, "recover").returncode == 0
    assert history(node)[0]["state"] == "rolled-back" and history(node)[0]["txid"] == tx["txid"]
    versions = [json.loads(line)["v"] for line in journal(node).read_text().splitlines()]
    assert versions == [1] * len(old) + [2] * (len(versions) - len(old))
    # A format-1 failed rollback named its conflict's backup by the absolute path.
    absolute = str(node.state_dir / "backups" / tx["txid"]) + APISERVER
    failed = {"v": 1, "type": "rollback-failed", "time": 1.0, "txid": tx["txid"],
              "conflicts": [{"path": APISERVER, "reason": "changed since", "backup": absolute}]}
    lines = journal(node).read_text().splitlines(keepends=True)
    journal(node).write_text("".join(lines[:len(old)]) + json.dumps(failed) + "\n" + "".join(lines[len(old):]))
    assert run_cisfix(node, "history").returncode == 0
    with open(journal(node), "a") as f:
        f.write(json.dumps(old[0]) + "\n")
    result = run_cisfix(node, "history")
    assert result.returncode == 4 and "format 1" in one_line(result)


def test_a_short_write_fails_the_begin_and_leaves_no_trace(node):
    """A full disk mid-record: the record is cut back, the transaction never began, nothing changed."""
    assert run_cisfix(node, *EDIT).returncode == 0
    size = journal(node).stat().st_size
    before = node.snapshot()
    result = run_cisfix(node, "edit", APISERVER, "--flag", "audit-log-maxage=30",
                        env={"CISFIX_FAULT": "enospc@1"})
    assert result.returncode == 4, result.stderr
    line = one_line(result)
    assert str(journal(node)) in line and "No space left on device" in line and "not taken" in line
    assert "txid" not in result.stdout
    assert journal(node).stat().st_size == size
    assert node.snapshot() == before
    assert [tx["state"] for tx in history(node)] == ["committed"]


def test_the_journal_as_a_directory(node):
    journal(node).parent.mkdir(parents=True)
    journal(node).mkdir()
    before = node.snapshot()
    for args in (EDIT, ("recover",), ("history",), ("rollback", "--last")):
        result = run_cisfix(node, *args)
        assert result.returncode == 4, (args, result.stderr)
        assert f"{journal(node)}: is a directory" in one_line(result)
    assert node.snapshot() == before


def test_halt_as_a_directory(node):
    halt = node.state_dir / "HALT"
    halt.mkdir(parents=True)
    before = node.snapshot()
    for args in (EDIT, ("resume",)):
        result = run_cisfix(node, *args)
        assert result.returncode == 4, (args, result.stderr)
        assert f"{halt}: is a directory" in one_line(result)
    assert node.snapshot() == before and halt.is_dir()


def test_an_immutable_halt_is_reported_by_resume(node):
    halt = node.state_dir / "HALT"
    halt.parent.mkdir(parents=True)
    halt.write_text("cisfix HALT\nthe API server did not come back\n")
    os.chmod(halt, 0o600)
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(halt)]).returncode:
        pytest.skip("chattr +i is not supported here")
    try:
        result = run_cisfix(node, "resume")
        assert result.returncode == 4
        assert f"{halt}: cannot remove HALT" in one_line(result)
    finally:
        subprocess.run(["chattr", "-i", str(halt)], check=True)


def test_halt_that_cannot_be_written_still_halts_with_one_line(node):
    from cisfix.halt import Halted, write_halt
    from cisfix.node import Node

    (node.state_dir / "HALT").mkdir(parents=True)
    with pytest.raises(Halted, match="cannot write HALT .*the node needs a person: the gate failed") as caught:
        write_halt(Node(str(node.root)), "the gate failed", "20261130T000000Z-abcdef", [], ("true",))
    assert caught.value.exit_code == 4


def test_an_immutable_journal(node):
    assert run_cisfix(node, *EDIT).returncode == 0
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(journal(node))]).returncode:
        pytest.skip("chattr +i is not supported here")
    try:
        before = node.snapshot()
        result = run_cisfix(node, "edit", APISERVER, "--flag", "audit-log-maxage=30")
        assert result.returncode == 4
        line = one_line(result)
        assert str(journal(node)) in line and "cannot write the journal" in line
        assert node.snapshot() == before
        assert run_cisfix(node, "history").returncode == 0
    finally:
        subprocess.run(["chattr", "-i", str(journal(node))], check=True)


def test_a_read_only_journal_of_root_is_still_roots(node):
    assert run_cisfix(node, *EDIT).returncode == 0
    os.chmod(journal(node), 0o400)
    assert run_cisfix(node, "edit", APISERVER, "--flag", "audit-log-maxage=30").returncode == 0
    assert [tx["state"] for tx in history(node)] == ["committed", "committed"]


@pytest.mark.parametrize("damage", ["folder removed", "file damaged"])
def test_a_missing_or_damaged_backup_is_a_conflict_naming_it(node, damage):
    tx = killed_before_commit(node)
    after = node.read(APISERVER)
    folder = node.state_dir / "backups" / tx["txid"]
    if damage == "folder removed":
        shutil.rmtree(folder)
    else:
        (folder / APISERVER.lstrip("/")).write_bytes(b"damaged\n")
    result = run_cisfix(node, "recover")
    assert result.returncode == 4
    assert "CONFLICT" in result.stderr and "Traceback" not in result.stderr
    assert str(folder / APISERVER.lstrip("/")) in result.stderr
    assert node.read(APISERVER) == after
    # Later runs report, never crash; the conflict HALTed the node, so recover refuses until resume.
    later = run_cisfix(node, "history")
    assert later.returncode == 0 and "Traceback" not in later.stderr
    later = run_cisfix(node, "recover")
    assert later.returncode == 4 and "HALT" in later.stderr and "Traceback" not in later.stderr


def test_a_crash_between_chown_and_chmod_is_recovered_to_before(node):
    kubelet = node.path(KUBELET_CONFIG)
    if os.geteuid() != 0:
        pytest.skip("changing a file's owner needs root")
    os.chown(kubelet, 65534, 65534)
    os.chmod(kubelet, 0o4644)  # setuid: chown clears it, so the state between is not simply a mix
    before = kubelet.stat()
    code = ("import sys\nfrom cisfix.engine import run_changes\nfrom cisfix.node import Node\n"
            "from cisfix.types import SetMode\n"
            f"run_changes(Node(sys.argv[1]), [SetMode({KUBELET_CONFIG!r}, 0o600, '0:0')])")
    env = {**os.environ, "CISFIX_FAULT": "mid-metadata"}
    killed = subprocess.run([sys.executable, "-c", code, str(node.root)], env=env, capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr
    between = kubelet.stat()
    assert (between.st_uid, stat.S_IMODE(between.st_mode)) != (before.st_uid, stat.S_IMODE(before.st_mode))
    result = run_cisfix(node, "recover")
    assert result.returncode == 0, result.stderr
    now = kubelet.stat()
    assert (now.st_uid, now.st_gid, now.st_mode) == (before.st_uid, before.st_gid, before.st_mode)
    assert "mode and owner restored" in result.stdout


def test_a_crash_while_copying_a_backup_leaves_no_temp_file(node):
    assert run_cisfix(node, *EDIT, env={"CISFIX_FAULT": "mid-write@1"}).returncode == -9
    backups = node.state_dir / "backups"
    assert list(backups.rglob("*.tmp")), "the kill should have left the backup's temp file"
    assert run_cisfix(node, "recover").returncode == 0
    assert list(backups.rglob("*.tmp")) == []


def test_backup_folders_are_private(node):
    out = json.loads(run_cisfix(node, *EDIT, "--format", "json").stdout)
    folder = node.state_dir / "backups" / out["txid"]
    modes = {stat.S_IMODE(p.stat().st_mode) for p in [folder, *folder.rglob("*")] if p.is_dir()}
    assert modes == {0o700}


@contextlib.contextmanager
def immutable(path):
    """`path` made immutable (chattr +i): nothing, root included, can write it until it is undone."""
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)]).returncode:
        pytest.skip("chattr +i is not supported here")
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_a_rollback_the_journal_cannot_record_is_refused_and_changes_nothing(node):
    assert run_cisfix(node, *EDIT).returncode == 0
    (tx,) = history(node)
    after = node.snapshot()
    with immutable(journal(node)):
        for args in (("rollback", "--last"), ("rollback", tx["txid"])):
            result = run_cisfix(node, *args)
            assert result.returncode == 4, result.stdout + result.stderr
            line = one_line(result)
            assert f"{journal(node)}: cannot write the journal" in line
            assert f"nothing of transaction {tx['txid']} was undone" in line
            assert "rolled back" not in result.stdout
            assert node.snapshot() == after
            assert [t["state"] for t in history(node)] == ["committed"]
    assert run_cisfix(node, "rollback", "--last").returncode == 0  # once it can be recorded
    assert [t["state"] for t in history(node)] == ["rolled-back"] and b"profiling" not in node.read(APISERVER)


def test_a_recovery_the_journal_cannot_record_is_refused_and_changes_nothing(node):
    original = node.read(APISERVER)
    tx = killed_before_commit(node)
    after = node.snapshot()
    with immutable(journal(node)):
        for args in (("recover",), EDIT):  # every mutating run recovers first
            result = run_cisfix(node, *args)
            assert result.returncode == 4, result.stdout + result.stderr
            assert f"nothing of transaction {tx['txid']} was undone" in one_line(result)
            assert "rolled back" not in result.stdout
            assert node.snapshot() == after and [t["state"] for t in history(node)] == ["open"]
    result = run_cisfix(node, "recover")
    assert result.returncode == 0 and f"{tx['txid']}: rolled back" in result.stdout
    assert node.read(APISERVER) == original and [t["state"] for t in history(node)] == ["rolled-back"]


def test_an_undo_the_journal_stops_recording_halfway_is_not_called_rolled_back(node):
    """The disk fills after `rollback-begin`: the files are back, and nothing says "rolled back" — the
    journal says the rollback is unfinished, and the next run's recovery finishes it."""
    original = node.read(APISERVER)
    assert run_cisfix(node, *EDIT).returncode == 0
    (tx,) = history(node)
    result = run_cisfix(node, "rollback", "--last", env={"CISFIX_FAULT": "enospc@2"})  # the `restored` record
    assert result.returncode == 4, result.stdout + result.stderr
    assert f"{tx['txid']}: files put back, but the journal cannot record it" in one_line(result)
    assert "rolled back" not in result.stdout
    assert node.read(APISERVER) == original and [t["state"] for t in history(node)] == ["rolling-back"]
    recovered = run_cisfix(node, "recover")
    assert recovered.returncode == 0 and f"{tx['txid']}: rolled back" in recovered.stdout
    assert node.read(APISERVER) == original and [t["state"] for t in history(node)] == ["rolled-back"]
