"""The fleet playbook's runs that end well (tests/fleet_fixtures.py: the three lab nodes): fix mode fixes
the control plane one node at a time, then the workers, and reports the fleet; check mode and drift
mode change no byte and report what fix would change. The runs that stop the line are in
test_fleet_ansible_stops.py."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from fleet_fixtures import CHECK, GATE, NODES, output, page_text, recap, task_outcomes


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
