"""The fleet playbook stops the line (tests/fleet_fixtures.py: the three lab nodes): at a control-plane
node whose fix was rolled back or whose cisfix crashed, and before any node while another control-plane
node's API server is not ready; only exit codes 0 and 1 are runs that ended well. Split from
test_fleet_ansible.py so that `--dist loadfile` runs the two halves on two workers."""
from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from cisfix.lab.control import find_process
from fleet_fixtures import NODES, REPO, output, page_text, recap

FAILING_CHECKS = REPO / "tests/data/gate"  # TEST-8 sets a flag the API server rejects


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
