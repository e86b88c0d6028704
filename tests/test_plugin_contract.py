"""The plugin contract checks itself: a misspelled hook, two report formats or benchmarks of one name
are errors naming the plugins; report renderers receive the node's info."""
from __future__ import annotations

import json
from pathlib import Path

import pytest


def _plugin(tmp_path: Path, name: str, text: str) -> Path:
    folder = tmp_path / f"checks-{name}"
    folder.mkdir()
    (folder / f"{name}.py").write_text("import cisfix\n\n" + text)
    return folder


def test_a_misspelled_hook_is_an_error_naming_the_plugin(node, cisfix, tmp_path):
    folder = _plugin(tmp_path, "typo", "@cisfix.hookimpl\ndef cisfix_register_check(node_info):\n    return []\n")
    result = cisfix("--checks-dir", str(folder), "audit")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert str(folder / "typo.py") in line and "cisfix_register_check" in line and "not a cisfix hook" in line


@pytest.mark.parametrize("hook, make", [
    ("cisfix_register_report_formats", 'cisfix.ReportFormat("json", lambda results, summary: "", "mine")'),
    ("cisfix_register_benchmarks", 'cisfix.Benchmark("cis-1.11", "mine", ("1.31",))'),
])
def test_two_registrations_of_one_name_are_an_error_naming_both(node, cisfix, tmp_path, hook, make):
    folder = _plugin(tmp_path, "twice", f"@cisfix.hookimpl\ndef {hook}():\n    return [{make}]\n")
    result = cisfix("--checks-dir", str(folder), "audit", "--format", "json")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "registered twice" in line and str(folder / "twice.py") in line
    assert "built-in" in line


def test_report_renderers_receive_the_node_info(node, cisfix, tmp_path):
    folder = _plugin(tmp_path, "fmt", "@cisfix.hookimpl\ndef cisfix_register_report_formats():\n"
                     "    return [cisfix.ReportFormat('version', lambda results, summary, node_info: "
                     "f'{node_info.distribution} {node_info.version}\\n')]\n")
    result = cisfix("--checks-dir", str(folder), "audit", "--format", "version")
    assert result.stdout == "kubeadm 1.31.2\n", result.stderr
    report = json.loads(cisfix("audit", "--format", "kube-bench").stdout)
    assert {c["detected_version"] for c in report["Controls"]} == {"1.31"}
