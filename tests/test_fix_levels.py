"""`cisfix fix` by dependency level: the components of one level (the controller manager and the
scheduler, which need only the API server) are applied together and gated concurrently, each in a
transaction of its own that commits, or rolls back and is bisected, on its own."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cisfix.apply import fix_levels
from cisfix.journal import Journal
from cisfix.layouts.kubeadm.paths import COMPONENTS
from cisfix.types import Component, NodeInfo
from test_health_gate import FAST, cisfix, journal

CHECKS = str(Path(__file__).parent / "data" / "levels")
CM, SCHEDULER = "kube-controller-manager", "kube-scheduler"


# A window a few seconds long: a level's components are written within milliseconds of each other, so
# on any machine each starts long before the other is judged stable.
GATE = (*FAST, "--stability-window", "5")


def fix(lab, *args):
    result = cisfix(lab, "--checks-dir", CHECKS, "fix", "--format", "json", *GATE, *args)
    return result, json.loads(result.stdout) if result.stdout.strip() else None


def manifest(lab, component):
    return (Path(lab.root) / f"etc/kubernetes/manifests/{component}.yaml").read_text()


def transactions(records):
    """txid -> (the component its gate records name, its final state)."""
    found = {}
    for r in records:
        component, state = found.get(r["txid"], (None, "open"))
        if r["type"] == "gate":
            component = r["component"]
        if r["type"] in ("commit", "rolled-back", "rollback-failed"):
            state = r["type"]
        found[r["txid"]] = (component, state)
    return found


def gate_span(lab, records, component, since):
    """(the component's first pod-started after `since`, its first healthy verdict of an applied change)."""
    started = lab.events("pod-started", component, since)[0]["time"]
    stable = next(r["time"] for r in records if r["type"] == "health" and r["component"] == component
                  and r["phase"] == "apply" and r["healthy"])
    return started, stable


def test_the_kubeadm_layout_gives_four_levels_the_kubelet_after_the_pods_it_runs():
    assert fix_levels(NodeInfo(components=COMPONENTS)) == [
        ["etcd"], ["kube-apiserver"], [CM, SCHEDULER], ["kubelet"]]


def test_levels_follow_the_layouts_dependencies_and_a_cycle_is_cut():
    chain = {"a": Component("a"), "b": Component("b", depends_on=("a",)), "c": Component("c", depends_on=("b",)),
             "d": Component("d", depends_on=("a",))}
    assert fix_levels(NodeInfo(components=chain)) == [["a"], ["b", "d"], ["c"]]
    cycle = {"a": Component("a", depends_on=("b",)), "b": Component("b", depends_on=("a",))}
    assert sorted(name for level in fix_levels(NodeInfo(components=cycle)) for name in level) == ["a", "b"]


def test_journal_appends_from_many_threads_stay_whole_and_ordered(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    log = Journal(state / "journal.jsonl")

    def append(n):
        for i in range(50):
            log.append("note", f"20261130T000000Z-{n:06x}", i=i)
    threads = [threading.Thread(target=append, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    records = log.records()  # every checksum verified
    assert len(records) == 400
    assert [r["time"] for r in records] == sorted(r["time"] for r in records)
    for n in range(8):
        assert [r["i"] for r in records if r["txid"] == f"20261130T000000Z-{n:06x}"] == list(range(50))


def test_a_bad_scheduler_change_rolls_back_alone_and_the_controller_managers_commits(lab):
    since = time.time()
    result, report = fix(lab)
    assert result.returncode == 3, result.stderr
    by_id = {r["id"]: r for r in report["results"]}
    assert by_id["LVL-CM-1"]["fix"] == "FIXED" and by_id["LVL-SCHED-1"]["fix"] == "FIXED"
    assert by_id["LVL-SCHED-BAD"]["fix"] == "REMEDIATION_FAILED_ROLLED_BACK"
    assert "unknown flag: --no-such-flag" in by_id["LVL-SCHED-BAD"]["reason"]  # named, in its own words
    assert "LVL-SCHED-BAD" in result.stdout
    assert "--profiling=false" in manifest(lab, CM)
    assert "--profiling=false" in manifest(lab, SCHEDULER) and "--no-such-flag" not in manifest(lab, SCHEDULER)
    assert not (Path(lab.root) / "var/lib/cisfix/HALT").exists()
    status = lab.status()
    assert status[CM].healthy and status[SCHEDULER].healthy

    records = journal(lab)
    txs = transactions(records)
    # One transaction per component and attempt: the controller manager's one commit; the scheduler's
    # failed batch rolled back, then its good half committed.
    assert sorted(txs.values()) == [(CM, "commit"), (SCHEDULER, "commit"), (SCHEDULER, "rolled-back")]
    for txid, (component, _) in txs.items():
        assert {r["component"] for r in records if r["txid"] == txid and "component" in r} == {component}
    # Starts: the controller manager once; the scheduler for the failed batch, for its rollback, for its good half.
    assert len(lab.events("pod-started", CM, since)) == 1
    assert len(lab.events("pod-started", SCHEDULER, since)) == 3
    # Both were restarted in the same level: each started before the other was judged stable.
    cm_started, cm_stable = gate_span(lab, records, CM, since)
    scheduler_started = lab.events("pod-started", SCHEDULER, since)[0]["time"]
    assert scheduler_started < cm_stable

    history = cisfix(lab, "history")
    assert history.returncode == 0, history.stderr
    assert all(txid in history.stdout for txid in txs)


def test_a_levels_components_restart_together_once_each(lab):
    since = time.time()
    result, report = fix(lab, "--disable", "LVL-SCHED-BAD")
    assert result.returncode == 0, result.stderr
    assert {r["fix"] for r in report["results"] if r["id"].startswith("LVL-")} == {"FIXED"}
    assert report["restarts"] == {CM: 1, SCHEDULER: 1}
    records = journal(lab)
    assert len(lab.events("pod-started", CM, since)) == 1 and len(lab.events("pod-started", SCHEDULER, since)) == 1
    (cm_started, cm_stable), (s_started, s_stable) = (gate_span(lab, records, c, since) for c in (CM, SCHEDULER))
    assert s_started < cm_stable and cm_started < s_stable  # their restart cycles overlap
    assert sorted(transactions(records).values()) == [(CM, "commit"), (SCHEDULER, "commit")]


@pytest.mark.parametrize("mode", ["--sequential", "--one-at-a-time"])
def test_the_cautious_modes_restart_one_component_after_another(lab, mode):
    since = time.time()
    result, report = fix(lab, "--disable", "LVL-SCHED-BAD", mode)
    assert result.returncode == 0, result.stderr
    records = journal(lab)
    (cm_started, cm_stable), (s_started, s_stable) = (gate_span(lab, records, c, since) for c in (CM, SCHEDULER))
    assert cm_stable < s_started  # the scheduler only after the controller manager was judged stable
    assert sorted(transactions(records).values()) == [(CM, "commit"), (SCHEDULER, "commit")]


def test_an_interrupt_during_a_levels_gates_leaves_both_transactions_to_recovery(lab):
    before = {c: manifest(lab, c) for c in (CM, SCHEDULER)}
    proc = subprocess.Popen([sys.executable, "-m", "cisfix", "--root", str(lab.root), "-p", "no:cisfix_cis",
                             "--checks-dir", CHECKS, "fix", "--disable", "LVL-SCHED-BAD", "--timeout", "120",
                             "--stability-window", "30"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    lab.wait_for(lambda: len([r for r in journal(lab) if r["type"] == "gate"]) >= 2, timeout=120,
                 what="both components' gates open")
    os.kill(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=60) == 130, proc.stderr.read()
    assert sorted(state for _, state in transactions(journal(lab)).values()) == ["open", "open"]
    said = proc.stderr.read().decode().splitlines()[-1]  # the exit-130 line names both, and what recovery does with them
    for txid, (component, _) in transactions(journal(lab)).items():
        assert f"transaction {txid} is open ({component}: " in said, said

    result = cisfix(lab, "recover", *FAST)
    assert result.returncode == 0, result.stdout + result.stderr
    assert {c: manifest(lab, c) for c in (CM, SCHEDULER)} == before
    recovery = [r for r in journal(lab) if r["type"] == "health" and r["phase"] == "recovery"]
    assert sorted((r["component"], r["healthy"]) for r in recovery) == [(CM, True), (SCHEDULER, True)]
    assert not (Path(lab.root) / "var/lib/cisfix/HALT").exists()
