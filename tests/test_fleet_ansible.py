"""The Ansible playbook deploy/ansible/cisfix.yml run for real against three lab nodes on this machine
(local connection, one cisfix_root each): cp1 and cp2 form the control plane, w1 is the worker.

Each run audits and fixes one API server flag (1.2.15) with a short stability window, so a run takes
tens of seconds; the run that checks the fleet report audits the whole benchmark."""
from __future__ import annotations

import hashlib
import html.parser
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

from cisfix.lab.control import find_process

REPO = Path(__file__).resolve().parents[1]
PLAYBOOK = REPO / "deploy/ansible/cisfix.yml"
FAILING_CHECKS = REPO / "tests/data/gate"  # TEST-8 sets a flag the API server rejects
GATE = "--timeout 60 --stability-window 2"
CHECK = "--check 1.2.15"  # API server profiling off: one restart of the API server
NODES = ("cp1", "cp2", "w1")


class Fleet:
    def __init__(self, labs: Dict[str, object], work: Path, pyz: Path, shiv_root: Path) -> None:
        self.labs, self.work, self.pyz, self.shiv_root = labs, work, pyz, shiv_root
        self.report_dir = work / "report"
        self.all_vars = {"cisfix_args": CHECK, "cisfix_fix_args": GATE}
        self.host_vars: Dict[str, dict] = {name: {} for name in labs}

    def inventory(self) -> Path:
        def host(name: str) -> dict:
            return {"cisfix_root": str(self.labs[name].root), "cisfix_install_dir": str(self.work / f"bin-{name}"),
                    **self.host_vars[name]}
        inventory = {"all": {
            "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                     "cisfix_pyz": str(self.pyz), "cisfix_report_dir": str(self.report_dir), **self.all_vars},
            "children": {"control_plane": {"hosts": {"cp1": host("cp1"), "cp2": host("cp2")}},
                         "workers": {"hosts": {"w1": host("w1")}}}}}
        path = self.work / "inventory.yml"  # JSON is YAML
        path.write_text(json.dumps(inventory, indent=2))
        return path

    def play(self, *args: str) -> subprocess.CompletedProcess:
        env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_PIPELINING="1", ANSIBLE_HOME=str(self.work / "ansible"),
                   ANSIBLE_LOCAL_TEMP=str(self.work / "ansible/tmp"), ANSIBLE_REMOTE_TEMP=str(self.work / "ansible/tmp"),
                   ANSIBLE_RETRY_FILES_ENABLED="0", LC_ALL="C.UTF-8", SHIV_ROOT=str(self.shiv_root))
        playbook = Path(sys.executable).with_name("ansible-playbook")
        return subprocess.run([str(playbook), "-i", str(self.inventory()), str(PLAYBOOK), *args],
                              capture_output=True, text=True, env=env, timeout=600, cwd=self.work)

    def journal(self, name: str) -> List[dict]:
        path = self.labs[name].root / "var/lib/cisfix/journal.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def snapshot(self) -> Dict[str, str]:
        """sha256 of every file a cisfix run could change on the nodes: etc/ (manifests, PKI, kubeconfigs),
        the kubelet's files, cisfix's state."""
        digests = {}
        for name, lab in self.labs.items():
            for top in ("etc", "var/lib/kubelet", "var/lib/cisfix"):
                for path in sorted((lab.root / top).rglob("*")):
                    if path.is_file():
                        digests[f"{name}:{path.relative_to(lab.root)}"] = hashlib.sha256(path.read_bytes()).hexdigest()
        return digests


def recap(result: subprocess.CompletedProcess) -> Dict[str, Dict[str, int]]:
    """PLAY RECAP lines as {host: {"ok": n, "changed": n, "failed": n, ...}}."""
    lines = result.stdout.split("PLAY RECAP", 1)[1].splitlines()[1:]
    return {line.split()[0]: {k: int(v) for k, v in (field.split("=") for field in line.split(":", 1)[1].split())}
            for line in lines if ":" in line}


def task_outcomes(result: subprocess.CompletedProcess, task: str) -> Dict[str, str]:
    """{host: "ok" | "changed" | ...} of every run of the task named `task` in the play's output."""
    outcomes = {}
    for block in result.stdout.split("TASK [")[1:]:
        if block.startswith(task + "]"):
            for line in block.splitlines()[1:]:
                status, _, rest = line.partition(": [")
                if rest:
                    outcomes[rest.split("]")[0]] = status
    return outcomes


def output(result: subprocess.CompletedProcess) -> str:
    return result.stdout[-6000:] + result.stderr[-3000:]


def page_text(path: Path) -> str:
    """The text a person reads on an HTML page (its markup and inline script and style left out)."""
    class Text(html.parser.HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.parts: List[str] = []
            self.hidden = 0

        def handle_starttag(self, tag, attrs) -> None:
            self.hidden += tag in ("script", "style")

        def handle_endtag(self, tag) -> None:
            self.hidden -= tag in ("script", "style")

        def handle_data(self, data) -> None:
            if not self.hidden:
                self.parts.append(data)

    parser = Text()
    parser.feed(path.read_text(encoding="utf-8"))
    return " ".join(" ".join(parser.parts).split())


@pytest.fixture(scope="session")
def shiv_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("shiv")


@pytest.fixture
def fleet(make_lab, pyz, shiv_root, tmp_path) -> Fleet:
    labs = {name: make_lab(name) for name in NODES}
    for name, lab in labs.items():  # each node's own name, as a real node's /etc/hostname gives it
        (lab.root / "etc/hostname").write_text(f"{name}\n")
    return Fleet(labs, tmp_path, pyz, shiv_root)


def test_control_plane_nodes_are_fixed_one_at_a_time_then_workers(fleet):
    fleet.all_vars = {"cisfix_args": "", "cisfix_fix_args": f"{GATE} {CHECK}"}  # audit everything, fix one
    result = fleet.play("-e", "cisfix_mode=fix")
    assert result.returncode == 0, output(result)
    assert {h: r["changed"] > 0 for h, r in recap(result).items()} == {"cp1": True, "cp2": True, "w1": True}

    spans = {}
    for name in NODES:
        times = [record["time"] for record in fleet.journal(name)]
        assert times, f"{name} was not fixed"
        spans[name] = (min(times), max(times))
    assert spans["cp1"][1] < spans["cp2"][0], spans  # cp2 began after cp1's last journal record
    assert spans["cp2"][1] < spans["w1"][0], spans  # the worker after the whole control plane
    for lab in fleet.labs.values():
        assert "- --profiling=false\n" in lab.manifest("kube-apiserver").read_text()

    report = json.loads((fleet.report_dir / "fleet.json").read_text())
    assert list(report["nodes"]) == list(NODES)
    assert all(node["error"] is None and node["audit"]["FAIL"] > 0 for node in report["nodes"].values())
    assert len(report["checks"]) > 100 and all(set(c["nodes"]) == set(NODES) for c in report["checks"].values())
    assert {n: c for n, c in report["checks"]["1.2.15"]["nodes"].items()} == {
        name: {"status": "PASS", "fix": "FIXED"} for name in NODES}
    table = (fleet.report_dir / "fleet.txt").read_text().splitlines()
    assert table[0].split()[:4] == ["CHECK", *NODES]
    rows = [line.split() for line in table[1:] if line.strip() and not line.startswith(NODES)]
    fixed_row = next(r for r in rows if r[0] == "1.2.15")
    assert fixed_row[1:4] == ["FIXED"] * 3
    first_pass = next(i for i, r in enumerate(rows) if r[1:4] == ["PASS"] * 3)
    assert all("PASS" not in r[1:4] for r in rows[:first_pass])  # failures first
    assert any(line.startswith("w1: ") and "fix: 1 FIXED" in line for line in table)

    # Each node's audit says what it judged against, the build included: the archive's commit.
    version = subprocess.run([sys.executable, str(fleet.pyz), "--version"], capture_output=True, text=True,
                             env=dict(os.environ, SHIV_ROOT=str(fleet.shiv_root))).stdout
    for name in NODES:
        judged = json.loads((fleet.report_dir / f"nodes/{name}.audit.json").read_text())["judged_against"]
        assert judged["node"]["name"] == name and f"(commit {judged['cisfix']['commit']}," in version, (judged, version)

    # The fleet page, rendered on the controller from the node reports written after each node's fix.
    for name in NODES:
        node_report = json.loads((fleet.report_dir / f"nodes/{name}.report.json").read_text())
        assert node_report["node"]["name"] == name
        check = next(c for c in node_report["checks"] if c["id"] == "1.2.15")
        assert check["status"] == "PASS" and [c["state"] for c in check["changes"]] == ["committed"], check
    text = page_text(fleet.report_dir / "fleet.html")
    assert all(name in text.split() for name in NODES), text[:2000]


def test_check_mode_and_drift_change_no_byte_and_report_would_be_changes(fleet):
    # w1 is compliant already: it must be reported ok, the others changed.
    fixed = subprocess.run([sys.executable, "-m", "cisfix", "--root", str(fleet.labs["w1"].root), "fix",
                            *GATE.split(), *CHECK.split()], capture_output=True, text=True)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    before = fleet.snapshot()

    for mode in (("-e", "cisfix_mode=fix", "--check", "--diff"), ("-e", "cisfix_mode=drift")):
        result = fleet.play(*mode)
        assert result.returncode == 0, output(result)
        assert fleet.snapshot() == before, mode
        assert task_outcomes(result, "cisfix : cisfix | what fix would change") == {
            "cp1": "changed", "cp2": "changed", "w1": "ok"}, mode
        assert "+    - --profiling=false" in result.stdout  # the would-be diff
        fix_reports = {name: json.loads((fleet.report_dir / f"nodes/{name}.fix.json").read_text()) for name in NODES}
        assert {n: r["results"][0]["fix"] for n, r in fix_reports.items()} == {
            "cp1": "WOULD_FIX", "cp2": "WOULD_FIX", "w1": "ALREADY_COMPLIANT"}, mode
        if "--check" in mode:  # nothing else changed either: not even the pyz was installed
            assert {h: r["changed"] for h, r in recap(result).items()} == {"cp1": 1, "cp2": 1, "w1": 0}
            assert not any((fleet.work / f"bin-{name}").exists() for name in NODES)


def test_a_rolled_back_control_plane_node_stops_the_line(fleet):
    # Node 2 of 3: cp1 is fixed, cp2's change is one its API server rejects, w1 must not be touched.
    fleet.host_vars["cp2"] = {"cisfix_args": f"--checks-dir {FAILING_CHECKS} --check TEST-8"}
    manifest = fleet.labs["cp2"].manifest("kube-apiserver").read_bytes()

    result = fleet.play("-e", "cisfix_mode=fix")
    assert result.returncode != 0
    # The gate sees the crash in the logs (crash-looping) or live (restarted again): both name its error.
    assert ("cisfix stopped the line on cp2: exit 3 (a change failed and was rolled back; the component is "
            "healthy again): TEST-8 REMEDIATION_FAILED_ROLLED_BACK: kube-apiserver ") in result.stdout, output(result)
    assert "unknown flag: --no-such-flag" in result.stdout, output(result)
    assert fleet.journal("cp1") and fleet.journal("cp2") and fleet.journal("w1") == []
    assert fleet.labs["cp2"].manifest("kube-apiserver").read_bytes() == manifest  # rolled back
    assert "PLAY [cisfix | fix the workers in batches]" not in result.stdout
    assert recap(result)["w1"]["failed"] == 0 and recap(result)["cp2"]["failed"] == 1
    # The fleet report is written as the line stops: the failed check first; the worker only audited.
    table = (fleet.report_dir / "fleet.txt").read_text().splitlines()
    assert table[1].split()[:4] == ["TEST-8", "-", "REMEDIATION_FAILED_ROLLED_BACK", "-"]
    nodes = json.loads((fleet.report_dir / "fleet.json").read_text())["nodes"]
    assert nodes["cp1"]["fix"] == {"FIXED": 1} and nodes["cp2"]["fix"] == {"REMEDIATION_FAILED_ROLLED_BACK": 1}
    assert nodes["w1"]["fix"] is None and nodes["w1"]["audit"]["FAIL"] == 1
    # So is the fleet page: cp2's report written after its rollback, w1's after its audit.
    assert all(name in page_text(fleet.report_dir / "fleet.html").split() for name in NODES)
    cp2 = json.loads((fleet.report_dir / "nodes/cp2.report.json").read_text())
    test_8 = next(c for c in cp2["checks"] if c["id"] == "TEST-8")
    assert [c["state"] for c in test_8["changes"]] == ["rolled-back"], test_8


def test_an_unready_api_server_on_another_control_plane_node_stops_the_play_before_it_starts(fleet):
    cp2 = fleet.labs["cp2"]
    cp2.manifest("kube-apiserver").rename(cp2.root / "etc/kubernetes/kube-apiserver.parked")
    launcher = str(cp2.layout.launcher("kube-apiserver"))
    cp2.wait_for(lambda: find_process(launcher) is None, 30, "cp2's API server to stop")

    result = fleet.play("-e", "cisfix_mode=fix")
    assert result.returncode != 0
    assert "cisfix stopped before touching cp1: the control plane is not healthy: cp2: kube-apiserver: UNHEALTHY" \
        in result.stdout, output(result)
    assert all(fleet.journal(name) == [] for name in NODES)


def test_a_crashing_cisfix_stops_the_line_although_a_crash_is_no_failed_check(fleet):
    # cp2's cisfix crashes in `fix` with the internal-error exit code (70); every other command is the
    # real one. cp1 was fixed; the crash must stop the line before any worker, like a failed fix does.
    crashing = fleet.work / "python-crashing-in-fix"
    crashing.write_text(
        "#!/bin/sh\n"
        'for arg; do [ "$arg" = fix ] && { echo "cisfix: internal error: ZeroDivisionError (a bug)" >&2; exit 70; }; done\n'
        f'exec {sys.executable} "$@"\n')
    crashing.chmod(0o755)
    fleet.host_vars["cp2"] = {"cisfix_python": str(crashing)}

    result = fleet.play("-e", "cisfix_mode=fix")
    assert result.returncode != 0
    assert ("cisfix stopped the line on cp2: exit 70 (cisfix failed with an internal error: the node's state "
            "is unknown): cisfix: internal error: ZeroDivisionError (a bug)") in result.stdout, output(result)
    assert fleet.journal("cp1") and fleet.journal("w1") == []
    assert "PLAY [cisfix | fix the workers in batches]" not in result.stdout
    assert recap(result)["cp2"]["failed"] == 1 and recap(result)["w1"]["failed"] == 0


@pytest.mark.parametrize("rc,ran", [(0, True), (1, True), (2, False), (3, False), (4, False), (5, False),
                                    (6, False), (7, False), (70, False), (127, False), (None, False)])
def test_only_exit_0_and_1_are_runs_that_ended_well(rc, ran):
    spec = importlib.util.spec_from_file_location("cisfix_fleet", REPO / "deploy/ansible/roles/cisfix/filter_plugins/cisfix_fleet.py")
    filters = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(filters)
    assert filters.cisfix_ran({"rc": rc}) is ran  # the audit task's failed_when and the fix's stop
    assert filters.cisfix_unaudited({"n1": {"cisfix_audit": {"rc": rc}}}, ["n1"]) == ([] if ran else ["n1"])
