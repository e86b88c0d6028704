"""The benchmark end to end on running lab nodes: `cisfix fix --level 1` fixes every automated check
that has a safe fix, one restart per component, every component healthy; a second run changes
nothing; what remains carries its reason."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

GATE = ("--timeout", "60", "--stability-window", "1")


def cisfix(lab, *args):
    return subprocess.run([sys.executable, "-m", "cisfix", "--root", str(lab.root), *args],
                          capture_output=True, text=True)


def fix(lab, *args):
    result = cisfix(lab, "fix", "--level", "1", "--format", "json", *GATE, *args)
    assert result.returncode in (0, 1), result.stdout[-2000:] + result.stderr[-2000:]
    return json.loads(result.stdout)


def verdicts(lab):
    report = json.loads(cisfix(lab, "audit", "--level", "1", "--format", "json").stdout)
    return {r["id"]: r["status"] for r in report["results"]}


@pytest.mark.parametrize("version", ["1.31", "1.32"])
def test_fix_level_1_on_a_fresh_node(make_lab, version):
    lab = make_lab(f"lab-{version}", version=version)
    dry = fix(lab, "--dry-run")
    planned = {r["id"] for r in dry["results"] if r["fix"] == "WOULD_FIX"}
    assert "+++ b" in dry["diff"] and planned

    since = time.time()
    report = fix(lab)
    by_id = {r["id"]: r for r in report["results"]}
    assert {i for i, r in by_id.items() if r["fix"] == "FIXED"} == planned
    for r in report["results"]:
        if r["status"] == "FAIL" and r["fix"] != "FIXED":
            assert r["fix"] == "SKIPPED" and r["reason"], r  # every remaining failure says why
    status = lab.status()
    assert all(s.healthy for s in status.values()), status
    for component in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd"):
        assert len(lab.events("pod-started", component, since)) <= 1, component  # one restart per component

    after = verdicts(lab)
    assert all(after[i] == "PASS" for i in planned), {i: after[i] for i in planned if after[i] != "PASS"}
    journal = (lab.root / "var/lib/cisfix/journal.jsonl").read_bytes()
    again = fix(lab)
    assert not any(r["fix"] in ("FIXED", "WOULD_FIX") for r in again["results"])
    assert (lab.root / "var/lib/cisfix/journal.jsonl").read_bytes() == journal


def test_one_at_a_time_reaches_the_same_end_state(make_lab):
    batched, single = make_lab("batched"), make_lab("single")
    fix(batched)
    report = fix(single, "--one-at-a-time")
    assert all(r["fix"] != "REMEDIATION_FAILED_ROLLED_BACK" for r in report["results"])
    assert verdicts(batched) == verdicts(single)
