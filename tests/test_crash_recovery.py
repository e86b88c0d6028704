"""A kill -9 at any instant leaves each file as it was or as intended, and `recover` undoes the rest."""
from __future__ import annotations

import json
import random
import subprocess
import sys
import time

import pytest

from cisfix.engine import plan_changes
from cisfix.types import EditFile
from cisfix.faults import POINTS
from cisfix.node import Node
from cisfix.plan import SetFlag
from conftest import APISERVER, KUBELET_CONFIG, run_cisfix

EDIT = ("edit", APISERVER, "--flag", "profiling=false")
MANIFESTS = ["etcd.yaml", "kube-apiserver.yaml", "kube-controller-manager.yaml", "kube-scheduler.yaml"]


def history(node):
    return json.loads(run_cisfix(node, "history", "--format", "json").stdout)


def intended(node):
    """The bytes the edit would write."""
    (planned,) = plan_changes(Node(str(node.root)), [EditFile(APISERVER, (SetFlag("profiling", "false"),))])
    return planned.after


def no_strays(node):
    return sorted(p.name for p in node.path("/etc/kubernetes/manifests").iterdir()) == MANIFESTS


@pytest.mark.parametrize("point", [p for p in POINTS if p not in ("mid-rollback", "mid-metadata")])
def test_kill_at_each_point_then_recover_restores_the_original(node, point):
    original = node.read(APISERVER)
    wanted = intended(node)
    killed = run_cisfix(node, *EDIT, env={"CISFIX_FAULT": point})
    assert killed.returncode == -9, killed.stderr
    assert node.read(APISERVER) in (original, wanted)
    assert history(node)[-1]["state"] == "open"

    recovered = run_cisfix(node, "recover")
    assert recovered.returncode == 0, recovered.stderr
    assert node.read(APISERVER) == original
    assert no_strays(node)
    tx = history(node)[-1]
    assert tx["state"] == "rolled-back"
    assert run_cisfix(node, "recover").stdout.strip() == "nothing to recover"


def test_the_next_mutating_command_recovers_first(node):
    wanted = intended(node)
    run_cisfix(node, *EDIT, env={"CISFIX_FAULT": "before-commit"})
    result = run_cisfix(node, *EDIT)
    assert result.returncode == 0, result.stderr
    assert [tx["state"] for tx in history(node)] == ["rolled-back", "committed"]
    assert node.read(APISERVER) == wanted


def test_every_mutating_command_says_first_what_it_recovered(node):
    """A change undone silently looks like one that never happened: each run that recovers one says so
    in its first line (also with -q), and in its JSON or its Python result."""
    from cisfix.api import Runner

    def leave_one_open() -> str:
        killed = run_cisfix(node, "edit", APISERVER, "--flag", "profiling=true", env={"CISFIX_FAULT": "before-commit"})
        assert killed.returncode == -9
        return history(node)[-1]["txid"]

    said = "cisfix: recovered transaction {} left by an interrupted run: undid 1 file(s){} ({})"
    manifest = node.path(APISERVER)
    for command in (("-q", *EDIT), ("rollback", "--last"), ("recover",), ("-q", "prune"), ("persist",)):
        txid = leave_one_open()
        result = run_cisfix(node, *command)
        whose = "" if command[-1] == "prune" else " of kube-apiserver"  # prune recovers without the layout
        assert result.stdout.splitlines()[0] == said.format(txid, whose, manifest), (command, result.stdout,
                                                                                     result.stderr)
    txid = leave_one_open()
    (recovered,) = json.loads(run_cisfix(node, "recover", "--format", "json").stdout)["recovered"]
    assert recovered["txid"] == txid and recovered["undone"] == [APISERVER]
    assert recovered["components"] == ["kube-apiserver"] and recovered["message"] == said.format(
        txid, " of kube-apiserver", manifest)
    txid = leave_one_open()
    result = Runner(root=str(node.root)).update_manifest_safely(APISERVER, "--profiling=", "false")
    assert result["success"] and [r["txid"] for r in result["recovered"]] == [txid], result
    assert [tx["state"] for tx in history(node)][-2:] == ["rolled-back", "committed"]


def test_kill_mid_rollback_of_a_committed_transaction_is_finished_by_recover(node):
    original = node.read(APISERVER)
    assert run_cisfix(node, *EDIT).returncode == 0
    killed = run_cisfix(node, "rollback", "--last", env={"CISFIX_FAULT": "mid-rollback"})
    assert killed.returncode == -9
    assert history(node)[-1]["state"] == "rolling-back"
    assert run_cisfix(node, "recover").returncode == 0
    assert node.read(APISERVER) == original
    assert history(node)[-1]["state"] == "rolled-back"


def test_kill_during_recovery_is_recovered_by_the_next_run(node):
    original = node.read(APISERVER)
    run_cisfix(node, *EDIT, env={"CISFIX_FAULT": "before-commit"})
    assert run_cisfix(node, "recover", env={"CISFIX_FAULT": "mid-rollback"}).returncode == -9
    assert run_cisfix(node, "recover").returncode == 0
    assert node.read(APISERVER) == original
    assert no_strays(node)


MULTI_FILE_EDIT = """
import sys
from cisfix.engine import run_changes
from cisfix.types import EditFile
from cisfix.node import Node
from cisfix.plan import SetFlag, SetPath
run_changes(Node(sys.argv[1]), [EditFile({apiserver!r}, (SetFlag("profiling", "false"),)),
                              EditFile({kubelet!r}, (SetPath("readOnlyPort", 0),))])
""".format(apiserver=APISERVER, kubelet=KUBELET_CONFIG)


@pytest.mark.parametrize("point", ["mid-write@2", "after-replace@1", "after-replace@2", "before-commit"])
def test_multi_file_transaction_is_all_or_nothing_after_a_crash(node, point):
    before = node.snapshot()
    killed = subprocess.run([sys.executable, "-c", MULTI_FILE_EDIT, str(node.root)],
                            env=_env({"CISFIX_FAULT": point}), capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr
    assert run_cisfix(node, "recover").returncode == 0
    assert node.snapshot() == before
    assert [f["path"] for f in history(node)[-1]["files"]] == [APISERVER, KUBELET_CONFIG]


def _env(extra):
    import os

    return {**{k: v for k, v in os.environ.items() if k != "CISFIX_FAULT"}, **extra}


def test_kills_at_random_moments(node):
    """Whatever the moment of the kill, after recover the file is the original or the committed result."""
    original = node.read(APISERVER)
    rng = random.Random(20261127)
    outcomes = set()
    for _ in range(12):
        proc = subprocess.Popen([sys.executable, "-m", "cisfix", "--root", str(node.root), *EDIT],
                                env=_env({}), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.05, 0.6))
        proc.kill()
        proc.wait()
        assert run_cisfix(node, "recover").returncode == 0
        last = history(node)[-1] if history(node) else None
        content = node.read(APISERVER)
        if last and last["state"] == "committed":
            assert content != original and b"--profiling=false" in content
            outcomes.add("committed")
            assert run_cisfix(node, "rollback", "--last").returncode == 0
        else:
            assert content == original
            outcomes.add(last["state"] if last else "not started")
        assert node.read(APISERVER) == original
        assert no_strays(node)
    assert outcomes  # the seed spreads the kills over start-up, the transaction and after it
