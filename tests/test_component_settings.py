"""Settings on components: the layout says where a setting lives, checks plan settings, one flag parser
reads every source, components that are not on the node are NOT_APPLICABLE, and a pod the kubelet would
refuse is invalid input. On offline node trees (no process runs)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import APISERVER, KUBELET_CONFIG

from cisfix import flags

FLAGS_ENV = "/var/lib/kubelet/kubeadm-flags.env"
SCHEDULER = "/etc/kubernetes/manifests/kube-scheduler.yaml"
REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("words, expected", [
    (["--a=1", "--b", "2", "--c", "--d="], {"a": "1", "b": "2", "c": None, "d": ""}),
    (["-v=2", "--x", "--y"], {"v": "2", "x": None, "y": None}),
    (["-v", "4", "--z=1", "--", "--after=ignored"], {"v": "4", "z": "1"}),
    (["--a=1", "--a=2"], {"a": "2"}),
])
def test_one_flag_parser_reads_every_form(words, expected):
    assert flags.effective(words) == expected


def _single_dash_manifest(node) -> bytes:
    text = node.read(APISERVER).replace(b"    - --allow-privileged=true\n",
                                        b"    - --allow-privileged=true\n    - -v=2\n")
    assert text != node.read(APISERVER)
    node.write(APISERVER, text)
    return text


def test_manifest_single_dash_flags_read_as_the_process_reads_them(node):
    from cisfix.editors.manifest import read_flags

    text = _single_dash_manifest(node)
    assert dict(read_flags(text.decode(), None))["v"] == "2"


def test_kubelet_flag_file_edit_dry_run_shows_the_diff_offline(node, cisfix):
    node.write(FLAGS_ENV, b'KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///run/c.sock"\n', 0o644)
    before = node.snapshot()
    result = cisfix("edit", FLAGS_ENV, "--flag", "read-only-port=0", "--dry-run", "--diff")
    assert result.returncode == 0, result.stderr
    assert '+KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///run/c.sock --read-only-port=0"' in result.stdout
    assert node.snapshot() == before
    applied = cisfix("edit", FLAGS_ENV, "--flag", "read-only-port=0")
    assert applied.returncode == 0, applied.stderr
    assert node.read(FLAGS_ENV) == b'KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///run/c.sock --read-only-port=0"\n'


def test_a_kubelet_setting_goes_to_the_flag_file_that_overrides_else_the_config(node):
    from cisfix.audit import node_state
    from cisfix.engine import plan_changes
    from cisfix.node import Node
    from cisfix.plan import SetSetting
    from cisfix.plugins import Plugins
    from cisfix.types import Configure

    node.write(FLAGS_ENV, b'KUBELET_KUBEADM_ARGS="--read-only-port=10255"\n', 0o644)
    plugins = Plugins(Node(str(node.root)))
    change = Configure("kubelet", (SetSetting("read-only-port", "readOnlyPort", 0),
                                   SetSetting("rotate-certificates", "rotateCertificates", True)))
    planned = {p.path: p for p in plan_changes(plugins.node, [change], plugins.editors(), node_state(plugins))}
    assert set(planned) == {FLAGS_ENV, KUBELET_CONFIG}
    assert planned[FLAGS_ENV].after == b'KUBELET_KUBEADM_ARGS="--read-only-port=0"\n'
    assert b"rotateCertificates: true" in planned[KUBELET_CONFIG].after
    assert b"readOnlyPort" not in planned[KUBELET_CONFIG].after


def test_a_component_that_is_not_on_the_node_is_not_applicable_and_never_planned(node, cisfix):
    for name in ("kube-apiserver", "kube-controller-manager", "etcd"):
        node.path(f"/etc/kubernetes/manifests/{name}.yaml").unlink()
    node.path(KUBELET_CONFIG).unlink()
    before = node.snapshot()
    audit = cisfix("audit", "--node-type", "master", "--format", "json")
    results = {r["id"]: r for r in json.loads(audit.stdout)["results"]}
    assert results["1.2.9"]["status"] == "NOT_APPLICABLE"
    assert results["1.4.1"]["status"] in ("PASS", "FAIL")
    fix = cisfix("fix", "--level", "1", "--node-type", "master", "--format", "json")
    fixed = {r["id"]: r for r in json.loads(fix.stdout)["results"]}
    assert {fixed[i]["fix"] for i in ("1.2.9", "1.2.27", "1.2.28") if i in fixed} <= {"NOT_APPLICABLE"}
    assert "1.2.9" in fixed
    after = node.snapshot()
    written = {p for p in after if after[p] != before.get(p)}
    assert written <= {SCHEDULER}, written  # nothing for the API server, no admission or encryption files
    plain = cisfix("fix", "--level", "1")  # node types as detected: no API server, no master
    assert plain.returncode in (0, 1), plain.stderr
    after = node.snapshot()
    assert {p for p in after if after[p] != before.get(p)} <= {SCHEDULER}
    kube_bench = json.loads(cisfix("audit", "--node-type", "master", "--format", "kube-bench").stdout)
    ids = {r["test_number"] for c in kube_bench["Controls"] for t in c["tests"] for r in t["results"]}
    assert "1.2.9" not in ids and "1.4.1" in ids


def test_two_containers_of_one_name_are_invalid_input(node, cisfix):
    text = node.read(SCHEDULER)
    pod = text.replace(b"  hostNetwork: true", b"""  - name: kube-scheduler
    image: registry.k8s.io/kube-scheduler:v1.31.2
    command:
    - kube-scheduler
    - --profiling=true
  hostNetwork: true""")
    assert pod != text
    node.write(SCHEDULER, pod)
    before = node.snapshot()
    edit = cisfix("edit", SCHEDULER, "--flag", "profiling=false")
    assert edit.returncode == 2, (edit.stdout, edit.stderr)
    lines = edit.stderr.strip().splitlines()
    assert len(lines) == 1 and SCHEDULER in lines[0] and "two containers are named kube-scheduler" in lines[0]
    # An audit reports the scheduler's checks as ERROR naming the file, and exits 2.
    audit = cisfix("audit", "--check", "1.4.1", "--format", "json")
    assert audit.returncode == 2, (audit.stdout, audit.stderr)
    [only] = json.loads(audit.stdout)["results"]
    assert only["status"] == "ERROR" and SCHEDULER in only["reason"]
    assert "two containers are named kube-scheduler" in only["reason"]
    assert node.snapshot() == before


def test_only_the_kubeadm_layout_the_lab_and_the_test_kit_name_kubeadm_paths():
    found = subprocess.run(["grep", "-rln", "/etc/kubernetes", "cisfix", "--include=*.py"], cwd=REPO,
                           capture_output=True, text=True).stdout.split()
    # EKS and AKS keep their kubelet's files under /etc/kubernetes too: their layouts name their own paths.
    managed = ("cisfix/layouts/eks/", "cisfix/layouts/aks/")
    assert found and all(p == "cisfix/layouts/kubeadm/paths.py" or p.startswith(("cisfix/lab/", "cisfix/testing/", *managed))
                         for p in found), found


def test_each_source_is_parsed_once_per_run(node, monkeypatch):
    from cisfix import state

    parsed = []
    real = state.compose_yaml  # the one YAML composition a view of the node makes of a file
    monkeypatch.setattr(state, "compose_yaml", lambda text, *a, **k: parsed.append(text) or real(text, *a, **k))
    assert node.run("audit").exit_code in (0, 1)
    manifests = [node.read(f"/etc/kubernetes/manifests/{n}.yaml").decode()
                 for n in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")]
    assert len(parsed) == len(set(parsed)) and set(manifests) <= set(parsed)  # once each, however many checks read them
