"""`cisfix edit`: what lands on disk, what is printed, and the exit code."""
from __future__ import annotations

import json
import os

from conftest import APISERVER, KUBELET_CONFIG


def test_set_flag_changes_one_line_and_reports_fixed(node, cisfix):
    before = node.read(APISERVER)
    result = cisfix("edit", APISERVER, "--flag", "profiling=false", "--format", "json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["success"] is True and out["status"] == "FIXED"
    assert out["txid"] and out["audit_verified"] is None
    assert out["changes_made"] == 1 and "--profiling=false" in out["changes"][0]
    after = node.read(APISERVER)
    assert after.replace(b"    - --profiling=false\n", b"") == before
    assert "+    - --profiling=false" in out["diff"]
    assert out["backup_path"] == os.path.join(out["backup_dir"], APISERVER.lstrip("/"))
    with open(out["backup_path"], "rb") as backup:
        assert backup.read() == before


def test_setting_a_flag_to_its_value_writes_nothing(node, cisfix):
    path = node.path(APISERVER)
    st = os.stat(path)
    result = cisfix("edit", APISERVER, "--flag", "secure-port=6443", "--format", "json")
    assert result.returncode == 0
    assert json.loads(result.stdout)["status"] == "ALREADY_COMPLIANT"
    after = os.stat(path)
    assert (after.st_ino, after.st_mtime_ns) == (st.st_ino, st.st_mtime_ns)
    assert node.journal_records() == []


def test_dry_run_prints_the_diff_and_changes_nothing(node, cisfix):
    before = node.snapshot()
    result = cisfix("edit", APISERVER, "--flag", "profiling=false", "--dry-run")
    assert result.returncode == 0
    assert "+    - --profiling=false" in result.stdout
    assert "WOULD_FIX" in result.stdout
    assert node.snapshot() == before
    assert node.journal_records() == []


def test_diff_option_prints_and_applies(node, cisfix):
    result = cisfix("edit", APISERVER, "--flag", "profiling=false", "--diff")
    assert result.returncode == 0
    assert result.stdout.startswith(f"--- a{node.path(APISERVER)}")
    assert b"--profiling=false" in node.read(APISERVER)


def test_all_options_of_one_invocation_are_one_transaction(node, cisfix):
    result = cisfix("edit", APISERVER, "--flag", "profiling=false", "--unflag", "allow-privileged",
                    "--flag-add", "enable-admission-plugins=AlwaysPullImages",
                    "--flag-drop", "kubelet-preferred-address-types=Hostname", "--format", "json")
    assert result.returncode == 0, result.stderr
    text = node.read(APISERVER).decode()
    assert "--profiling=false" in text and "--allow-privileged" not in text
    assert "--enable-admission-plugins=NodeRestriction,AlwaysPullImages" in text
    assert "--kubelet-preferred-address-types=InternalIP,ExternalIP\n" in text
    begins = [r for r in node.journal_records() if r["type"] == "begin"]
    assert len(begins) == 1


def test_set_path_in_kubelet_config_reads_value_as_yaml_scalar(node, cisfix):
    result = cisfix("edit", KUBELET_CONFIG, "--set", "readOnlyPort=0", "--set", "authentication.anonymous.enabled=false",
                    "--set", "rotateCertificates=true", "--set", "clusterDomain='cluster.local'")
    assert result.returncode == 0, result.stderr
    text = node.read(KUBELET_CONFIG).decode()
    assert "\nreadOnlyPort: 0\n" in text


def test_unset_path(node, cisfix):
    result = cisfix("edit", KUBELET_CONFIG, "--unset", "authorization.webhook")
    assert result.returncode == 0, result.stderr
    assert b"cacheAuthorizedTTL" not in node.read(KUBELET_CONFIG)


def test_text_output_is_quiet_with_q(node, cisfix):
    result = cisfix("-q", "edit", APISERVER, "--flag", "profiling=false")
    assert result.returncode == 0 and result.stdout == "" and result.stderr == ""


def test_change_log_lines_carry_remediation_txid_and_file(node, cisfix):
    out = json.loads(cisfix("edit", APISERVER, "--flag", "profiling=false", "--format", "json").stdout)
    log = node.path("/var/log/cisfix.log").read_text()
    line = next(l for l in log.splitlines() if "REMEDIATION" in l)
    assert f"txid={out['txid']}" in line and f"file={APISERVER}" in line


def test_global_options_work_after_the_command_too(node, cisfix):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "cisfix", "edit", APISERVER, "--root", str(node.root),
                             "--flag", "profiling=false"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert b"--profiling=false" in node.read(APISERVER)


def test_a_host_path_under_the_root_is_the_node_file_it_names(node):
    """What a shell completes under --root names that node file; no line shows the root twice."""
    given = str(node.path(APISERVER))
    result = node.run("edit", given, "--flag", "profiling=false")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"  {given}: added --profiling=false"
    assert b"    - --profiling=false\n" in node.read(APISERVER)
    missing = node.run("edit", f"{node.root}/etc/kubernetes/manifests/nope.yaml", "--flag", "profiling=false")
    assert (missing.exit_code, missing.stderr) == (2, f"cisfix: error: {node.root}/etc/kubernetes/manifests/nope.yaml: "
                                                      "no such file\n")
    assert f"{node.root}{node.root}" not in result.stdout + missing.stdout + missing.stderr


def test_state_dir_option_moves_journal_and_backups(node, cisfix, tmp_path):
    state = tmp_path / "elsewhere"
    result = cisfix("--state-dir", str(state), "edit", APISERVER, "--flag", "profiling=false")
    assert result.returncode == 0, result.stderr
    assert (state / "journal.jsonl").exists() and not node.state_dir.exists()


def test_set_takes_yaml_flow_values_and_quoted_keys(node, cisfix):
    """A real kubeadm kubelet config: lists, mappings and keys holding dots, each a one-line splice."""
    from ruamel.yaml import YAML

    before = node.read(KUBELET_CONFIG).decode()
    result = cisfix("edit", KUBELET_CONFIG, "--set",
                    "tlsCipherSuites=[TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]",
                    "--set", "evictionHard={memory.available: 100Mi}",
                    "--set", 'evictionHard."nodefs.available"=10%')
    assert result.returncode == 0, result.stderr
    after = node.read(KUBELET_CONFIG).decode()
    added = [line for line in after.splitlines() if line not in before.splitlines()]
    assert added == ["tlsCipherSuites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]",
                     "evictionHard: {memory.available: 100Mi, nodefs.available: 10%}"]
    assert [line for line in before.splitlines() if line not in after.splitlines()] == []
    data = YAML(typ="safe").load(after)
    assert data["evictionHard"] == {"memory.available": "100Mi", "nodefs.available": "10%"}  # not nested maps
    result = cisfix("edit", KUBELET_CONFIG, "--unset", 'evictionHard."memory.available"')
    assert result.returncode == 0, result.stderr
    assert YAML(typ="safe").load(node.read(KUBELET_CONFIG))["evictionHard"] == {"nodefs.available": "10%"}
