"""Kubelet settings are checked against the kubelet's own schema (KubeletConfiguration v1beta1, for the
node's Kubernetes version) before anything is locked or written: on `edit`, on `fix` and `drift`, and on
the fix engine's Python entry. A refusal is one line naming the file and the key, exit 2, the file's
bytes unchanged and no state folder (so no lock) created."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from cisfix.kubeletschema import problem
from cisfix.testing import build_node
from conftest import KUBELET_CONFIG
from corpus import CORPUS, corpus_files

NODE_TAG = "(KubeletConfiguration v1beta1, Kubernetes 1.31)"  # the sample node runs 1.31.2


def refused(node, result, *expected: str) -> str:
    """The run was refused with one line holding `expected`, before anything was locked or written."""
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and all(text in lines[0] for text in expected), result.stderr
    assert not node.state_dir.exists()  # no lock file, no journal: the run never began
    return lines[0]


# ---- cisfix edit: the three cases an operator met ----

@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "real"])
@pytest.mark.parametrize("setting, expected", [
    ("readOnlyPort", "--set readOnlyPort: --set needs PATH=VALUE"),
    ("readOnlyPort=abc", f"readOnlyPort: expected an integer, got 'abc' {NODE_TAG}"),
    ("readOnlyPrt=0", "readOnlyPrt: not a KubeletConfiguration field (did you mean readOnlyPort?)"),
], ids=["no-value", "not-an-integer", "misspelt"])
def test_edit_refuses_what_the_kubelet_would_not_take(node, setting, expected, dry_run):
    before = node.read(KUBELET_CONFIG)
    result = node.run("edit", KUBELET_CONFIG, "--set", setting, *(["--dry-run"] if dry_run else []))
    line = refused(node, result, expected)
    if "=" in setting:
        assert f"{node.path(KUBELET_CONFIG)}: " in line
    assert node.read(KUBELET_CONFIG) == before


def test_one_bad_setting_refuses_the_whole_edit(node):
    before = node.read(KUBELET_CONFIG)
    result = node.run("edit", KUBELET_CONFIG, "--set", "readOnlyPort=0", "--set", "rotateCertificates=yes-please")
    refused(node, result, f"rotateCertificates: expected true or false, got 'yes-please' {NODE_TAG}")
    assert node.read(KUBELET_CONFIG) == before


def test_valid_settings_are_applied(node):
    result = node.run("edit", KUBELET_CONFIG, "--set", "readOnlyPort=0", "--set", "authentication.anonymous.enabled=false",
                      "--set", "authentication.webhook.cacheTTL=2m30s", "--set", 'evictionHard."memory.available"=100Mi',
                      "--set", "tlsCipherSuites=[TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]", "--set", "resolvConf=null")
    assert result.exit_code == 0, result.stderr
    text = node.read(KUBELET_CONFIG).decode()
    assert "\nreadOnlyPort: 0\n" in text and "cacheTTL: 2m30s" in text and "memory.available: 100Mi" in text


@pytest.mark.parametrize("setting, expected", [
    ("authentication.anonymous.enabeld=false",
     "authentication.anonymous.enabeld: not a KubeletConfiguration field (did you mean authentication.anonymous.enabled?)"),
    ("authentication.anonymous.enabled=nope", f"authentication.anonymous.enabled: expected true or false, got 'nope' {NODE_TAG}"),
    ("authentication.anonymous={enabled: 1}", f"authentication.anonymous.enabled: expected true or false, got 1 {NODE_TAG}"),
    ("readOnlyPort.enabled=false", "readOnlyPort.enabled: readOnlyPort is an integer, not a mapping"),
], ids=["misspelt-nested-key", "nested-not-a-bool", "nested-in-a-mapping-value", "inside-a-scalar"])
def test_nested_keys_are_checked(node, setting, expected):
    refused(node, node.run("edit", KUBELET_CONFIG, "--set", setting), expected)


@pytest.mark.parametrize("value, ok", [("4h0m0s", True), ("4h", True), ("0s", True), ("1.5h", True), ("'0'", True),
                                       ("0", False), ("4 hours", False), ("5", False), ("''", False), ("4d", False)])
def test_durations_are_go_durations_in_a_string(node, value, ok):
    result = node.run("edit", KUBELET_CONFIG, "--set", f"streamingConnectionIdleTimeout={value}", "--dry-run")
    if ok:
        assert result.exit_code == 0, result.stderr
    else:
        refused(node, result, 'streamingConnectionIdleTimeout: expected a duration such as "30s" or "4h0m0s", got ')


@pytest.mark.parametrize("setting, expected", [
    ("evictionHard.memory.available=100Mi", 'evictionHard.memory.available: evictionHard.memory is a string, not a '
                                            'mapping (a key holding dots is quoted: evictionHard."memory.available")'),
    ("evictionHard={memory.available: 100}", f'evictionHard."memory.available": expected a string, got 100 {NODE_TAG}'),
    ("featureGates={SeccompDefault: enabled}", "featureGates.SeccompDefault: expected true or false, got 'enabled'"),
    ("clusterDNS=10.96.0.10", f"clusterDNS: expected a list of strings, got '10.96.0.10' {NODE_TAG}"),
    ("port=3000000000", f"port: expected an integer from -2147483648 to 2147483647, got 3000000000 {NODE_TAG}"),
], ids=["map-of-strings-nested-too-deep", "map-value-not-a-string", "feature-gate-not-a-bool", "list-given-a-scalar",
        "int32-out-of-range"])
def test_maps_lists_and_ranges_are_checked(node, setting, expected):
    refused(node, node.run("edit", KUBELET_CONFIG, "--set", setting, "--dry-run"), expected)


# ---- the node's version decides which keys exist ----

def test_a_key_of_a_newer_kubelet_is_refused_on_an_older_node(node):
    before = node.read(KUBELET_CONFIG)
    result = node.run("edit", KUBELET_CONFIG, "--set", "singleProcessOOMKill=true")
    refused(node, result, "singleProcessOOMKill: not a KubeletConfiguration field in Kubernetes 1.31 (it came in 1.32)")
    assert node.read(KUBELET_CONFIG) == before
    node.write("/etc/cisfix/config.yaml", b"apiVersion: cisfix/v1\nkind: NodeConfig\noffline: true\nversion: '1.32'\n")
    result = node.run("edit", KUBELET_CONFIG, "--set", "singleProcessOOMKill=true")
    assert result.exit_code == 0, result.stderr
    assert b"\nsingleProcessOOMKill: true\n" in node.read(KUBELET_CONFIG)


def test_an_unknown_version_is_checked_against_the_newest_schema(node):
    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        path = f"/etc/kubernetes/manifests/{name}.yaml"
        node.write(path, node.read(path).replace(b":v1.31.2", b":latest"))
    result = node.run("edit", KUBELET_CONFIG, "--set", "singleProcessOOMKill=true", "--dry-run")
    assert result.exit_code == 0 and result.stderr == "", result.stderr
    refused(node, node.run("edit", KUBELET_CONFIG, "--set", "readOnlyPort=abc", "--dry-run"),
            "readOnlyPort: expected an integer, got 'abc' (KubeletConfiguration v1beta1)")
    assert "Kubernetes" not in node.run("edit", KUBELET_CONFIG, "--set", "readOnlyPort=abc").stderr


# ---- which file is the kubelet's configuration: the layout's, or the document's kind ----

def test_the_config_file_that_the_kubelet_flag_names_is_checked(node):
    custom = "/etc/kubelet/custom-config.yaml"
    node.write(custom, node.read(KUBELET_CONFIG))
    node.write("/var/lib/kubelet/kubeadm-flags.env", f'KUBELET_KUBEADM_ARGS="--config={custom}"\n'.encode())
    before = node.read(custom)
    refused(node, node.run("edit", custom, "--set", "readOnlyPort=abc"), f"{node.path(custom)}: readOnlyPort: expected")
    assert node.read(custom) == before


def test_a_kubelet_configuration_document_chosen_by_kind_is_checked(node):
    path = "/etc/kubernetes/kubeadm-init.yaml"
    node.write(path, b"kind: InitConfiguration\napiVersion: kubeadm.k8s.io/v1beta4\n---\n"
                     b"kind: KubeletConfiguration\napiVersion: kubelet.config.k8s.io/v1beta1\nmaxPods: 110\n")
    refused(node, node.run("edit", path, "--kind", "KubeletConfiguration", "--set", "maxPods=lots", "--dry-run"),
            f"maxPods: expected an integer, got 'lots' {NODE_TAG}")
    assert node.run("edit", path, "--kind", "InitConfiguration", "--set", "maxPods=lots", "--dry-run").exit_code == 0


def test_on_rke2_the_kubelet_config_the_layout_names_is_checked(tmp_path):
    """RKE2 writes a KubeletConfiguration drop-in for its kubelet; its layout says so, and the node's
    version (`1.31.4+rke2r1`) picks the schema."""
    from cisfix.testing import TestNode

    node = TestNode(tmp_path / "node")
    node.write("/etc/cisfix/config.yaml", b"apiVersion: cisfix/v1\nkind: NodeConfig\ndistribution: rke2\n"
                                          b"version: 1.31.4+rke2r1\noffline: true\n", 0o644)
    node.write("/etc/rancher/rke2/config.yaml", b"{}\n")
    dropin = "/var/lib/rancher/rke2/agent/etc/kubelet.conf.d/00-rke2-defaults.conf"
    node.write(dropin, b"apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nreadOnlyPort: 0\n")
    refused(node, node.run("edit", dropin, "--set", "failSwapOn=maybe", "--dry-run"),
            f"{node.path(dropin)}: failSwapOn: expected true or false, got 'maybe' {NODE_TAG}")


def test_other_yaml_files_are_not_checked(node):
    path = "/etc/kubernetes/some-policy.yaml"
    node.write(path, b"readOnlyPort: 1\n")
    assert node.run("edit", path, "--set", "readOnlyPort=abc", "--dry-run").exit_code == 0


# ---- fix and drift: a remediation from a checks.d document ----

BAD_CHECK = """apiVersion: cisfix/v1
kind: Check
id: ACME-9
title: Ensure the kubelet read-only port is disabled
nodeTypes: [master, worker]
component: kubelet
configPath: {path}
expect: {{op: eq, value: 0}}
remediation: {{set: {value}}}
"""


@pytest.fixture
def checks_dir(tmp_path):
    folder = tmp_path / "checks.d"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    return folder


@pytest.mark.parametrize("command", [("fix", "--dry-run"), ("fix",), ("drift", "--all")])
@pytest.mark.parametrize("path, value, expected", [
    ("readOnlyPrt", "0", "readOnlyPrt: not a KubeletConfiguration field (did you mean readOnlyPort?)"),
    ("readOnlyPort", '"0"', f"readOnlyPort: expected an integer, got '0' {NODE_TAG}"),
], ids=["misspelt", "a-string"])
def test_fix_and_drift_refuse_a_check_whose_remediation_the_kubelet_would_not_take(node, checks_dir, command, path,
                                                                                     value, expected):
    (checks_dir / "acme.yaml").write_text(BAD_CHECK.format(path=path, value=value))
    metrics = "/var/lib/node_exporter/textfile/cisfix.prom"  # drift's textfile reports the failed run
    before = node.snapshot()
    result = node.run("--checks-dir", str(checks_dir), "-p", "no:cisfix_cis", *command)
    refused(node, result, f"check ACME-9: {node.path(KUBELET_CONFIG)}: {expected}")
    assert {k: v for k, v in node.snapshot().items() if k != metrics} == before


def test_the_fix_engine_entry_refuses_it_too(tmp_path, checks_dir):
    (checks_dir / "acme.yaml").write_text(BAD_CHECK.format(path="readOnlyPort", value="abc"))
    node = build_node(tmp_path / "node", [str(checks_dir)])
    from cisfix.errors import InputError

    with pytest.raises(InputError, match="readOnlyPort: expected an integer, got 'abc'"):
        node.fix("ACME-9", dry_run=True)
    (checks_dir / "acme.yaml").write_text(BAD_CHECK.format(path="readOnlyPort", value="0"))
    node = build_node(tmp_path / "node2", [str(checks_dir)])
    assert node.fix("ACME-9")["status"] == "FIXED"
    assert b"\nreadOnlyPort: 0\n" in node.read(KUBELET_CONFIG)


def test_every_kubelet_setting_the_cis_plugin_writes_is_valid_in_every_version_it_serves():
    from cisfix.editors.config import split_path
    from cisfix.plugins import minor_version
    from cisfix_cis import catalog
    from cisfix_cis.fixes import KubeletFix

    checked = 0
    for benchmark, (_, versions) in catalog.BENCHMARKS.items():
        for spec in catalog.specs_for(benchmark).values():
            fix = spec.fix
            if isinstance(fix, KubeletFix) and fix.path and fix.value is not None:
                for version in versions:
                    assert problem(split_path(fix.path), fix.value, minor_version(version)) is None, (spec.id, version)
                    checked += 1
    assert checked >= 6


# ---- real kubelet configs: what the schema must accept ----

# Corpus files whose own content the kubelet does not know; the schema is right and the file is not.
CORPUS_DIFFERENCES = {
    # `resolverConfig` is the Go field name; the key is `resolvConf`. The kubelet drops the unknown key with a
    # lenient-decoding warning, so this file's DNS setting was never in force.
    "nickgerace-vista__kubelet-config.yaml": ["resolverConfig: not a KubeletConfiguration field"],
}


def kubelet_documents(path: Path) -> list:
    """The KubeletConfiguration documents of a corpus file: its own, or one embedded in a kubeadm
    `kubelet-config` ConfigMap. Flag files (not YAML mappings) hold none."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        docs = list(YAML(typ="safe", pure=True).load_all(path.read_text(encoding="utf-8")))
    except YAMLError:
        return []
    found = []
    for doc in (d for d in docs if isinstance(d, dict)):
        if doc.get("kind") == "ConfigMap" and isinstance((doc.get("data") or {}).get("kubelet"), str):
            doc = YAML(typ="safe", pure=True).load(doc["data"]["kubelet"])
        if doc.get("kind") == "KubeletConfiguration":
            found.append(doc)
    return found


@pytest.mark.parametrize("path", corpus_files("kubelet"))
def test_every_corpus_kubelet_config_validates(path):
    problems = [why for doc in kubelet_documents(path) for key, value in doc.items()
                for why in [problem([key], value, None)] if why]
    for doc in kubelet_documents(path):
        assert doc.get("apiVersion") == "kubelet.config.k8s.io/v1beta1"
    expected = CORPUS_DIFFERENCES.get(path.name, [])
    assert len(problems) == len(expected) and all(e in p for e, p in zip(expected, problems)), problems


def test_the_corpus_holds_kubelet_configs():
    if not (CORPUS / "kubelet").is_dir():
        pytest.skip(f"corpus not found at {CORPUS}")
    assert sum(len(kubelet_documents(p)) for p in (CORPUS / "kubelet").iterdir()) >= 12


def test_the_sample_node_config_validates_from_its_version_on():
    """kubeadm 1.31 wrote it; `logging.options.text` came in 1.30."""
    from importlib.resources import files
    from ruamel.yaml import YAML

    config = YAML(typ="safe").load(files("cisfix.testing").joinpath("node/var/lib/kubelet/config.yaml").read_text())
    for minor in range(30, 37):
        assert [why for k, v in config.items() for why in [problem([k], v, (1, minor))] if why] == []
    assert problem(["logging"], config["logging"], (1, 29)) == (
        "logging.options.text: not a KubeletConfiguration field in Kubernetes 1.29 (it came in 1.30)")


def test_every_type_the_schema_names_is_known():
    """A typo in the data file would make its field refuse every value: each type resolves."""
    import json
    from importlib.resources import files

    schema = json.loads(files("cisfix").joinpath("schemas", "kubelet-config.v1beta1.json").read_text())
    scalars = {"bool", "int32", "int64", "uint32", "float64", "string", "duration", "quantity", "timeOrDuration",
               "mapping"}
    for struct, fields in schema["types"].items():
        for name, spec in fields.items():
            kind = spec if isinstance(spec, str) else spec[0]
            while kind.startswith(("*", "[]", "map[string]")):
                kind = kind[1:] if kind[0] == "*" else kind[2:] if kind.startswith("[]") else kind[len("map[string]"):]
            assert kind in scalars or kind in schema["types"], (struct, name, kind)
            assert isinstance(spec, str) or 29 <= spec[1] <= 36, (struct, name)
