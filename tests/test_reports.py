"""Audit reports: text for people (80 columns), JSON, JUnit for CI, Prometheus for node_exporter."""
from __future__ import annotations

import json
import os
import re
import stat
import xml.etree.ElementTree as ET

import pytest

from prometheus import parse_prometheus, value


def test_text_report_is_grouped_by_section_and_fits_80_columns(node, cisfix):
    out = cisfix("audit").stdout
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80
    headers = [line for line in lines if line.startswith("== ") and "checks:" not in line]
    assert "== 1.2 ==" in headers and "== 4.2 ==" in headers
    assert re.match(r"== \d+ checks: .*PASS.*FAIL", lines[-1])


def test_junit_loads_and_counts_failures(node, cisfix):
    result = cisfix("audit", "--format", "junit")
    report = json.loads(cisfix("audit", "--format", "json").stdout)
    root = ET.fromstring(result.stdout)
    assert root.tag == "testsuites"
    assert int(root.get("tests")) == len(report["results"])
    assert int(root.get("failures")) == report["summary"]["FAIL"]
    cases = root.findall("./testsuite/testcase")
    failed = [c for c in cases if c.find("failure") is not None]
    assert len(failed) == report["summary"]["FAIL"]
    assert all(c.find("failure").get("message") for c in failed)


def test_prometheus_output_file_is_atomic_and_parses(node, cisfix, tmp_path):
    collector = tmp_path / "textfile"
    collector.mkdir()
    target = collector / "cisfix.prom"
    result = cisfix("audit", "--format", "prometheus", "--output", str(target))
    assert result.returncode in (0, 1) and result.stdout == ""
    samples = parse_prometheus(target.read_text())
    assert value(samples, "cisfix_check_status", id="1.2.16", status="FAIL", level="1", benchmark="cis-1.11",
                 automated="true", component="kube-apiserver") == 1
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert os.listdir(collector) == ["cisfix.prom"]


@pytest.mark.skipif(not any(os.access(os.path.join(d, "promtool"), os.X_OK) for d in os.environ["PATH"].split(":")),
                    reason="promtool is not installed; the parser test above covers the format")
def test_promtool_accepts_the_metrics(node, cisfix, tmp_path):
    import subprocess

    target = tmp_path / "cisfix.prom"
    cisfix("audit", "--format", "prometheus", "--output", str(target))
    check = subprocess.run(["promtool", "check", "metrics"], input=target.read_text(), capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
