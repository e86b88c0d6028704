"""Managed worker nodes end to end (EKS AL2, EKS AL2023, GKE, AKS labs): audit, fix, audit — every automated
node check PASS or named as needing a person, one kubelet restart, the fix seen in the running kubelet's
/configz and argv — kube-bench's node check ids in the kube-bench JSON, and on AL2023 the boot that
reverts the fix, the drift run that re-applies it once and the user-data snippet `persist` prints that makes
the next boot keep it (on GKE the boot's rewrite and the drift run that re-applies the fix).

One lab per test (a worker lab runs only a kubelet: it starts in a second or two)."""
from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Dict, List

import pytest

from test_health_gate import FAILING_PROBE

from cisfix.lab.control import Lab, processes_under
from cisfix.lab.tree import load_yaml
from cisfix.lab.worker import KUBELET_API_KUBECONFIG, create

GATE = {"stabilityWindow": 1, "timeout": 120}
# kube-bench's node check ids (cfg/<benchmark>/node.yaml), which cisfix's kube-bench JSON must list.
KUBE_BENCH_IDS = {
    "eks-1.8.0": [f"3.1.{n}" for n in range(1, 5)] + [f"3.2.{n}" for n in range(1, 10)],
    "gke-1.9.0": [f"3.1.{n}" for n in range(1, 5)],
    "aks-1.8": [f"3.1.{n}" for n in range(1, 5)] + [f"3.2.{n}" for n in range(1, 10)],
}
# What each lab starts with that its benchmark fails, and what the fixed kubelet serves at /configz.
CASES = {
    "eks-al2": ("eks-1.8.0", {"3.2.4", "3.2.6"}, {"readOnlyPort": 0, "makeIPTablesUtilChains": True}),
    "eks-al2023": ("eks-1.8.0", {"3.2.4", "3.2.6"}, {"readOnlyPort": 0, "makeIPTablesUtilChains": True}),
    "aks": ("aks-1.8", {"3.2.6", "3.2.8"}, {"makeIPTablesUtilChains": True}),
}
# The labs whose fix edits a unit drop-in (eks-al2's --read-only-port, in 30-kubelet-extra-args.conf's
# Environment=): systemd re-reads it only at a daemon-reload. The others' flags are in environment files.
UNIT_FILE_FIXES = {"eks-al2"}


class Worker:
    """A started worker lab and cisfix run against it as root runs it on the node."""

    def __init__(self, root: Path, distribution: str) -> None:
        self.lab = Lab(create(root, distribution, kubelet_restart_sec=0.2).root)
        config = self.lab.node_config()
        config["gate"] = GATE
        self.host(CONFIG).write_text(json.dumps(config))
        self.lab.start(wait=120)

    def host(self, node_path: str) -> Path:
        return self.lab.layout.host(node_path)

    def cisfix(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "cisfix", "--root", str(self.lab.root), *args],
                              capture_output=True, text=True, timeout=600)

    def audit(self, *args: str) -> Dict[str, dict]:
        done = self.cisfix("audit", "--format", "json", *args)
        assert done.returncode in (0, 1), done.stderr
        return {r["id"]: r for r in json.loads(done.stdout)["results"]}

    def failing(self, *args: str) -> set:
        return {i for i, r in self.audit(*args).items() if r["status"] == "FAIL"}

    def starts(self) -> int:
        """How many times the lab's init has started the kubelet unit."""
        return json.loads(self.lab.layout.init_state.read_text())["unitStarts"]

    def reloads(self) -> int:
        """How many times the lab's init has re-read the unit files (`systemctl daemon-reload`)."""
        return json.loads(self.lab.layout.init_state.read_text())["reloads"]

    def argv(self) -> List[str]:
        pid = self.lab.status()["kubelet"].pid
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]

    def configz(self, tmp_path: Path) -> dict:
        """/configz with the operator's credential (/etc/cisfix/kubelet-api.kubeconfig), as cisfix reads it."""
        user = load_yaml(self.host(KUBELET_API_KUBECONFIG).read_text())["users"][0]["user"]
        pem = tmp_path / "client.pem"
        pem.write_bytes(base64.b64decode(user["client-certificate-data"]) + base64.b64decode(user["client-key-data"]))
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        context.load_cert_chain(str(pem))
        url = self.lab.node_config()["components"]["kubelet"]["liveConfig"]["url"]
        with urllib.request.urlopen(url, context=context, timeout=30) as response:
            return json.load(response)["kubeletconfig"]

    def commits(self) -> List[dict]:
        path = self.host("/var/lib/cisfix/journal.jsonl")
        lines = path.read_text().splitlines() if path.exists() else []
        return [r for r in map(json.loads, lines) if r.get("type") == "commit"]

    def stop(self) -> None:
        assert self.lab.stop() == [] and processes_under(self.lab.root) == []


CONFIG = "/etc/cisfix/config.yaml"


@pytest.fixture
def worker(tmp_path):
    made: List[Worker] = []

    def make(distribution: str) -> Worker:
        made.append(Worker(tmp_path / distribution, distribution))
        return made[-1]

    yield make
    for node in made:
        node.stop()


def kube_bench_ids(node: Worker) -> Dict[str, List[str]]:
    done = node.cisfix("audit", "--format", "kube-bench")
    assert done.returncode in (0, 1), done.stderr
    return {control["version"]: [r["test_number"] for group in control["tests"] for r in group["results"]]
            for control in json.loads(done.stdout)["Controls"]}


def fix_and_check(node: Worker, failing: set, served: dict, tmp_path: Path, *args: str) -> dict:
    """`fix --level 1`: the failing checks FIXED in one transaction with one kubelet restart, every
    automated check then PASS (or named as needing a person), the fix live at /configz."""
    assert node.failing(*args) == failing
    starts, reloads = node.starts(), node.reloads()
    done = node.cisfix("fix", "--level", "1", "--format", "json", *args)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    fixed = {r["id"] for r in report["results"] if r["fix"] == "FIXED"}
    assert fixed == failing
    assert len({r["txid"] for r in report["results"] if r["fix"] == "FIXED"}) == 1
    assert node.starts() == starts + 1, "one kubelet restart for every fix"
    assert node.reloads() == reloads + (node.lab.layout.settings().distribution in UNIT_FILE_FIXES), \
        "a daemon-reload before the restart exactly when a unit file changed"
    assert report["restarts"] == {"kubelet": 1}
    after = node.audit(*args)
    assert {i for i, r in after.items() if r["automated"] and r["status"] not in ("PASS", "NOT_APPLICABLE")} == set()
    live = node.configz(tmp_path)
    assert {key: live.get(key) for key in served} == served
    assert any("do not last" in w for w in report["warnings"])
    return report


@pytest.mark.parametrize("distribution", sorted(CASES))
def test_audit_fix_audit_on_a_managed_worker(worker, tmp_path, distribution):
    benchmark, failing, served = CASES[distribution]
    node = worker(distribution)
    assert list(kube_bench_ids(node)) == [benchmark]
    assert kube_bench_ids(node)[benchmark] == KUBE_BENCH_IDS[benchmark]
    fix_and_check(node, failing, served, tmp_path)
    if distribution == "aks":  # flags only: the kubelet's argv carries the fix
        argv = node.argv()
        assert "--make-iptables-util-chains=true" in argv and not any("rotate-certificates" in a for a in argv)
    again = node.cisfix("fix", "--level", "1")
    assert again.returncode == 0 and "fixed 0" in again.stdout, again.stdout  # idempotent: nothing left to do


def test_gke_node_section_and_a_kubelet_fix_through_its_config(worker, tmp_path):
    """kube-bench's gke-1.9.0 node section is its four file checks: all PASS on a GKE node, nothing to fix
    and no restart. The kubelet's own settings (GKE's read-only port 10255) are fixed with the generic
    benchmark's checks, in /home/kubernetes/kubelet-config.yaml, with one restart; `persist` prints the node
    pool's kubeletConfig for it."""
    node = worker("gke")
    assert kube_bench_ids(node) == {"gke-1.9.0": KUBE_BENCH_IDS["gke-1.9.0"]}
    starts = node.starts()
    done = node.cisfix("fix", "--level", "1")
    assert done.returncode == 0 and node.starts() == starts, done.stdout + done.stderr
    generic = ("--benchmark", "cis-1.12", "--check", "4.2.4")
    before = node.host("/home/kubernetes/kubelet-config.yaml").read_text()
    fix_and_check(node, {"4.2.4"}, {"readOnlyPort": 0}, tmp_path, *generic)
    after = node.host("/home/kubernetes/kubelet-config.yaml").read_text()
    assert after == before.replace("readOnlyPort: 10255", "readOnlyPort: 0")
    persisted = node.cisfix("persist")
    assert persisted.returncode == 0, persisted.stderr
    assert "insecureKubeletReadonlyPortEnabled" in persisted.stdout

    # GKE's startup scripts rewrite kubelet-config.yaml from the instance metadata at every boot
    reboot = subprocess.run([sys.executable, "-m", "cisfix.lab.cli", "reboot", str(node.lab.root)],
                            capture_output=True, text=True, timeout=300)
    assert reboot.returncode == 0, reboot.stderr
    assert node.host("/home/kubernetes/kubelet-config.yaml").read_text() == before
    commits = len(node.commits())
    drift = node.cisfix("drift", "--benchmark", "cis-1.12")
    assert drift.returncode == 1 and "failing check(s) cisfix never fixed" in drift.stdout, drift.stdout + drift.stderr
    corrected = [line.split()[1:3] for line in drift.stdout.splitlines() if line.startswith("CORRECTED")]
    assert corrected == [["4.2.4", "(boot,"]], drift.stdout  # the startup scripts' rewrite, not a person's edit
    assert len(node.commits()) == commits + 1
    assert node.host("/home/kubernetes/kubelet-config.yaml").read_text() == after


def test_al2023_reboot_reverts_drift_reapplies_and_the_persisted_node_config_keeps_it(worker, tmp_path):
    benchmark, failing, served = CASES["eks-al2023"]
    node = worker("eks-al2023")
    fix_and_check(node, failing, served, tmp_path)
    reboot = subprocess.run([sys.executable, "-m", "cisfix.lab.cli", "reboot", str(node.lab.root)],
                            capture_output=True, text=True, timeout=300)
    assert reboot.returncode == 0, reboot.stderr
    assert node.failing() == failing, "nodeadm rewrote the kubelet's files from the user data at boot"

    commits = len(node.commits())
    drift = node.cisfix("drift")
    assert drift.returncode == 0, drift.stdout + drift.stderr
    corrected = [line.split()[1:3] for line in drift.stdout.splitlines() if line.startswith("CORRECTED")]
    assert {check for check, _ in corrected} == failing
    assert {cls for _, cls in corrected} == {"(boot,"}, drift.stdout  # nodeadm's rewrite, not a person's edit
    assert len(node.commits()) == commits + 1, "one correction"
    assert node.failing() == set()
    assert node.cisfix("drift").returncode == 0 and len(node.commits()) == commits + 1  # once

    persisted = node.cisfix("persist")
    assert persisted.returncode == 0, persisted.stderr
    snippet = persisted.stdout.split("--- nodeconfig.yaml\n", 1)[1]
    document = load_yaml(snippet)
    assert document["kind"] == "NodeConfig" and document["spec"]["kubelet"]["config"] == served
    user_data = node.host("/var/lib/lab/user-data")
    user_data.write_text(user_data.read_text().replace(
        "--//--", f"--//\nContent-Type: application/node.eks.aws\n\n{snippet}\n--//--"))
    reboot = subprocess.run([sys.executable, "-m", "cisfix.lab.cli", "reboot", str(node.lab.root)],
                            capture_output=True, text=True, timeout=300)
    assert reboot.returncode == 0, reboot.stderr
    assert node.failing() == set(), "the user data now sets what the fixes set"
    live = node.configz(tmp_path)
    assert {key: live.get(key) for key in served} == served
    commits = len(node.commits())
    assert node.cisfix("drift").returncode == 0 and len(node.commits()) == commits  # nothing to correct


def test_a_unit_drop_in_fix_is_applied_and_undone_through_daemon_reload(worker, tmp_path):
    """eks-al2's read-only port is set in a unit drop-in's Environment=: systemd runs what it loaded until a
    daemon-reload. With the reload command the fix reaches the new kubelet and `rollback` brings the old
    flag back; a node configuration that says not to reload (`reload: []`) gets a kubelet that still has
    the port, a failed verification and the drop-in rolled back; one whose reload fails is not restarted
    for the change, and the drop-in is rolled back."""
    node = worker("eks-al2")
    dropin = node.host("/etc/systemd/system/kubelet.service.d/30-kubelet-extra-args.conf")
    original = dropin.read_bytes()
    reloads = node.reloads()
    done = node.cisfix("fix", "--check", "3.2.4")
    assert done.returncode == 0, done.stdout + done.stderr
    assert node.reloads() == reloads + 1
    assert dropin.read_bytes() == original.replace(b"--read-only-port=10255", b"--read-only-port=0")
    assert "--read-only-port=0" in node.argv()
    assert node.configz(tmp_path)["readOnlyPort"] == 0

    undone = node.cisfix("rollback", "--last")
    assert undone.returncode == 0, undone.stdout + undone.stderr
    assert node.reloads() == reloads + 2 and dropin.read_bytes() == original
    assert "--read-only-port=10255" in node.argv()

    config = json.loads(node.host(CONFIG).read_text())
    config["components"]["kubelet"]["reload"] = []
    node.host(CONFIG).write_text(json.dumps(config))
    starts = node.starts()
    refused = node.cisfix("fix", "--check", "3.2.4")
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "3.2.4" in refused.stdout and "rolled back" in refused.stdout
    assert node.reloads() == reloads + 2 and node.starts() == starts + 2  # the change's restart, the rollback's
    assert dropin.read_bytes() == original and "--read-only-port=10255" in node.argv()

    config["components"]["kubelet"]["reload"] = ["false"]  # a daemon-reload that fails
    node.host(CONFIG).write_text(json.dumps(config))
    starts = node.starts()
    failed = node.cisfix("fix", "--check", "3.2.4")
    assert failed.returncode == 3, failed.stdout + failed.stderr
    assert "kubelet's reload command (false) exited 1" in failed.stdout, failed.stdout
    assert node.starts() == starts + 1  # not restarted for the change; restarted once for the rollback
    assert dropin.read_bytes() == original and "--read-only-port=10255" in node.argv()


# healthy for the pre-gate only: neither the change nor its rollback comes back
NEVER_AGAIN_HEALTHY = FAILING_PROBE.replace('cisfix.Probe("kube-apiserver"', 'cisfix.Probe("kubelet"')


def test_a_halt_after_a_unit_drop_in_change_tells_a_person_to_reload_before_the_restart(worker, tmp_path):
    node = worker("eks-al2")
    probes = tmp_path / "probes.d"
    probes.mkdir()
    (probes / "sick.py").write_text(NEVER_AGAIN_HEALTHY)
    dropin = node.host("/etc/systemd/system/kubelet.service.d/30-kubelet-extra-args.conf")
    original = dropin.read_bytes()
    done = node.cisfix("--checks-dir", str(probes), "fix", "--check", "3.2.4", "--timeout", "5",
                       "--stability-window", "1")
    assert done.returncode == 4, done.stdout + done.stderr
    assert dropin.read_bytes() == original
    steps = [line.strip() for line in node.host("/var/lib/cisfix/HALT").read_text().splitlines()]
    reload, restart = (steps.index(" ".join(node.lab.node_config()["components"]["kubelet"][key]))
                       for key in ("reload", "restart"))
    assert steps[reload - 1].startswith("cp -p ") and restart == reload + 1
