"""The benchmark end to end on running lab nodes: `cisfix fix --level 1` fixes every automated check
that has a safe fix, one restart per component, every component healthy; a second run changes
nothing; what remains carries its reason. One node per version for the module (fresh_fix), one more for
the fix one change at a time."""
from __future__ import annotations

import functools
import json
import subprocess
import sys
import time
from typing import Callable

import pytest

from cisfix.lab.tree import create
from lab_fixtures import FAST, LabNode, lab_factory

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


@pytest.fixture(scope="module")
def fresh_fix(tmp_path_factory) -> Callable[[str], dict]:
    """fresh_fix(version): what `fix --level 1` did on a fresh lab node of that Kubernetes version — the dry
    run before it, its report, the node's health and the components' starts after it, the audit after it,
    and a second fix with the journal before and after that. Told once per version for the module: the
    test of each version checks it, the one-at-a-time test compares its own node with 1.32's."""
    tmp = tmp_path_factory.mktemp("fix")

    def tell(version: str) -> dict:
        factory = lab_factory(tmp, LabNode, create, "lab", FAST, key_algorithm="ECDSA-P256")
        make = next(factory)
        try:
            lab = make(f"lab-{version}", version=version)
            story = {"dry": fix(lab, "--dry-run")}
            since = time.time()
            story["report"] = fix(lab)
            story["status"] = lab.status()
            story["starts"] = {component: len(lab.events("pod-started", component, since))
                               for component in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd")}
            story["after"] = verdicts(lab)
            story["journal"] = (lab.root / "var/lib/cisfix/journal.jsonl").read_bytes()
            story["again"] = fix(lab)
            story["journal_again"] = (lab.root / "var/lib/cisfix/journal.jsonl").read_bytes()
            return story
        finally:
            next(factory, None)  # stop the lab, assert nothing of it is left

    return functools.lru_cache(maxsize=None)(tell)


@pytest.mark.parametrize("version", ["1.31", "1.32"])
def test_fix_level_1_on_a_fresh_node(fresh_fix, version):
    story = fresh_fix(version)
    dry = story["dry"]
    planned = {r["id"] for r in dry["results"] if r["fix"] == "WOULD_FIX"}
    assert "+++ b" in dry["diff"] and planned

    report = story["report"]
    by_id = {r["id"]: r for r in report["results"]}
    assert {i for i, r in by_id.items() if r["fix"] == "FIXED"} == planned
    for r in report["results"]:
        if r["status"] == "FAIL" and r["fix"] != "FIXED":
            assert r["fix"] == "SKIPPED" and r["reason"], r  # every remaining failure says why
    status = story["status"]
    assert all(s.healthy for s in status.values()), status
    for component, starts in story["starts"].items():
        assert starts <= 1, component  # one restart per component

    after = story["after"]
    assert all(after[i] == "PASS" for i in planned), {i: after[i] for i in planned if after[i] != "PASS"}
    assert not any(r["fix"] in ("FIXED", "WOULD_FIX") for r in story["again"]["results"])
    assert story["journal_again"] == story["journal"]


def test_one_at_a_time_reaches_the_same_end_state(make_lab, fresh_fix):
    single = make_lab("single")  # 1.32, as the batched fix of fresh_fix("1.32")
    report = fix(single, "--one-at-a-time")
    assert all(r["fix"] != "REMEDIATION_FAILED_ROLLED_BACK" for r in report["results"])
    assert fresh_fix("1.32")["after"] == verdicts(single)
