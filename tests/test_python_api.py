"""The Python API that scripts of the older runner call."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from cisfix import Runner
from cisfix.audit import node_state
from cisfix.builtin import NotANode, not_a_node_reason
from cisfix.node import Node
from cisfix.plugins import Plugins
from cisfix.trust import Untrusted
from conftest import APISERVER
from hostile import mallory  # noqa: F401 (fixture)

OLDER_RUNNER_SCRIPT = Path(__file__).parent / "data" / "older_runner_example.py"  # its README's, unchanged


@pytest.mark.parametrize("key", ["--audit-policy-file=", "--audit-policy-file", "audit-policy-file"])
def test_update_manifest_safely_sets_the_flag(node, key):
    runner = Runner(root=str(node.root), verbose=1)
    result = runner.update_manifest_safely(filepath=APISERVER, key=key, value="/etc/kubernetes/audit-policy.yaml")
    assert result["success"] is True and result["status"] == "FIXED"
    assert result["txid"] and result["backup_path"] and result["changes_made"] == 1
    assert b"    - --audit-policy-file=/etc/kubernetes/audit-policy.yaml\n" in node.read(APISERVER)
    again = runner.update_manifest_safely(filepath=APISERVER, key=key, value="/etc/kubernetes/audit-policy.yaml")
    assert again["success"] is True and again["status"] == "ALREADY_COMPLIANT" and again["changes_made"] == 0


def test_bad_input_is_a_result_not_an_exception(node):
    result = Runner(root=str(node.root)).update_manifest_safely(filepath="/nope.yaml", key="a", value="b")
    assert result["success"] is False and result["status"] == "REMEDIATION_FAILED"
    assert "nope.yaml" in result["reason"] and "no such file" in result["reason"]


def test_threads_share_one_runner_safely(node):
    runner = Runner(root=str(node.root))
    results = []
    threads = [threading.Thread(target=lambda i=i: results.append(
        runner.update_manifest_safely(APISERVER, f"--audit-log-maxage{i}", str(i)))) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r["status"] == "FIXED" for r in results), results
    text = node.read(APISERVER).decode()
    assert all(f"--audit-log-maxage{i}={i}" in text for i in range(8))
    assert sum(r["type"] == "commit" for r in node.journal_records()) == 8


def test_gated_remediation_with_a_shell_audit_on_a_lab(lab, tmp_path):
    scripts = tmp_path / "suite"
    scripts.mkdir()
    (scripts / "1.2.15_remediate.sh").write_text("#!/bin/sh\nexit 0\n")
    manifest = lab.root / APISERVER.lstrip("/")
    (scripts / "1.2.15_audit.sh").write_text(f"#!/bin/sh\ngrep -q -- '--profiling=false' {manifest}\n")
    runner = Runner(root=str(lab.root))
    result = runner.apply_remediation_with_health_gate(
        APISERVER, "--profiling=", "false", "1.2.15", script_dict={"path": str(scripts / "1.2.15_remediate.sh")},
        timeout=30)
    assert result["success"] is True and result["status"] == "FIXED", result
    assert result["audit_verified"] is True and result["txid"] and result["backup_path"]

    bad = runner.apply_remediation_with_health_gate(APISERVER, "no-such-flag", "1", "X-1", timeout=30)
    assert bad["success"] is False and bad["status"] == "REMEDIATION_FAILED_ROLLED_BACK"
    assert "unknown flag" in bad["reason"]
    assert bad["audit_verified"] is False  # no new process with the flag came up
    assert bad["changes_made"] == 0 and bad["backup_path"].startswith(bad["backup_dir"])  # what a person restores


def test_a_gated_edit_reports_verified_once_the_live_process_carries_the_flag(lab):
    runner = Runner(root=str(lab.root))
    result = runner.apply_remediation_with_health_gate(APISERVER, "--profiling", "false", "1.2.15", timeout=30)
    assert result["status"] == "FIXED" and result["audit_verified"] is True, result
    assert result["backup_path"].endswith(APISERVER) and result["backup_path"].startswith(result["backup_dir"])
    live = node_state(Plugins(Node(str(lab.root)))).flags("kube-apiserver")
    assert live.running and live.get("profiling") == "false"
    # Every change to a running component takes the one gated path, the older runner's second method too.
    second = runner.update_manifest_safely(APISERVER, "--audit-log-maxage", "30")
    assert second["status"] == "FIXED" and second["audit_verified"] is True, second


def test_scripts_written_for_the_older_runner_work_unchanged(node, tmp_path):
    """What such a script does: import the old name, count changes, copy the backup back."""
    script = tmp_path / "old_runner_script.py"
    script.write_text(f"""
import shutil, sys
from cis_k8s_unified import CISUnifiedRunner

runner = CISUnifiedRunner(root={str(node.root)!r}, verbose=1)
result = runner.update_manifest_safely(filepath={APISERVER!r}, key="--profiling=", value="false")
assert isinstance(result["changes_made"], int) and result["changes_made"] == 1, result
assert result["changes"] and result["backup_dir"], result
assert result["audit_verified"] is None, result  # a tree with nothing running: nothing was gated
shutil.copy(result["backup_path"], {str(node.path(APISERVER))!r})
print("restored")
""")
    before = node.read(APISERVER)
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "restored\n"
    assert node.read(APISERVER) == before  # the backup is the file itself, as the old runner's was
    remediation = [line for line in run.stderr.splitlines() if "REMEDIATION" in line]
    assert remediation and APISERVER in remediation[0], run.stderr


def test_without_a_root_the_runner_works_on_the_node_at_cisfix_root(node, monkeypatch):
    monkeypatch.setenv("CISFIX_ROOT", str(node.root))
    result = Runner().update_manifest_safely(APISERVER, "--profiling=", "false")
    assert result["status"] == "FIXED" and result["original_path"] == str(node.path(APISERVER)), result
    assert b"    - --profiling=false\n" in node.read(APISERVER)


def test_the_older_runners_script_refuses_a_root_that_is_not_a_node_before_creating_anything(tmp_path):
    """Its script names no root: on a machine that is not a node it stops with one exception saying why,
    as the CLI does, and leaves no state folder, lock or log behind."""
    empty = tmp_path / "not-a-node"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run([sys.executable, str(OLDER_RUNNER_SCRIPT)], env=dict(env, CISFIX_ROOT=str(empty)),
                         cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr.count("Traceback") == 1
    assert run.stderr.splitlines()[-1] == (f"cisfix.builtin.NotANode: {empty} does not look like a Kubernetes node: "
                                           f"{not_a_node_reason(Node(str(empty)))}")
    assert list(empty.iterdir()) == []


def test_with_no_root_at_all_the_runner_refuses_this_machine_when_it_is_not_a_node(monkeypatch):
    monkeypatch.delenv("CISFIX_ROOT", raising=False)
    if not_a_node_reason(Node("/")) is None:
        pytest.skip("this machine looks like a Kubernetes node")
    state = Path("/var/lib/cisfix")
    existed = state.exists()
    with pytest.raises(NotANode, match="^/ does not look like a Kubernetes node: no static pod manifest"):
        Runner(verbose=1)
    assert state.exists() == existed


def test_remediation_and_rollback_lines_go_to_the_log_the_caller_names(node, tmp_path):
    ours = tmp_path / "logs" / "cis_remediation.log"
    result = Runner(root=str(node.root), log_file=str(ours)).update_manifest_safely(APISERVER, "--profiling", "false")
    assert result["status"] == "FIXED", result
    assert f" REMEDIATION txid={result['txid']} file={APISERVER} " in ours.read_text()
    assert oct(ours.stat().st_mode & 0o777) == "0o640"
    assert not (node.root / "var/log/cisfix.log").exists()  # instead of the node's change log, not as well

    # A link in the log's place is never followed: the change is made, the link's target left as it was.
    target = tmp_path / "elsewhere"
    target.write_text("untouched\n")
    link = tmp_path / "logs" / "linked.log"
    link.symlink_to(target)
    result = Runner(root=str(node.root), log_file=str(link)).update_manifest_safely(APISERVER, "--profiling", "true")
    assert result["status"] == "FIXED" and target.read_text() == "untouched\n", result


def test_a_log_file_below_a_folder_another_user_owns_is_refused(node, tmp_path, mallory):
    theirs = tmp_path / "theirs"
    (theirs / "logs").mkdir(parents=True)
    os.chown(theirs, *mallory)  # she could swap logs/ for a link to any file root then appends to
    before = node.snapshot()
    with pytest.raises(Untrusted, match=f"^{theirs}: owned by uid {mallory[0]}, not root; not writing the change log"):
        Runner(root=str(node.root), log_file=str(theirs / "logs" / "cis.log"))
    assert node.snapshot() == before


def test_a_check_fixed_through_the_api_is_enforced_by_drift_and_an_id_of_another_check_is_not(node, cisfix):
    """`cisfix drift` enforces what cisfix fixed: a check the API remedied counts as `fix`'s would. An id
    numbered after another benchmark (here 1.2.26 is the API server's etcd CA check) stays out."""
    runner = Runner(root=str(node.root))
    assert runner.apply_remediation_with_health_gate(APISERVER, "--profiling=", "false", "1.2.15")["status"] == "FIXED"
    other = runner.apply_remediation_with_health_gate(APISERVER, "--audit-log-maxage=", "30", "1.2.26")
    assert other["status"] == "FIXED", other
    node.write(APISERVER, node.read(APISERVER).replace(b"--profiling=false", b"--profiling=true"))  # by hand
    result = cisfix("drift", "--format", "json")
    report = json.loads(result.stdout)
    assert report["baseline"] == ["1.2.15"], result.stdout + result.stderr
    assert [(c["id"], c["class"], c["outcome"]) for c in report["corrections"]] == [("1.2.15", "manual", "FIXED")]
    assert b"    - --profiling=false\n" in node.read(APISERVER)
