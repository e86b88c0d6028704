"""Scripts written for the older runner (`from cis_k8s_unified import CISUnifiedRunner`), copied unchanged
into tests/data from its public documentation, run against a started lab node through the installed
package and through cisfix.pyz (`PYTHONPATH=cisfix.pyz`). They name no root: the lab's comes from
`CISFIX_ROOT`, as it does for the deploy/ units.

One lab for the whole flow: the documented fields and their types, a change that commits (REMEDIATION
in the change log), one the API server refuses (rolled back, ROLLBACK in the log, its backup reported),
and a change made through the API that `cisfix drift` then enforces like one of `cisfix fix`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from cisfix import Runner
from conftest import APISERVER

DATA = Path(__file__).parent / "data"
CANONICAL = DATA / "older_runner_example.py"  # its README's "apply with health gate" script
EXAMPLE_1 = DATA / "older_runner_example1.py"  # its Example 1: update_manifest_safely
# Runs each script as `python3 script.py` would, then prints the `result` it left, as the last line.
RESULTS = ("import json, runpy, sys\n"
           "print(json.dumps([runpy.run_path(p, run_name='__main__')['result'] for p in sys.argv[1:]]))\n")
# The fields the older runner's documentation uses, with their types, and cisfix's own.
FIELDS = {"success": (bool,), "status": (str,), "reason": (str,), "message": (str,), "backup_path": (str, type(None)),
          "original_path": (str,), "changes_made": (int,), "audit_verified": (bool, type(None)),
          "txid": (str, type(None)), "backup_dir": (str, type(None)), "changes": (list,), "diff": (str,)}


def run_scripts(python: str, env: dict, cwd: Path) -> tuple:
    run = subprocess.run([python, "-c", RESULTS, str(CANONICAL), str(EXAMPLE_1)], env=env, cwd=cwd,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    *printed, last = run.stdout.splitlines()
    results = json.loads(last)
    for result in results:  # exact types: True is no count of changes
        wrong = {k: result.get(k, "missing") for k, types in FIELDS.items()
                 if type(result.get(k, "missing")) not in types}
        assert not wrong, (wrong, result)
    return results, printed, run.stderr


def test_the_older_runners_scripts_run_unchanged_on_a_node_through_the_wheel_and_the_pyz(lab, pyz, tmp_path):
    config = lab.root / "etc/cisfix/config.yaml"
    config.write_text(config.read_text() + "gate: {timeout: 60, stabilityWindow: 1}\n")  # a short test
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CISFIX_FAULT")}
    env["CISFIX_ROOT"] = str(lab.root)
    manifest = lab.manifest("kube-apiserver")

    # Through the installed package: the canonical script's change commits, Example 1's is refused by
    # the API server (its audit policy file does not exist) and rolled back.
    (fixed, refused), printed, stderr = run_scripts(sys.executable, env, tmp_path)
    assert fixed["success"] is True and fixed["status"] == "FIXED" and fixed["audit_verified"] is True, fixed
    assert fixed["changes_made"] == 1 and fixed["original_path"] == str(manifest)
    assert b"    - --audit-log-maxage=30\n" in manifest.read_bytes()
    assert refused["status"] == "REMEDIATION_FAILED_ROLLED_BACK" and refused["changes_made"] == 0, refused
    assert refused["message"] == refused["reason"] and "audit policy file" in refused["reason"]
    # The backup it made is reported, and is the file as it was (and is again) before that change.
    assert refused["backup_path"].startswith(refused["backup_dir"])
    assert Path(refused["backup_path"]).read_bytes() == manifest.read_bytes()
    assert printed == ["✓ Remediation successful and verified", "  Audit check passed",
                       refused["message"], refused["backup_path"], "0"]
    assert f"REMEDIATION txid={fixed['txid']} file={APISERVER}" in stderr  # verbose=1
    log = (lab.root / "var/log/cisfix.log").read_text()
    assert f"REMEDIATION txid={fixed['txid']} file={APISERVER} " in log
    assert f"ROLLBACK txid={refused['txid']} file={APISERVER} " in log
    assert f"REMEDIATION txid={refused['txid']}" not in log

    # Through the archive, with an interpreter that has no cisfix of its own: the first change is in
    # place already, the second is refused again.
    archived = dict(env, PYTHONPATH=str(pyz), SHIV_ROOT=str(tmp_path / "extracted"))
    (again, refused_again), _, _ = run_scripts(os.path.realpath(sys.executable), archived, tmp_path)
    assert again["success"] is True and again["status"] == "ALREADY_COMPLIANT" and again["changes_made"] == 0
    assert refused_again["status"] == "REMEDIATION_FAILED_ROLLED_BACK" and refused_again["backup_path"], refused_again
    assert f"ROLLBACK txid={refused_again['txid']} file={APISERVER} " in (lab.root / "var/log/cisfix.log").read_text()

    # A check fixed through the API is in drift's baseline: a manual revert of it is corrected. The
    # canonical script's 1.2.26 is another check in this benchmark (etcd's CA), which its change did not
    # fix: it stays out of the baseline.
    profiling = Runner(root=str(lab.root)).apply_remediation_with_health_gate(
        APISERVER, "--profiling=", "false", check_id="1.2.15", timeout=60)
    assert profiling["status"] == "FIXED", profiling
    since = time.time()
    lab.edit_manifest("kube-apiserver", "    - --profiling=false\n", "")
    lab.wait_for_event("pod-started", "kube-apiserver", since=since)
    drift = subprocess.run([sys.executable, "-m", "cisfix", "--root", str(lab.root), "drift", "--level", "1",
                            "--format", "json"], env=env, capture_output=True, text=True, timeout=300)
    report = json.loads(drift.stdout)
    assert report["baseline"] == ["1.2.15"], drift.stdout + drift.stderr
    assert [(c["id"], c["class"], c["outcome"]) for c in report["corrections"]] == [("1.2.15", "manual", "FIXED")]
    assert b"    - --profiling=false\n" in manifest.read_bytes()
