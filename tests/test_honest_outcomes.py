"""Odd nodes and bad configuration get a true answer: a root that is not a node, a broken node file and
an invalid checks.d document are errors (exit 2) naming the file, never a green run."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import APISERVER, KUBELET_CONFIG

CONTROLLER_MANAGER = "/etc/kubernetes/manifests/kube-controller-manager.yaml"


def run(root, *args):
    return subprocess.run([sys.executable, "-m", "cisfix", "--root", str(root), *args],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)


def tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else None


# ---- not a node ----

@pytest.mark.parametrize("command", [
    ("audit",), ("audit", "--format", "prometheus"), ("fix",), ("fix", "--dry-run"), ("recover",),
    ("rollback", "--last"), ("history",), ("resume",), ("edit", APISERVER, "--flag", "profiling=false")])
@pytest.mark.parametrize("shape", ["empty", "missing", "unrelated"])
def test_a_root_that_is_not_a_node_is_refused_and_left_untouched(tmp_path, command, shape):
    root = tmp_path / "typo"
    if shape != "missing":
        root.mkdir()
    if shape == "unrelated":  # a directory with files, but no manifests and no kubelet config
        (root / "etc").mkdir()
        (root / "etc/hostname").write_text("box\n")
    before = tree(root)
    result = run(root, *command)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"{root} does not look like a Kubernetes node" in lines[0]
    assert result.stdout == ""
    assert tree(root) == before  # no lock, no state folder


def test_a_kubelet_only_node_is_a_node(node, cisfix):
    for path in node.root.joinpath("etc/kubernetes/manifests").iterdir():
        path.unlink()
    result = cisfix("history")
    assert result.returncode == 0, result.stderr


# ---- broken node files ----

def audit_json(cisfix, *args):
    result = cisfix("audit", "--format", "json", *args)
    return result, json.loads(result.stdout) if result.stdout else None


def test_a_manifest_with_invalid_yaml_makes_its_checks_errors_and_the_audit_exit_2(node, cisfix):
    text = node.read(APISERVER).decode()
    node.write(APISERVER, text.replace("  containers:\n", "  containers:\n   - : [\n", 1).encode())
    result, report = audit_json(cisfix)
    assert result.returncode == 2, result.stderr
    errors = {r["id"]: r["reason"] for r in report["results"] if r["status"] == "ERROR"}
    assert "1.2.15" in errors  # --profiling of the API server
    assert all(f"{node.path(APISERVER)}:" in reason and "invalid YAML" in reason for reason in errors.values())
    line = int(errors["1.2.15"].split(f"{node.path(APISERVER)}:")[1].split(":")[0])
    assert 1 < line <= len(text.splitlines()) + 1
    assert report["summary"]["PASS"] > 10  # the other components were audited
    chosen = json.loads(cisfix("benchmarks", "--format", "json").stdout)["node"]["benchmark"]
    assert chosen and chosen.startswith("cis-")  # from the other manifests' image tags
    assert not any(r["status"] == "ERROR" for r in report["results"] if r["id"].startswith("1.3."))


def test_a_kubelet_config_that_cannot_be_read_makes_kubelet_checks_errors(node, cisfix):
    node.write(KUBELET_CONFIG, b"apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
                               b"authentication: {anonymous: {enabled: false}\n")
    result, report = audit_json(cisfix, "--check", "4.2.1")
    assert result.returncode == 2
    [only] = report["results"]
    assert only["status"] == "ERROR" and f"{node.path(KUBELET_CONFIG)}:" in only["reason"], only


def test_without_any_version_evidence_the_audit_says_why_no_benchmark(node, cisfix):
    for path in node.root.joinpath("etc/kubernetes/manifests").iterdir():
        path.write_text(path.read_text().replace("image:", "imagex:"))
    result = cisfix("audit")
    assert result.returncode == 2
    assert "Kubernetes version is unknown" in result.stderr and "--benchmark" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert cisfix("audit", "--benchmark", "cis-1.11", "--check", "1.2.15").returncode in (0, 1)


# ---- bad configuration stops changes ----

BROKEN_CHECK = "apiVersion: cisfix/v1\nkind: Check\nid: ACME-1\ntitle: broken\nbogus: 1\n"


def test_an_invalid_checks_d_document_stops_fix_and_edit_before_any_change(node, cisfix, tmp_path):
    checks = tmp_path / "checks.d"
    checks.mkdir()
    (checks / "broken.yaml").write_text(BROKEN_CHECK)
    before = node.snapshot()
    for command in (("fix",), ("edit", APISERVER, "--flag", "profiling=false")):
        result = cisfix("--checks-dir", str(checks), *command)
        assert result.returncode == 2, result.stderr
        assert f"{checks / 'broken.yaml'}:" in result.stderr and "refusing to change" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert node.snapshot() == before
        assert not node.state_dir.exists()
    audit = cisfix("--checks-dir", str(checks), "audit", "--format", "json")
    assert audit.returncode == 2 and json.loads(audit.stdout)["results"]  # reports what it could


def test_a_plugin_module_that_raises_is_one_line_naming_its_file(node, cisfix, tmp_path):
    checks = tmp_path / "checks.d"
    checks.mkdir()
    (checks / "acme.py").write_text("import os\n\nraise RuntimeError('half-written plugin')\n")
    for command in (("audit",), ("fix",)):
        result = cisfix("--checks-dir", str(checks), *command)
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [
            f"cisfix: error: {checks / 'acme.py'}:3: plugin failed to load: RuntimeError: half-written plugin"]


def test_an_invalid_node_config_stops_fix(node, cisfix):
    node.write("/etc/cisfix/config.yaml", b"apiVersion: cisfix/v1\nkind: NodeConfig\noffline: maybe\n")
    before = node.snapshot()
    result = cisfix("fix")
    assert result.returncode == 2 and "config.yaml:3" in result.stderr
    assert node.snapshot() == before
