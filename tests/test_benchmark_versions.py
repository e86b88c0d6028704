"""Which benchmark a node is audited against, by its Kubernetes version (kube-bench's mapping, with CIS
v2.0 for 1.34-1.35), and a node newer than every benchmark: the newest one, with a warning that every
report format carries. Offline trees whose manifests name the version in their image tags."""
from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import pytest

from cisfix.testing import TestNode, build_node
from cisfix_cis.catalog import specs_for

MANIFESTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")


def node_at(tmp_path, version: str) -> TestNode:
    """The test kit's kubeadm node with its control-plane images retagged to `version`."""
    node = build_node(tmp_path / f"node-{version}")
    for name in MANIFESTS:
        path = f"/etc/kubernetes/manifests/{name}.yaml"
        node.write(path, re.sub(rb":v1\.31\.2", f":v{version}".encode(), node.read(path)))
    return node


@pytest.mark.parametrize("version, benchmark", [
    ("1.29.0", "cis-1.11"), ("1.31.2", "cis-1.11"), ("1.32.1", "cis-1.12"), ("1.33.0", "cis-1.12"),
    ("1.34.0", "cis-2.0"), ("1.35.2", "cis-2.0")])
def test_audit_picks_the_benchmark_of_the_version(tmp_path, version, benchmark):
    result = node_at(tmp_path, version).run("audit", "--format", "kube-bench")
    assert result.exit_code in (0, 1), result.stderr
    report = result.json()
    assert {c["version"] for c in report["Controls"]} == {benchmark}
    assert "Warnings" not in report


def test_cis_2_0_is_1_12_with_new_remediation_for_2_2_and_1_2_29():
    old, new = specs_for("cis-1.12"), specs_for("cis-2.0")
    assert old.keys() == new.keys()
    differing = {i for i in old if old[i] != new[i]}
    assert differing == {"2.2", "1.2.29"}
    for check_id in differing:
        assert new[check_id].guidance != old[check_id].guidance
        assert new[check_id].audit == old[check_id].audit and new[check_id].fix == old[check_id].fix


def test_a_version_older_than_every_benchmark_is_refused(tmp_path):
    result = node_at(tmp_path, "1.28.3").run("audit")
    assert result.exit_code == 2 and "Kubernetes 1.28.3 is not covered by any benchmark" in result.stderr


NEWER = "Kubernetes 1.36.0 is newer than every benchmark: audited against cis-2.0"


def test_newer_node_gets_the_newest_benchmark_with_a_warning_in_every_report(tmp_path):
    node = node_at(tmp_path, "1.36.0")

    def report(fmt: str) -> str:
        result = node.run("audit", "--format", fmt)
        assert result.exit_code in (0, 1), result.stderr
        return result.stdout

    text = report("text")  # the warning right after the two lines saying what was judged against what
    assert text.split("\n", 2)[1].startswith("Audited against cis-2.0")
    assert text.split("\n", 2)[2].startswith("WARNING: Kubernetes 1.36.0 is newer than every benchmark")
    assert "the newest (for Kubernetes up to 1.35)" in " ".join(text.split())
    as_json = json.loads(report("json"))
    assert as_json["warnings"][0].startswith(NEWER) and as_json["results"]
    kube_bench = json.loads(report("kube-bench"))
    assert {c["version"] for c in kube_bench["Controls"]} == {"cis-2.0"}
    assert kube_bench["Warnings"][0].startswith(NEWER)
    suites = ET.fromstring(report("junit")).findall("testsuite")
    assert suites and all(s.find("properties/property[@name='warning']").get("value").startswith(NEWER)
                          for s in suites)
    prometheus = report("prometheus")
    assert "\ncisfix_warnings 1\n" in prometheus
    assert re.search(r'\ncisfix_warning\{message="Kubernetes 1\.36\.0 is newer than every benchmark[^"]*"\} 1\n',
                     prometheus)
    fix_text = node.run("fix", "--dry-run", "--check", "1.2.15")
    assert fix_text.stdout.startswith("WARNING: Kubernetes 1.36.0 is newer")
    fix_json = node.run("fix", "--dry-run", "--check", "1.2.15", "--format", "json").json()
    assert fix_json["warnings"][0].startswith(NEWER)
    benchmarks = node.run("benchmarks").stdout
    assert "* cis-2.0" in benchmarks and "WARNING: Kubernetes 1.36.0 is newer" in benchmarks
    textfile = tmp_path / "drift.prom"
    drift = node.run("drift", "--textfile", str(textfile), "--format", "json")
    assert drift.json()["warnings"][0].startswith(NEWER)
    assert "\ncisfix_warnings 1\n" in textfile.read_text()


def test_an_explicit_benchmark_silences_the_warning(tmp_path):
    node = node_at(tmp_path, "1.36.0")
    node.write("/etc/cisfix/config.yaml", b"apiVersion: cisfix/v1\nkind: NodeConfig\nbenchmark: cis-2.0\n")
    assert node.run("audit", "--format", "json").json()["warnings"] == []
    kube_bench = node.run("audit", "--format", "kube-bench").json()
    assert {c["version"] for c in kube_bench["Controls"]} == {"cis-2.0"} and "Warnings" not in kube_bench
    assert not node.run("audit", "--benchmark", "cis-2.0").stdout.startswith("WARNING")
    assert "\ncisfix_warnings 0\n" in node.run("audit", "--format", "prometheus", "--benchmark", "cis-2.0").stdout


# ---- RKE2 and k3s: the node's distribution (its layout says it; here the node configuration) and the
# version string with its distribution suffix choose among the benchmarks registered for that distribution,
# as kube-bench's cmd/util.go does from `+rke2rN` / `+k3sN` ----

def described_as(tmp_path, distribution: str, version: str) -> TestNode:
    node = build_node(tmp_path / f"node-{distribution}-{version}")
    node.write("/etc/cisfix/config.yaml", f"apiVersion: cisfix/v1\nkind: NodeConfig\ndistribution: {distribution}\n"
                                          f"version: {version}\n".encode())
    return node


def chosen(node: TestNode) -> dict:
    result = node.run("benchmarks", "--format", "json")
    assert result.exit_code == 0, result.stderr
    return result.json()["node"]


@pytest.mark.parametrize("distribution, version, benchmark", [
    ("rke2", "v1.26.15+rke2r1", "rke2-cis-1.8"), ("rke2", "1.27.16+rke2r2", "rke2-cis-1.8"),
    ("k3s", "v1.27.16+k3s1", "k3s-cis-1.9"), ("k3s", "1.29.4+k3s1", "k3s-cis-1.9"),
    ("kubeadm", "1.31.4", "cis-1.11")])
def test_the_distribution_and_version_string_choose_the_benchmark(tmp_path, distribution, version, benchmark):
    node = chosen(described_as(tmp_path, distribution, version))
    assert node["benchmark"] == benchmark and node["warnings"] == []


@pytest.mark.parametrize("distribution, version, benchmark", [
    ("rke2", "1.31.4+rke2r1", "rke2-cis-1.8"), ("k3s", "v1.33.1+k3s1", "k3s-cis-1.9")])
def test_a_newer_rke2_or_k3s_gets_its_distributions_newest_benchmark_with_a_warning(tmp_path, distribution,
                                                                                  version, benchmark):
    # kube-bench gives these silently (its default branch); never a generic cis-* benchmark
    # The configuration file is named as the operator opens it: under --root.
    described = described_as(tmp_path, distribution, version)
    node = chosen(described)
    assert node["benchmark"] == benchmark
    assert node["warnings"] == [f"Kubernetes {version} is newer than every benchmark: audited against {benchmark}, "
                                f"the newest (for Kubernetes up to {'1.27' if distribution == 'rke2' else '1.29'}); "
                                "choose one with --benchmark or `benchmark:` in "
                                f"{described.root}/etc/cisfix/config.yaml to confirm it"]


def only_apiserver(tmp_path, manifest: bytes) -> TestNode:
    """The test kit's node with one control-plane manifest, the API server's, and no kubelet config."""
    node = build_node(tmp_path / "node")
    for name in ("kube-controller-manager", "kube-scheduler", "etcd"):
        node.path(f"/etc/kubernetes/manifests/{name}.yaml").unlink()
    node.path("/var/lib/kubelet/config.yaml").unlink()
    node.write("/etc/kubernetes/manifests/kube-apiserver.yaml", manifest)
    return node


def test_a_broken_manifest_that_hides_the_version_is_named_with_its_line(tmp_path):
    # a tab where YAML wants spaces, before the image tag the version is read from (an edit gone wrong)
    node = only_apiserver(tmp_path, b"apiVersion: v1\nkind: Pod\nmetadata:\n\tname: kube-apiserver\n")
    for command in (("audit",), ("fix", "--dry-run"), ("drift",)):
        result = node.run(*command)
        assert result.exit_code == 2 and result.stdout == ""
        assert result.stderr == (f"cisfix: error: {node.root}/etc/kubernetes/manifests/kube-apiserver.yaml:4: "
                                 "invalid YAML: found character '\\t' that cannot start any token; the Kubernetes "
                                 "version, and so the benchmark, is unknown until this file is fixed\n"), command


def test_an_unknown_version_names_the_configuration_file_under_the_root(tmp_path):
    node = only_apiserver(tmp_path, b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-apiserver\n")
    result = node.run("audit")
    assert result.exit_code == 2
    assert result.stderr.startswith("cisfix: error: benchmark: none chosen: the Kubernetes version is unknown")
    assert result.stderr.endswith(f") or `version:` in {node.root}/etc/cisfix/config.yaml\n")


def test_an_rke2_older_than_its_benchmarks_is_refused_not_given_a_kubeadm_one(tmp_path):
    result = described_as(tmp_path, "rke2", "1.25.16+rke2r1").run("audit")
    assert result.exit_code == 2 and "Kubernetes 1.25.16+rke2r1 is not covered by any benchmark" in result.stderr


def test_every_benchmark_says_which_distribution_it_is_for(tmp_path):
    listed = {b["name"]: b["distribution"] for b in build_node(tmp_path / "n").run("benchmarks", "--format", "json")
              .json()["benchmarks"]}
    assert listed == {"cis-1.11": "", "cis-1.12": "", "cis-2.0": "", "rke2-cis-1.8": "rke2", "k3s-cis-1.9": "k3s",
                      "eks-1.7.0": "eks", "eks-1.8.0": "eks", "gke-1.9.0": "gke", "aks-1.8": "aks"}
