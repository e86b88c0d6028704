"""The playbook's filters, on reports made here (the playbook runs them in tests/test_fleet_ansible.py):
a node that could not be audited is named and stops fix mode; a failure names the node and the reason
even when cisfix printed no JSON; the table puts the worst cells first."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

FILTERS = Path(__file__).resolve().parents[1] / "deploy/ansible/roles/cisfix/filter_plugins/cisfix_fleet.py"
spec = importlib.util.spec_from_file_location("cisfix_fleet", FILTERS)
fleet = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fleet)


def write(report_dir: Path, name: str, report: dict) -> None:
    (report_dir / "nodes").mkdir(parents=True, exist_ok=True)
    (report_dir / "nodes" / name).write_text(json.dumps(report))


def result(check_id: str, status: str, fix: str = None) -> dict:
    return {"id": check_id, "title": f"check {check_id}", "status": status, **({"fix": fix} if fix else {})}


def test_nodes_without_a_finished_audit_are_named():
    hostvars = {"a": {"cisfix_audit": {"rc": 1}}, "b": {"cisfix_audit": {"rc": 2}}, "c": {}}
    assert fleet.cisfix_unaudited(hostvars, ["a", "b", "c", "d", "a"]) == ["b", "c", "d"]


def test_a_failure_names_the_node_and_each_failed_check_or_the_last_error_line():
    report = {"results": [result("1.2.15", "PASS", "FIXED"),
                          {**result("TEST-8", "FAIL", "REMEDIATION_FAILED_ROLLED_BACK"), "reason": "crash-looping"}]}
    assert fleet.cisfix_failure({"rc": 3, "stdout": json.dumps(report), "stderr": ""}, "cp2") == (
        "cisfix stopped the line on cp2: exit 3 (a change failed and was rolled back; the component is healthy "
        "again): TEST-8 REMEDIATION_FAILED_ROLLED_BACK: crash-looping")
    locked = {"rc": 5, "stdout": "", "stderr": "cisfix: error: another run holds the lock\n"}
    assert fleet.cisfix_failure(locked, "w7") == ("cisfix stopped the line on w7: exit 5 (another cisfix run holds "
                                                  "the lock): cisfix: error: another run holds the lock")
    assert fleet.cisfix_changed({"stdout": json.dumps(report)}) and not fleet.cisfix_changed(locked)


def test_fleet_report_merges_audits_and_fixes_and_lists_unaudited_nodes(tmp_path):
    write(tmp_path, "a.audit.json", {"summary": {"PASS": 1, "FAIL": 2},
                                     "results": [result("1.1.1", "PASS"), result("1.2.9", "FAIL"), result("1.2.15", "FAIL")]})
    write(tmp_path, "a.fix.json", {"summary": {"FIXED": 1}, "restarts": {"kube-apiserver": 1},
                                   "results": [result("1.2.15", "PASS", "FIXED")]})
    judged = {"node": {"name": "b", "kubernetes_version": "1.32.1"}, "benchmark": {"name": "cis-1.12", "level": 1},
              "cisfix": {"version": "0.1.0", "commit": "0123456789ab"}}
    write(tmp_path, "b.audit.json", {"judged_against": judged, "summary": {"PASS": 2, "FAIL": 1, "ERROR": 0},
                                     "results": [result("1.1.1", "PASS"), result("1.2.9", "PASS"), result("1.2.15", "FAIL")]})
    report = fleet.cisfix_fleet_report(str(tmp_path), ["a", "b", "c"])

    assert report["nodes"]["a"] == {"audit": {"PASS": 1, "FAIL": 2}, "fix": {"FIXED": 1},
                                    "restarts": {"kube-apiserver": 1}, "error": None, "judged_against": None}
    assert report["nodes"]["b"]["judged_against"] == judged
    assert report["nodes"]["c"]["error"] == "no audit report (the node failed or was not reached)"
    assert report["checks"]["1.2.15"]["nodes"] == {"a": {"status": "PASS", "fix": "FIXED"}, "b": {"status": "FAIL"}}

    lines = fleet.cisfix_fleet_table(report).splitlines()
    assert [line.split()[:4] for line in lines[:4]] == [
        ["CHECK", "a", "b", "c"], ["1.2.9", "FAIL", "PASS", "-"], ["1.2.15", "FIXED", "FAIL", "-"],
        ["1.1.1", "PASS", "PASS", "-"]]
    assert lines[-3:] == ["a: 1 PASS, 2 FAIL; fix: 1 FIXED",
                          "b: 2 PASS, 1 FAIL; against cis-1.12 level 1, Kubernetes 1.32.1, cisfix 0.1.0 (commit 0123456789ab)",
                          "c: not audited; ERROR: no audit report (the node failed or was not reached)"]


def test_node_reports_take_the_audit_options_report_knows_and_cover_every_check():
    options = "--check 1.2.15 --level 1 --node-type=master --checks-dir '/etc/my checks' --disable=1.1.1 -p no:x"
    assert fleet.cisfix_report_options(options) == "--level 1 --checks-dir '/etc/my checks' --disable=1.1.1 -p no:x"
    assert fleet.cisfix_report_options("") == "" and fleet.cisfix_report_options("--check TEST-8") == ""


def test_fleet_page_is_made_from_the_node_reports_present_in_inventory_order(tmp_path):
    for name in ("w1.report.json", "cp1.report.json", "cp1.audit.json"):
        write(tmp_path, name, {})
    assert fleet.cisfix_node_reports(str(tmp_path), ["cp1", "cp2", "w1", "cp1"]) == [
        str(tmp_path / "nodes/cp1.report.json"), str(tmp_path / "nodes/w1.report.json")]
