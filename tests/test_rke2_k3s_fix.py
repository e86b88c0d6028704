"""Fixing running RKE2 and k3s lab nodes: one restart of the distribution's service per fix, every fix
carried by the components' live flags and kept across restarts, a bad flag rolled back with the
component's own error, and drift of a manual configuration edit corrected once."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from cisfix.flags import parse
from cisfix.lab.control import Lab
from k3s_lab_fixtures import make_k3s_lab  # noqa: F401 (fixture)
from rke2_lab_fixtures import make_rke2_lab  # noqa: F401 (fixture)
from hostile import mallory, shared_dir  # noqa: F401 (fixtures)

GATE = {"stabilityWindow": 2, "timeout": 150}  # a fast lab: a short window keeps the suite quick


class Distribution(ABC):
    """What a test needs to know of one distribution's lab."""

    name: str
    service: str
    config: str
    plugins_added: frozenset  # admission plugins a fix --level 1 enables on a fresh lab

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        config = lab.node_config()
        config["gate"] = GATE
        lab.layout.host("/etc/cisfix/config.yaml").write_text(json.dumps(config))

    @property
    def owned(self) -> str:
        return f"{self.config}.d/90-cisfix.yaml"

    def host(self, node_path: str) -> Path:
        return self.lab.layout.host(node_path)

    def cisfix(self, *args: str, fault: Optional[str] = None) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k != "CISFIX_FAULT"}
        env.update({"CISFIX_FAULT": fault} if fault else {})
        return subprocess.run([sys.executable, "-m", "cisfix", "--root", str(self.lab.root), *args],
                              capture_output=True, text=True, timeout=600, env=env)

    def configuration(self) -> Dict[Path, bytes]:
        return {p: p.read_bytes() for p in self.host(self.config).parent.rglob("*") if p.is_file()}

    def audit(self) -> Dict[str, dict]:
        done = self.cisfix("audit", "--format", "json")
        assert done.returncode in (0, 1), done.stderr
        return {r["id"]: r for r in json.loads(done.stdout)["results"]}

    def starts(self) -> int:
        """How many times the lab's init has started the service."""
        return json.loads(self.lab.layout.init_state.read_text())["unitStarts"]

    def restart(self) -> None:
        command = self.lab.node_config()["components"][self.service]["restart"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stdout + done.stderr

    def benchmark(self) -> str:
        done = self.cisfix("audit", "--format", "kube-bench")
        return {control["version"] for control in json.loads(done.stdout)["Controls"]}.pop()

    @abstractmethod
    def live_flags(self, component: str) -> Dict[str, List[str]]:
        """Every value of every flag the component runs with now."""

    def journal(self) -> List[dict]:
        path = self.host("/var/lib/cisfix/journal.jsonl")
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def values_of(argv: List[str]) -> Dict[str, List[str]]:
    values: Dict[str, List[str]] = {}
    for flag in parse(argv):
        values.setdefault(flag.name, []).extend((flag.value or "").split(","))
    return values


class K3s(Distribution):
    name, service, config = "k3s", "k3s", "/etc/rancher/k3s/config.yaml"
    plugins_added = frozenset({"DenyServiceExternalIPs", "EventRateLimit", "AlwaysPullImages"})

    def live_flags(self, component: str) -> Dict[str, List[str]]:
        return values_of(self.lab.running(component)[-1])  # the newest `Running <component>` line


class RKE2(Distribution):
    name, service, config = "rke2", "rke2-server", "/etc/rancher/rke2/config.yaml"
    # EventRateLimit needs a person on RKE2: its admission configuration (rke2-pss.yaml) is rke2's own.
    plugins_added = frozenset({"DenyServiceExternalIPs", "AlwaysPullImages"})

    def live_flags(self, component: str) -> Dict[str, List[str]]:
        pid = self.lab.status()[component].pid
        return values_of(self.lab.argv(pid)[1:])


@pytest.fixture(params=["k3s", "rke2"])
def node(request, make_k3s_lab, make_rke2_lab) -> Distribution:  # noqa: F811
    return K3s(make_k3s_lab()) if request.param == "k3s" else RKE2(make_rke2_lab())


def kube_bench_ids(benchmark: str) -> List[List[str]]:
    """kube-bench's checks of a benchmark: id, type, scored, automated or manual (tests/data/kubebench)."""
    listed = Path(__file__).parent / "data" / "kubebench" / f"{benchmark}.ids"
    return [line.split("\t") for line in listed.read_text().splitlines() if line and not line.startswith("#")]


def kube_bench_automated(benchmark: str) -> List[str]:
    return [row[0] for row in kube_bench_ids(benchmark) if row[3] == "automated"]


def restarts_gated(node: Distribution) -> List[dict]:
    return [r for r in node.journal() if r.get("type") == "gate" and r.get("phase") == "apply"]


def test_fix_level_1_is_one_restart_and_leaves_only_what_needs_a_person(node):
    before = node.audit()
    assert any(r["status"] == "FAIL" for r in before.values())
    starts = node.starts()
    done = node.cisfix("fix", "--level", "1", "--format", "json")
    assert done.returncode in (0, 1), done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert [r["component"] for r in restarts_gated(node)] == [node.service]
    assert node.starts() == starts + 1
    fixes = {r["id"]: r for r in report["results"]}
    after = node.audit()
    # Every check kube-bench's benchmark marks automated passes, or a person is told what to do.
    for check_id in kube_bench_automated(node.benchmark()):
        result = after[check_id]
        if result["status"] in ("PASS", "NOT_APPLICABLE"):
            continue
        if result["status"] == "WARN":  # the labs have no CNI files or kube-proxy: nothing to check
            assert result["reason"].startswith("nothing to check"), result
        elif result["status"] == "MANUAL":  # cluster objects, which a node audit cannot see
            assert result["reason"], result
        else:
            assert fixes[check_id]["fix"] == "SKIPPED" and fixes[check_id]["reason"], (check_id, result, fixes[check_id])
    fixed = [i for i, r in fixes.items() if r.get("fix") == "FIXED"]
    assert fixed and all(after[i]["status"] == "PASS" for i in fixed)
    # The live command lines carry the fixes; k3s's defaults stay where the fix only added to them.
    apiserver = node.live_flags("kube-apiserver")
    assert {"NodeRestriction", *node.plugins_added} <= set(apiserver["enable-admission-plugins"])
    assert apiserver["audit-log-maxage"] == ["30"]
    assert node.host(node.owned).exists()

    node.restart()  # the service regenerates everything from its configuration: the fixes stay
    again = node.audit()
    assert all(again[i]["status"] == "PASS" for i in fixed), [i for i in fixed if again[i]["status"] != "PASS"]


def test_a_bad_flag_is_rolled_back_with_the_components_own_error(node):
    files = node.configuration()
    done = node.cisfix("edit", node.config, "--component", "kube-apiserver", "--flag", "bogus-flag=1")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "unknown flag: --bogus-flag" in done.stdout + done.stderr
    assert "rolled back" in done.stdout
    assert not node.host("/var/lib/cisfix/HALT").exists()
    assert node.configuration() == files
    assert all(s.healthy for s in node.lab.status().values())
    assert "bogus-flag" not in node.live_flags("kube-apiserver")


def test_drift_of_a_manual_configuration_edit_is_corrected_once(node):
    config = node.host(node.config)
    maxage = next(i for i, r in node.audit().items() if r["title"] == "Audit logs are kept at least 30 days")
    config.write_text(config.read_text().rstrip("\n") + '\nkube-apiserver-arg:\n  - "audit-log-maxage=1"  # ours\n')
    node.restart()
    done = node.cisfix("fix", "--check", maxage)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"changed where the operator set it: {config}" in done.stdout  # in place, and said so
    assert '"audit-log-maxage=30"  # ours' in config.read_text()
    assert "audit-log-maxage" not in node.host(node.owned).read_text()  # the log's path and policy went there
    # A person sets it back in the configuration file and restarts the service.
    config.write_text(config.read_text().replace("audit-log-maxage=30", "audit-log-maxage=1"))
    node.restart()
    assert node.audit()[maxage]["status"] == "FAIL"
    drift = node.cisfix("drift", "-q")  # exit 1: other checks fail that cisfix was never asked to fix
    assert drift.returncode == 1, drift.stdout + drift.stderr
    corrected = [line for line in drift.stdout.splitlines() if line.startswith("CORRECTED")]
    assert len(corrected) == 1 and corrected[0].startswith(f"CORRECTED {maxage} (manual, {node.config}; found 1)")
    assert '"audit-log-maxage=30"  # ours' in config.read_text()
    assert node.live_flags("kube-apiserver")["audit-log-maxage"] == ["30"]
    again = node.cisfix("drift", "-q")
    assert again.returncode == 1 and "CORRECTED" not in again.stdout, again.stdout + again.stderr


def test_the_kube_bench_report_lists_kube_benchs_check_ids(node):
    done = node.cisfix("audit", "--format", "kube-bench")
    assert done.returncode in (0, 1), done.stderr
    report = json.loads(done.stdout)
    [benchmark] = {control["version"] for control in report["Controls"]}
    ids = [result["test_number"] for control in report["Controls"] for section in control["tests"]
           for result in section["results"]]
    assert benchmark.startswith(node.name) and sorted(ids) == sorted(row[0] for row in kube_bench_ids(benchmark))


def test_a_fix_killed_after_its_first_write_is_undone_by_the_next_run_and_the_service_restarted(node):
    files, starts = node.configuration(), node.starts()
    killed = node.cisfix("fix", "--level", "1", fault="after-replace")
    assert killed.returncode == -9, killed.stdout + killed.stderr
    assert node.configuration() != files  # cisfix's drop-in was written, the service not restarted
    done = node.cisfix("recover")
    assert done.returncode == 0, done.stdout + done.stderr
    assert node.configuration() == files
    recovered = [r for r in node.journal() if r.get("type") == "health" and r.get("phase") == "recovery"]
    assert [(r["component"], r["healthy"]) for r in recovered] == [(node.service, True)]
    assert node.starts() == starts + 1  # restarted once, from the configuration as it was
    assert all(s.healthy for s in node.lab.status().values())


def test_health_probes_the_components_the_node_has(node):
    done = node.cisfix("health", "--format", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    probed = json.loads(done.stdout)["components"]
    assert set(probed) == ({"kube-apiserver", "etcd"} if node.name == "rke2" else {"kube-apiserver"})


def test_a_user_posing_as_k3s_changes_no_verdict(make_k3s_lab, mallory, shared_dir):  # noqa: F811
    """Her process claims to be the k3s program, started after the real one: the live flags stay the
    real k3s's Running lines, and she is named once."""
    from hostile import as_mallory

    node = K3s(make_k3s_lab())
    before = node.cisfix("audit", "--format", "json", "--check", "1.2.15", "--check", "1.2.17")
    idle = shared_dir / "idle.py"
    idle.write_text("import time\ntime.sleep(300)\n")
    os.chmod(idle, 0o644)
    launcher = node.lab.node_config()["components"]["k3s"]["process"]
    her = as_mallory(mallory, "import os, sys; os.execv(sys.executable, sys.argv[1:])", launcher, str(idle), "server",
                     background=True)
    try:
        node.lab.wait_for(lambda: Path(f"/proc/{her.pid}/cmdline").read_bytes().split(b"\0")[0] == launcher.encode(),
                          what="her process claiming to be k3s")
        after = node.cisfix("audit", "--format", "json", "--check", "1.2.15", "--check", "1.2.17")
    finally:
        her.kill()
        her.wait()
    verdicts = lambda done: {r["id"]: (r["status"], r["evidence"]) for r in json.loads(done.stdout)["results"]}  # noqa: E731
    assert verdicts(after) == verdicts(before)
    named = [line for line in after.stderr.splitlines() if f"pid {her.pid} " in line]
    assert named and all(line.startswith(f"cisfix: ignored pid {her.pid} posing as ") for line in named), after.stderr
    assert len(named) == len(set(named))  # once each
