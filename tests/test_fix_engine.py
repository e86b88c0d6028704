"""`cisfix fix` on a running lab node: one gated transaction per component, bisected when it fails."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

from lab_fixtures import FAST as FAST_LAB, REAL
from test_health_gate import APISERVER, FAST, cisfix, journal

CHECKS = str(Path(__file__).parent / "data" / "gate")
GOOD = [f"TEST-{i}" for i in range(1, 8)]


def fix(lab, *args):
    result = cisfix(lab, "--checks-dir", CHECKS, "fix", "--format", "json", *FAST, *args)
    return result, json.loads(result.stdout) if result.stdout.strip() else None


@pytest.mark.parametrize("timing", [FAST_LAB, REAL], ids=["fast", "real timing"])
def test_eight_changes_one_bad_applies_seven_and_names_the_culprit(make_lab, timing):
    lab = make_lab(timing=timing)
    since = time.time()
    result, report = fix(lab)
    assert result.returncode == 3, result.stderr
    by_id = {r["id"]: r for r in report["results"]}
    assert {i for i in GOOD if by_id[i]["fix"] == "FIXED"} == set(GOOD)
    assert by_id["TEST-8"]["fix"] == "REMEDIATION_FAILED_ROLLED_BACK"
    assert "unknown flag: --no-such-flag" in by_id["TEST-8"]["reason"]  # the component's own words
    text = (Path(lab.root) / APISERVER.lstrip("/")).read_text()
    assert "--no-such-flag" not in text and all(f in text for f in ("--profiling=false", "--audit-log-maxage=30"))
    restarts = len(lab.events("pod-started", "kube-apiserver", since))
    # 2 for the failed batch (apply, undo), then at most 2 per halving, then the last good ones.
    assert restarts <= 3 + 2 * math.ceil(math.log2(8)), restarts
    assert lab.status()["kube-apiserver"].healthy
    assert not (Path(lab.root) / "var/lib/cisfix/HALT").exists()


def test_a_batch_is_one_restart_and_a_compliant_node_is_left_alone(lab):
    since = time.time()
    result, report = fix(lab, "--disable", "TEST-8")
    assert result.returncode == 0, result.stderr
    assert len(lab.events("pod-started", "kube-apiserver", since)) == 1
    commits = [r for r in journal(lab) if r["type"] == "commit"]
    assert len(commits) == 1
    verified = [r for r in journal(lab) if r["type"] == "verified"]
    assert {c["id"]: c["status"] for c in verified[0]["checks"]} == {i: "PASS" for i in GOOD}

    again_since = time.time()
    records = journal(lab)
    result, report = fix(lab, "--disable", "TEST-8")
    assert result.returncode == 0
    assert {r["fix"] for r in report["results"] if r["id"].startswith("TEST-")} == {"ALREADY_COMPLIANT"}
    assert journal(lab) == records
    time.sleep(2)
    assert lab.events("pod-started", since=again_since) == []


def test_dry_run_prints_plan_and_diff_and_changes_nothing(lab):
    before = (Path(lab.root) / APISERVER.lstrip("/")).read_bytes()
    result, report = fix(lab, "--dry-run")
    assert result.returncode == 0
    assert {r["fix"] for r in report["results"] if r["id"].startswith("TEST-")} == {"WOULD_FIX"}
    assert "+    - --profiling=false" in report["diff"]
    assert (Path(lab.root) / APISERVER.lstrip("/")).read_bytes() == before and journal(lab) == []


def test_one_at_a_time_reaches_the_same_end_state(make_lab):
    batched, single = make_lab("batched"), make_lab("single")
    fix(batched, "--disable", "TEST-8")
    result, report = fix(single, "--disable", "TEST-8", "--one-at-a-time")
    assert result.returncode == 0
    assert len([r for r in journal(single) if r["type"] == "commit"]) == 7

    def flags(lab):
        text = (Path(lab.root) / APISERVER.lstrip("/")).read_text()
        return sorted(line for line in text.splitlines() if line.startswith("    - --") and "port" not in line
                      and "127.0.0.1" not in line)
    assert flags(batched) == flags(single)
