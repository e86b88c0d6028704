"""Every change on a running lab node takes the one gated path: kubelet settings like manifests (the
kubelet restarted once, proven healthy, verified against the configuration it serves at /configz; a
setting it rejects rolled back), `rollback` and `recover` gated too, and the gate reads `-v=2` as the
component does."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

GATE = ("--timeout", "60", "--stability-window", "1")
FLAGS_ENV = "/var/lib/kubelet/kubeadm-flags.env"
KUBELET_CONFIG = "/var/lib/kubelet/config.yaml"


def cisfix(lab, *args):
    return subprocess.run([sys.executable, "-m", "cisfix", "--root", str(lab.root), *args],
                          capture_output=True, text=True)


def records(lab, txid):
    lines = (lab.root / "var/lib/cisfix/journal.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["txid"] == txid]


def test_fix_of_a_kubelet_setting_restarts_gates_and_verifies_it_live(lab):
    config = lab.layout.host(KUBELET_CONFIG).read_bytes()
    result = cisfix(lab, "fix", "--check", "4.2.12", "--format", "json", *GATE)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (outcome,) = json.loads(result.stdout)["results"]
    assert outcome["fix"] == "FIXED"
    assert lab.layout.host(KUBELET_CONFIG).read_bytes() != config
    assert lab.restarts("kubelet") == 1
    journal = records(lab, outcome["txid"])
    (health,) = [r for r in journal if r["type"] == "health"]
    assert health["component"] == "kubelet" and health["healthy"] and health["phase"] == "apply"
    (verified,) = [r for r in journal if r["type"] == "verified"]
    assert verified["source"].endswith("/configz")
    assert verified["checks"][0]["status"] == "PASS" and "/configz" in verified["checks"][0]["evidence"][0]
    assert [r["type"] for r in journal][-1] == "commit"
    assert all(s.healthy for s in lab.status().values())

    # Undoing it is a change like any other: the kubelet restarts with the old file and is gated.
    back = cisfix(lab, "rollback", "--last", *GATE)
    assert back.returncode == 0, back.stdout + back.stderr
    assert lab.layout.host(KUBELET_CONFIG).read_bytes() == config
    assert lab.restarts("kubelet") == 2
    gated = [r for r in records(lab, outcome["txid"]) if r["type"] == "health" and r["phase"] == "rollback"]
    assert gated and gated[-1]["healthy"]


def test_a_setting_the_kubelet_rejects_is_rolled_back(lab):
    before = lab.layout.host(FLAGS_ENV).read_bytes()
    result = cisfix(lab, "edit", FLAGS_ENV, "--flag", "tls-cipher-suites=TLS_NOT_A_SUITE", *GATE)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "REMEDIATION_FAILED_ROLLED_BACK" in result.stdout
    assert lab.layout.host(FLAGS_ENV).read_bytes() == before
    assert all(s.healthy for s in lab.status().values())
    assert not (lab.root / "var/lib/cisfix/HALT").exists()


def test_flag_file_edit_dry_run_shows_the_diff_on_a_lab_node(lab):
    before = lab.layout.host(FLAGS_ENV).read_bytes()
    result = cisfix(lab, "edit", FLAGS_ENV, "--flag", "read-only-port=0", "--dry-run", "--diff")
    assert result.returncode == 0, result.stderr
    assert "--read-only-port=0" in result.stdout and result.stdout.startswith("--- a")
    assert lab.layout.host(FLAGS_ENV).read_bytes() == before
    assert lab.restarts("kubelet") == 0


APISERVER = "/etc/kubernetes/manifests/kube-apiserver.yaml"


def test_a_single_dash_flag_in_the_manifest_does_not_confuse_the_gate(lab):
    since = time.time()
    lab.add_flag("kube-apiserver", "-v=2")
    lab.wait_for_event("pod-started", "kube-apiserver", since, timeout=60)
    lab.wait_for(lambda: lab.status()["kube-apiserver"].healthy, 60, "the API server healthy with -v=2")
    since = time.time()
    result = cisfix(lab, "edit", APISERVER, "--flag", "profiling=false", "--format", "json", *GATE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["status"] == "FIXED"
    assert len(lab.events("pod-started", "kube-apiserver", since)) == 1
    assert "    - -v=2\n" in lab.manifest("kube-apiserver").read_text()


def test_recover_after_a_kill_during_a_rollback_returns_only_once_healthy(lab):
    before = lab.manifest("kube-apiserver").read_bytes()
    killed = subprocess.run([sys.executable, "-m", "cisfix", "--root", str(lab.root), "edit", APISERVER,
                             "--flag", "no-such-flag=1", *GATE], capture_output=True, text=True,
                            env={**os.environ, "CISFIX_FAULT": "mid-rollback"})
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    result = cisfix(lab, "recover", "--format", "json", *GATE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert lab.status()["kube-apiserver"].healthy  # at once: recover returned only after the gate
    assert lab.manifest("kube-apiserver").read_bytes() == before
    recovery = [r for r in map(json.loads, (lab.root / "var/lib/cisfix/journal.jsonl").read_text().splitlines())
                if r["type"] == "health" and r["phase"] == "recovery"]
    assert [(r["component"], r["healthy"]) for r in recovery] == [("kube-apiserver", True)]


def test_every_kubelet_fix_in_one_run_restarts_it_once_and_verifies_live(lab):
    config = lab.layout.host(KUBELET_CONFIG)
    text = config.read_text()
    for old, new in (("    enabled: false\n", "    enabled: true\n"), ("  mode: Webhook\n", "  mode: AlwaysAllow\n"),
                     ("rotateCertificates: true\n", "rotateCertificates: false\nmakeIPTablesUtilChains: false\n")):
        assert old in text
        text = text.replace(old, new, 1)
    config.write_text(text)
    flags = lab.layout.host(FLAGS_ENV)
    flags.write_text(flags.read_text().replace('"\n', ' --read-only-port=10255"\n'))  # a flag overrides the file
    lab.restart_kubelet()
    lab.wait_for(lambda: lab.status()["kubelet"].healthy, 30, "the kubelet healthy")
    wanted = ("4.2.1", "4.2.2", "4.2.4", "4.2.6", "4.2.10", "4.2.12")
    before = lab.restarts("kubelet")
    result = cisfix(lab, "fix", *[a for i in wanted for a in ("--check", i)], "--format", "json", *GATE)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert {r["id"]: r["fix"] for r in report["results"]} == {i: "FIXED" for i in wanted}
    assert report["restarts"] == {"kubelet": 1} and lab.restarts("kubelet") == before + 1
    assert "--read-only-port=0" in flags.read_text()  # set where it takes effect
    (verified,) = [r for r in records(lab, report["results"][0]["txid"]) if r["type"] == "verified"]
    assert {c["id"]: c["status"] for c in verified["checks"]} == {i: "PASS" for i in wanted}
    assert verified["source"].endswith("/configz")
    assert all(s.healthy for s in lab.status().values())


def test_a_rollback_that_does_not_come_back_is_undone_exit_3(lab):
    """The operator rolls back a change whose old state no longer works (a certificate it named was
    removed since): the rollback fails its gate, the change is put back, the API server is healthy."""
    pki = lab.root / "etc/kubernetes/pki"
    (pki / "apiserver-etcd-client-new.crt").write_bytes((pki / "apiserver-etcd-client.crt").read_bytes())
    manifest = lab.root / "etc/kubernetes/manifests/kube-apiserver.yaml"
    edit = cisfix(lab, "-p", "no:cisfix_cis", "edit", "/etc/kubernetes/manifests/kube-apiserver.yaml", "--flag",
                  "etcd-certfile=/etc/kubernetes/pki/apiserver-etcd-client-new.crt", *GATE)
    assert edit.returncode == 0, edit.stdout + edit.stderr
    changed = manifest.read_bytes()
    (pki / "apiserver-etcd-client.crt").rename(pki / "apiserver-etcd-client.crt.moved")

    result = cisfix(lab, "-p", "no:cisfix_cis", "rollback", "--last", *GATE)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "put back" in result.stderr and "healthy again" in result.stderr
    assert manifest.read_bytes() == changed
    assert not (lab.root / "var/lib/cisfix/HALT").exists()
    assert lab.status()["kube-apiserver"].healthy
    lines = (lab.root / "var/lib/cisfix/journal.jsonl").read_text().splitlines()
    health = [(r["phase"], r["healthy"]) for r in map(json.loads, lines) if r["type"] == "health"]
    assert health[-2:] == [("rollback", False), ("apply", True)]
