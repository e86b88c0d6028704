"""The CIS plugin's catalog: both benchmarks registered, every recommendation present once, version
differences as data, and the kube-bench report format."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from cisfix_cis.catalog import BENCHMARKS, SPECS, specs_for
from cisfix_cis.checks import checks_for

# kube-bench's cfg/cis-1.11, cfg/cis-1.12 and cfg/cis-2.0: checks per part (master, etcd, controlplane, node, policies).
EXPECTED_COUNTS = {"cis-1.11": {"1": 60, "2": 7, "3": 5, "4": 26, "5": 35},
                   "cis-2.0": {"1": 60, "2": 7, "3": 5, "4": 25, "5": 34},
                   "cis-1.12": {"1": 60, "2": 7, "3": 5, "4": 25, "5": 34}}


@pytest.mark.parametrize("benchmark", sorted(BENCHMARKS))
def test_every_recommendation_once(benchmark):
    checks = checks_for(benchmark)
    ids = [c.id for c in checks]
    assert len(ids) == len(set(ids))
    assert dict(Counter(i.split(".")[0] for i in ids)) == EXPECTED_COUNTS[benchmark]
    for check in checks:
        assert check.benchmark == benchmark and check.title and check.level in (1, 2)
        if not check.automated:
            assert check.remediation, f"{check.id}: a manual check needs guidance"


def test_shared_checks_defined_once_with_differences_as_data():
    assert len(SPECS) < len(specs_for("cis-1.11")) + len(specs_for("cis-1.12"))
    old, new = specs_for("cis-1.11"), specs_for("cis-1.12")
    assert old["1.2.30"].scored is True and new["1.2.30"].scored is True  # as kube-bench's cfg/cis-1.11 scores it
    assert "4.2.15" in old and "4.2.15" not in new
    assert old["5.2.10"].title == new["5.2.9"].title  # renumbered, one entry
    assert old["1.2.29"].audit.allowed != new["1.2.29"].audit.allowed


def test_benchmark_chosen_by_version(node):
    assert node.run("audit", "--format", "json").json()["results"][0]["id"] == "1.1.1"
    listed = node.run("audit", "--format", "kube-bench").json()
    assert listed["Controls"][0]["version"] == "cis-1.11"  # the test node runs 1.31


def test_kube_bench_report_shape(node):
    report = node.run("audit", "--format", "kube-bench").json()
    assert [c["node_type"] for c in report["Controls"]] == ["master", "etcd", "controlplane", "node", "policies"]
    totals = {k: 0 for k in ("total_pass", "total_fail", "total_warn", "total_info")}
    for control in report["Controls"]:
        for key in totals:
            totals[key] += control[key]
        for group in control["tests"]:
            assert group["section"] and group["desc"]
            for result in group["results"]:
                assert {"test_number", "test_desc", "audit", "status", "remediation", "scored",
                        "expected_result", "actual_value"} <= set(result)
                assert result["status"] in ("PASS", "FAIL", "WARN", "INFO")
                if not result["scored"]:
                    assert result["status"] != "FAIL"
    assert report["Totals"] == totals
    json.dumps(report)
