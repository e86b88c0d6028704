"""A kubelet with a JSON `--config` and a `--config-dir` of drop-ins (as nodeadm sets up an AL2023 EKS
node): audits read each setting where the kubelet would — the last drop-in that sets it, else the config
file — and name that file as evidence; a fix edits that file, byte for byte; a drop-in folder another
user could write, or a drop-in that is no configuration, is one line and nothing changes. On the offline
test node (no process runs), its kubelet given the drop-in flag by the node configuration."""
from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cisfix.testing import TestNode, build_node

CONFIG = "/etc/kubernetes/kubelet/config.json"
DROPINS = "/etc/kubernetes/kubelet/config.json.d"
NODEADM = f"{DROPINS}/40-nodeadm.conf"
SITE = f"{DROPINS}/50-site.conf"
FLAGS_ENV = "/var/lib/kubelet/kubeadm-flags.env"

CONFIG_JSON = b"""{
    "kind": "KubeletConfiguration",
    "apiVersion": "kubelet.config.k8s.io/v1beta1",
    "address": "0.0.0.0",
    "authentication": {
        "anonymous": {
            "enabled": false
        },
        "webhook": {
            "cacheTTL": "2m0s",
            "enabled": true
        },
        "x509": {
            "clientCAFile": "/etc/kubernetes/pki/ca.crt"
        }
    },
    "authorization": {
        "mode": "Webhook"
    },
    "readOnlyPort": 0,
    "featureGates": {
        "RotateKubeletServerCertificate": true
    },
    "maxPods": 58,
    "eventRecordQPS": -1
}"""

# nodeadm's drop-in: what the NodeConfig's kubelet.config says, over nodeadm's own config
NODEADM_JSON = b"""{
    "kind": "KubeletConfiguration",
    "apiVersion": "kubelet.config.k8s.io/v1beta1",
    "readOnlyPort": 10255,
    "logging": {
        "verbosity": 5
    }
}"""

# an operator's YAML drop-in, after nodeadm's
SITE_YAML = b"""apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous:
    enabled: true
"""


@pytest.fixture
def node(tmp_path) -> TestNode:
    return eks_like_node(tmp_path / "node")


def eks_like_node(root) -> TestNode:
    node = build_node(root)
    node.write("/etc/cisfix/config.yaml", b"apiVersion: cisfix/v1\nkind: NodeConfig\noffline: true\n"
                                          b"components:\n  kubelet:\n    configDirFlag: config-dir\n", 0o644)
    node.write(FLAGS_ENV, f'KUBELET_KUBEADM_ARGS="--config={CONFIG} --config-dir={DROPINS}"\n'.encode(), 0o644)
    node.write(CONFIG, CONFIG_JSON, 0o644)
    node.write(NODEADM, NODEADM_JSON, 0o644)
    node.write(SITE, SITE_YAML, 0o644)
    node.write(f"{DROPINS}/60-ignored.json", b'{"readOnlyPort": 1}', 0o644)  # not .conf: the kubelet skips it
    node.write(f"{DROPINS}/00-old.conf.bak", b"not read", 0o644)
    for folder in ("/etc/kubernetes/kubelet", DROPINS):
        os.chmod(node.path(folder), 0o755)
    return node


def errored_audit(node: TestNode, check_id: str) -> dict:
    """The audit of a check that cannot be judged: exit 2, the check ERROR."""
    result = node.run("audit", "--format", "json", "--check", check_id)
    assert result.exit_code == 2, result.stderr
    audit = {r["id"]: r for r in result.json()["results"]}[check_id]
    assert audit["status"] == "ERROR"
    return audit


def test_audit_reads_each_setting_from_the_drop_in_that_decides_it(node):
    results = node.audit("4.2.1", "4.2.4", "4.2.2", "4.2.8")
    assert results["4.2.4"]["status"] == "FAIL"
    assert results["4.2.4"]["evidence"][0]["file"] == NODEADM
    assert results["4.2.1"]["status"] == "FAIL"
    assert results["4.2.1"]["evidence"][0]["file"] == SITE
    assert results["4.2.2"]["status"] == "PASS"
    assert results["4.2.2"]["evidence"][0]["file"] == CONFIG
    assert results["4.2.8"]["status"] == "FAIL"
    assert results["4.2.8"]["evidence"][0]["file"] == CONFIG  # no drop-in sets it
    # each at the line of its key in that file
    assert [results[i]["evidence"][0].get("line") for i in ("4.2.4", "4.2.1", "4.2.2", "4.2.8")] == [4, 5, 18, 25]


def test_fix_edits_the_deciding_drop_in_and_the_config_file_for_the_rest(node):
    outcome = node.fix("4.2.1", "4.2.4", "4.2.8")
    assert outcome["status"] == "FIXED", outcome
    assert node.read(NODEADM) == NODEADM_JSON.replace(b'"readOnlyPort": 10255', b'"readOnlyPort": 0')
    assert node.read(SITE) == SITE_YAML.replace(b"enabled: true", b"enabled: false")
    # 4.2.8's fix leaves eventRecordQPS at its default: the member goes, with the comma before it
    assert node.read(CONFIG) == CONFIG_JSON.replace(b'"maxPods": 58,\n    "eventRecordQPS": -1\n', b'"maxPods": 58\n')
    results = node.audit("4.2.1", "4.2.4", "4.2.8")
    assert {i: r["status"] for i, r in results.items()} == {"4.2.1": "PASS", "4.2.4": "PASS", "4.2.8": "PASS"}


def test_a_removal_removes_the_setting_from_every_file_that_sets_it(node):
    from cisfix.audit import node_state
    from cisfix.engine import plan_changes
    from cisfix.node import Node
    from cisfix.plan import SetSetting
    from cisfix.plugins import Plugins
    from cisfix.types import Configure

    plugins = Plugins(Node(str(node.root)))
    change = Configure("kubelet", (SetSetting("read-only-port", "readOnlyPort", None),))
    planned = {p.path: p for p in plan_changes(plugins.node, [change], plugins.editors(), node_state(plugins))}
    assert set(planned) == {CONFIG, NODEADM}
    assert b"readOnlyPort" not in planned[CONFIG].after + planned[NODEADM].after
    assert planned[NODEADM].after == NODEADM_JSON.replace(b'    "readOnlyPort": 10255,\n', b"")


@pytest.mark.skipif(os.geteuid() != 0, reason="trust is enforced only when cisfix runs as root")
@pytest.mark.parametrize("untrusted", ["mode", "owner"])
def test_a_drop_in_folder_another_user_could_write_is_refused_and_nothing_changes(node, untrusted):
    folder = node.path(DROPINS)
    if untrusted == "mode":
        os.chmod(folder, 0o777)
    else:
        os.chown(folder, 1000, 1000)
    before = node.snapshot()
    result = node.run("fix", "--check", "4.2.4")
    assert result.exit_code != 0
    assert "the kubelet's configuration drop-ins are not used" in result.stdout + result.stderr
    assert node.snapshot() == before
    audit = errored_audit(node, "4.2.4")
    assert "\n" not in audit["reason"] and str(folder) in audit["reason"]


@pytest.mark.parametrize("text, why", [
    (b'{\n    "readOnlyPort": 0,\n}', "40-nodeadm.conf:3: invalid JSON: expected a double-quoted key"),
    (b"readOnlyPort: [0\n", "40-nodeadm.conf:2: invalid YAML"),
    (b"- 1\n", "40-nodeadm.conf: not a configuration document"),
])
def test_a_drop_in_that_is_no_configuration_is_one_line_naming_it(node, text, why):
    node.write(NODEADM, text, 0o644)
    before = node.snapshot()
    audit = errored_audit(node, "4.2.4")
    assert why in audit["reason"] and "\n" not in audit["reason"]
    result = node.run("fix", "--check", "4.2.4")
    assert result.exit_code != 0 and why in result.stdout + result.stderr
    assert node.snapshot() == before


def test_the_kubelet_walk_order_decides(node):
    """Sub-folders are walked where their names sort (filepath.WalkDir), `.conf` only, case-sensitive."""
    node.write(f"{DROPINS}/45-sub/10-x.conf", b'{"readOnlyPort": 7}', 0o644)
    node.write(f"{DROPINS}/47-upper.CONF", b'{"readOnlyPort": 8}', 0o644)
    os.chmod(node.path(f"{DROPINS}/45-sub"), 0o755)
    audit = node.audit("4.2.4")["4.2.4"]
    assert audit["evidence"][0]["file"] == f"{DROPINS}/45-sub/10-x.conf"
    assert audit["actual"] == "7"


def test_a_drop_in_name_with_control_characters_is_refused(node):
    node.write(f"{DROPINS}/45-\x1b[31mred.conf", b'{"readOnlyPort": 0}', 0o644)
    audit = errored_audit(node, "4.2.4")
    assert "a drop-in name that is no UTF-8 text or holds control characters" in audit["reason"]
    assert "\x1b" not in audit["reason"]



KEYS = st.sampled_from(["a", "b", "c"])
VALUES = st.recursive(st.one_of(st.integers(), st.booleans(), st.none(), st.text(max_size=3)),
                      lambda inner: st.dictionaries(KEYS, inner, max_size=3), max_leaves=6)
DOCUMENTS = st.dictionaries(KEYS, VALUES, max_size=3)


@settings(max_examples=300, deadline=None)
@given(config=DOCUMENTS, dropins=st.lists(DOCUMENTS, max_size=3), parts=st.lists(KEYS, min_size=1, max_size=3))
def test_the_deciding_file_holds_the_merged_value(config, dropins, parts):
    """Whatever the drop-ins set, replace or remove (null), the file named as deciding a path holds the
    path's merged value (a map's keys may come from several files: scalars only)."""
    from cisfix.editors.config import read_data
    from cisfix.settings import Dropin, Settings, merge_patch
    from cisfix.types import Evidence

    merged = config
    for dropin in dropins:
        merged = merge_patch(merged, dropin)
    files = {"/config.json": config, **{f"/d/{i}.conf": d for i, d in enumerate(dropins)}}
    settings_ = Settings("kubelet", {}, False, {}, {}, "/config.json", merged, Evidence(),
                         tuple(Dropin(path, data, "") for path, data in list(files.items())[1:]), config)
    path = ".".join(parts)
    present, value, evidence = settings_.setting(None, path)
    assert (present, value) == read_data(merged, path)
    if present and not isinstance(value, dict):
        assert read_data(files[evidence.file], path) == (True, value)
    assert set(settings_.files_setting(path)) == {f for f, data in files.items() if read_data(data, path)[0]}


@pytest.mark.parametrize("path", [NODEADM, CONFIG])
def test_json_nested_hundreds_deep_is_one_line_and_nothing_changes(node, path):
    """The stdlib decodes it, but the merge, the editor and its self-check recurse per level: refused
    when read (the audit's ERROR and the fix's exit 2), never an internal error half-way through a fix."""
    node.write(path, b'{"kind": "KubeletConfiguration", "readOnlyPort": 10255, "x": ' + b'{"a": ' * 400 + b"1"
               + b"}" * 400 + b"}", 0o644)
    refused_in_one_line(node, f"{path.rsplit('/', 1)[1]}:1: invalid JSON: nested more than 64 deep")


def test_yaml_nested_hundreds_deep_is_one_line_and_nothing_changes(node):
    node.write(SITE, SITE_YAML + b"x: " + b"[" * 450 + b"]" * 450 + b"\nreadOnlyPort: 10255\n", 0o644)
    refused_in_one_line(node, "50-site.conf: invalid YAML: nested more than 64 deep")


def refused_in_one_line(node, why: str) -> None:
    """The read-only port's check cannot be audited (ERROR, `why`), and its fix is one line, exit 2, nothing
    changed."""
    before = node.snapshot()
    audit = errored_audit(node, "4.2.4")
    assert why in audit["reason"] and "\n" not in audit["reason"]
    result = node.run("fix", "--check", "4.2.4")
    assert result.exit_code == 2, result.stderr
    assert why in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert node.snapshot() == before


def test_a_gate_turned_off_in_a_repeated_feature_gates_object_fails_as_the_kubelet_runs_it(node):
    """The kubelet keeps both objects' gates (encoding/json merges a repeated object): its serving
    certificate rotation is off, whatever the second `featureGates` leaves out."""
    node.write(CONFIG, CONFIG_JSON.replace(b'"featureGates": {\n        "RotateKubeletServerCertificate": true\n    },',
                                           b'"featureGates": {"RotateKubeletServerCertificate": false},\n'
                                           b'    "featureGates": {"SidecarContainers": true},'), 0o644)
    assert node.audit("4.2.11")["4.2.11"]["status"] == "FAIL"


def test_relative_config_paths_are_read_from_the_kubelets_working_folder_not_cisfixs(node, monkeypatch, tmp_path):
    """systemd starts the kubelet in `/`: `--config-dir=etc/...` is the node's /etc/...; root running cisfix
    from another user's folder (`--root /`) read a relative one from there, her drop-ins for the kubelet's."""
    hers = tmp_path / "hers"
    (hers / DROPINS.lstrip("/")).mkdir(parents=True)
    (hers / NODEADM.lstrip("/")).write_text('{"readOnlyPort": 0}')
    monkeypatch.chdir(hers)
    node.write(FLAGS_ENV, f'KUBELET_KUBEADM_ARGS="--config={CONFIG.lstrip("/")} --config-dir={DROPINS.lstrip("/")}"\n'.encode(),
               0o644)
    audit = node.audit("4.2.4", "4.2.2")
    assert (audit["4.2.4"]["status"], audit["4.2.4"]["evidence"][0]["file"]) == ("FAIL", NODEADM)
    assert (audit["4.2.2"]["status"], audit["4.2.2"]["evidence"][0]["file"]) == ("PASS", CONFIG)


@pytest.mark.parametrize("given, decides", [
    ("/etc/kubernetes/kubelet/linked.d", CONFIG),  # a link: WalkDir lstats it and walks nothing under it
    ("/etc/kubernetes/kubelet/linked.d/", "/etc/kubernetes/kubelet/linked.d/40-nodeadm.conf"),  # a trailing slash follows it
    (NODEADM, NODEADM),  # a file named *.conf is the one drop-in
])
def test_the_drop_in_folder_is_walked_as_the_kubelet_walks_what_it_is_given(node, given, decides):
    """filepath.WalkDir lstats its root (golang/go#50804): nodeadm's 40-nodeadm.conf, reached through a link,
    is never read by the kubelet, whose read-only port is the config file's."""
    os.symlink("config.json.d", node.path("/etc/kubernetes/kubelet/linked.d"))
    node.write(FLAGS_ENV, f'KUBELET_KUBEADM_ARGS="--config={CONFIG} --config-dir={given}"\n'.encode(), 0o644)
    node.write(SITE, b"kind: KubeletConfiguration\n", 0o644)
    audit = node.audit("4.2.4")["4.2.4"]
    assert audit["evidence"][0]["file"] == decides
    assert audit["status"] == ("PASS" if decides == CONFIG else "FAIL")
