"""Checks from checks.d directories: declarative YAML and Python plugin modules, how they load, clash,
are disabled, and are refused when another user could have written them."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import APISERVER
from node_processes import pod_process, stop

ACME = Path(__file__).parent / "data" / "checks" / "acme.yaml"


@pytest.fixture
def checks_dir(tmp_path):
    d = tmp_path / "checks.d"
    d.mkdir(mode=0o755)
    os.chmod(d, 0o755)
    shutil.copy(ACME, d / "acme.yaml")
    return d


def audit_json(cisfix, *args):
    result = cisfix(*args, "audit", "--format", "json")
    return result, json.loads(result.stdout) if result.stdout else None


def test_the_three_acme_documents_load_and_audit(node, cisfix, checks_dir):
    listed = json.loads(cisfix("--checks-dir", str(checks_dir), "checks", "list", "--format", "json").stdout)
    assert {"ACME-1", "ACME-2", "ACME-3"} <= {c["id"] for c in listed}
    result, report = audit_json(cisfix, "--checks-dir", str(checks_dir), "-p", "no:cisfix_cis")
    assert result.returncode == 1  # the sample node fails ACME-1 and ACME-2
    by_id = {r["id"]: r for r in report["results"]}
    assert by_id["ACME-1"]["status"] == "FAIL" and by_id["ACME-1"]["actual"] == "<unset>"
    assert by_id["ACME-1"]["evidence"] == [{"file": APISERVER}]
    assert by_id["ACME-2"]["status"] == "FAIL"
    assert by_id["ACME-3"]["status"] == "WARN"  # no audit policy file on this node
    assert report["summary"]["FAIL"] == 2


def test_audit_verdicts_follow_the_node(node, cisfix, checks_dir):
    cisfix("edit", APISERVER, "--flag", "profiling=false")
    cisfix("edit", "/var/lib/kubelet/config.yaml", "--set", "readOnlyPort=0")
    node.write("/etc/kubernetes/audit-policy.yaml", b"apiVersion: audit.k8s.io/v1\nkind: Policy\n", mode=0o644)
    _, report = audit_json(cisfix, "--checks-dir", str(checks_dir), "-p", "no:cisfix_cis")
    by_id = {r["id"]: r for r in report["results"]}
    assert by_id["ACME-1"]["status"] == "PASS" and by_id["ACME-2"]["status"] == "PASS"
    assert by_id["ACME-3"]["status"] == "FAIL" and by_id["ACME-3"]["actual"] == "644 root:root"
    os.chmod(node.path("/etc/kubernetes/audit-policy.yaml"), 0o600)
    result, report = audit_json(cisfix, "--checks-dir", str(checks_dir), "-p", "no:cisfix_cis")
    assert result.returncode == 0 and report["summary"]["FAIL"] == 0


def test_flags_are_read_from_the_running_process_first(node, cisfix, tmp_path):
    program = tmp_path / "bin" / "kube-apiserver"
    program.parent.mkdir()
    program.write_text("import time\ntime.sleep(60)\n")
    node.write("/etc/cisfix/config.yaml", f"""apiVersion: cisfix/v1
kind: NodeConfig
proc: /proc
components:
  kube-apiserver:
    process: {program}
""".encode(), mode=0o644)
    checks = tmp_path / "checks.d"
    checks.mkdir()
    shutil.copy(ACME, checks / "acme.yaml")
    # Run as the kubelet would run it: as root, in a container of the API server's pod.
    process = pod_process(node.root, "kube-system", "kube-apiserver",
                          [sys.executable, str(program), "--profiling=false", "--secure-port", "6443"])
    try:
        _, report = audit_json(cisfix, "--checks-dir", str(checks), "--disable", "ACME-2")
    finally:
        stop(process)
    (acme1,) = [r for r in report["results"] if r["id"] == "ACME-1"]
    assert acme1["status"] == "PASS"
    assert acme1["evidence"] == [{"process": f"kube-apiserver (pid {process.pid})", "detail": "--profiling"}]


def test_an_invalid_document_is_reported_by_line_and_the_rest_still_run(node, cisfix, checks_dir):
    (checks_dir / "broken.yaml").write_text(
        "apiVersion: cisfix/v1\nkind: Check\nid: BROKEN-1\ntitle: x\ncomponent: kube-apiserver\n"
        "flag: profiling\nexpect: {op: equals, value: 'false'}\n---\n"
        "apiVersion: cisfix/v1\nkind: Check\nid: FINE-1\ntitle: fine\nfile: /etc/hostname\nexpect: {op: absent}\n")
    result, report = audit_json(cisfix, "--checks-dir", str(checks_dir))
    assert result.returncode == 2
    assert f"{checks_dir / 'broken.yaml'}:7: expect.op: 'equals' is not one of" in result.stderr
    ids = {r["id"] for r in report["results"]}
    assert "FINE-1" in ids and "ACME-1" in ids and "BROKEN-1" not in ids


@pytest.mark.parametrize("text, line, words", [
    ("apiVersion: cisfix/v1\nkind: Check\nid: X\ntitle: t\nflag: f\nexpect: {op: eq, value: 1}\n", 1, "exactly one target"),
    ("apiVersion: cisfix/v1\nkind: Check\nid: X\ntitle: t\nfile: /x\nexpect: {op: mode}\nbogus: 1\n", 7, "unknown field"),
    ("apiVersion: cisfix/v1\nkind: Check\nid: X\ntitle: t\nfile: /x\n  expect: 1\n", 6, "invalid YAML"),
    ("apiVersion: cisfix/v1\nkind: Check\nid: X\ntitle: t\nfile: /x\nexpect: {op: mode}\n", 6, "'value' is a required"),
])
def test_validate_names_file_line_and_reason(tmp_path, text, line, words):
    f = tmp_path / "c.yaml"
    f.write_text(text)
    result = subprocess.run([sys.executable, "-m", "cisfix", "checks", "validate", str(f)], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.startswith(f"{f}:{line}: ") and words in result.stderr, result.stderr


def test_validate_accepts_the_acme_file():
    result = subprocess.run([sys.executable, "-m", "cisfix", "checks", "validate", str(ACME)], capture_output=True, text=True)
    assert result.returncode == 0 and "3 valid check(s)" in result.stdout


def test_schema_command_prints_the_schema_in_use():
    result = subprocess.run([sys.executable, "-m", "cisfix", "checks", "schema"], capture_output=True, text=True)
    schema = json.loads(result.stdout)
    assert schema["properties"]["apiVersion"] == {"const": "cisfix/v1"}


def test_same_id_from_two_sources_is_an_error_naming_both(node, cisfix, checks_dir, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(ACME, other / "again.yaml")
    result = cisfix("--checks-dir", str(checks_dir), "--checks-dir", str(other), "audit")
    assert result.returncode == 2
    assert str(checks_dir / "acme.yaml") in result.stderr and str(other / "again.yaml") in result.stderr


def test_a_check_that_declares_overrides_replaces_the_other(node, cisfix, checks_dir, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "mine.yaml").write_text(
        "apiVersion: cisfix/v1\nkind: Check\nid: ACME-1\ntitle: Our own take\noverrides: [ACME-1, CISFIX-2]\n"
        "file: /etc/hostname\nexpect: {op: absent}\n")
    listed = json.loads(cisfix("--checks-dir", str(checks_dir), "--checks-dir", str(other), "checks", "list",
                               "--format", "json").stdout)
    by_id = {c["id"]: c for c in listed}
    assert by_id["ACME-1"]["title"] == "Our own take" and "CISFIX-2" not in by_id


def test_disable_and_block(node, cisfix, checks_dir):
    listed = json.loads(cisfix("--checks-dir", str(checks_dir), "--disable", "ACME-2", "checks", "list",
                               "--format", "json").stdout)
    assert "ACME-2" not in {c["id"] for c in listed} and "ACME-1" in {c["id"] for c in listed}
    blocked = json.loads(cisfix("--checks-dir", str(checks_dir), "-p", "no:acme.yaml", "checks", "list",
                                "--format", "json").stdout)
    assert not {c["id"] for c in blocked} & {"ACME-1", "ACME-2", "ACME-3"}


def test_python_plugin_module_in_checks_d(node, cisfix, checks_dir):
    (checks_dir / "team.py").write_text('''
import cisfix

def audit(state):
    ok = state.read("/etc/kubernetes/manifests/kube-apiserver.yaml") is not None
    return cisfix.AuditResult(cisfix.PASS if ok else cisfix.FAIL, "manifest present", str(ok))

@cisfix.hookimpl
def cisfix_register_checks(node_info):
    return [cisfix.Check(id="TEAM-1", title="API server manifest exists", audit=audit,
                         node_types=("master",))]
''')
    result = cisfix("--checks-dir", str(checks_dir), "audit", "--check", "TEAM-1", "--format", "json")
    assert result.returncode == 0, result.stderr
    (r,) = json.loads(result.stdout)["results"]
    assert r["status"] == "PASS"
    plugins = json.loads(cisfix("--checks-dir", str(checks_dir), "plugins", "--format", "json").stdout)
    team = next(p for p in plugins if p["name"] == "team")
    assert team["checks"] == 1 and team["source"] == str(checks_dir / "team.py")


@pytest.mark.skipif(os.geteuid() != 0, reason="StrictModes applies only when cisfix runs as root")
@pytest.mark.parametrize("what", ["world-writable dir", "group-writable file", "file of another user"])
def test_root_refuses_checks_another_user_could_write(node, cisfix, checks_dir, what):
    marker = checks_dir.parent / "ran"
    (checks_dir / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('pwned')\n")
    if what == "world-writable dir":
        os.chmod(checks_dir, 0o777)
    elif what == "group-writable file":
        os.chmod(checks_dir / "evil.py", 0o664)
    else:
        os.chown(checks_dir / "evil.py", 1000, 1000)
    result = cisfix("--checks-dir", str(checks_dir), "audit")
    assert result.returncode == 2
    assert "refusing to load checks or plugins" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not marker.exists()


def test_unknown_check_id_and_unknown_format(node, cisfix):
    assert cisfix("audit", "--check", "NOPE-1").returncode == 2
    result = cisfix("audit", "--format", "yaml")
    assert result.returncode == 2 and "unknown format" in result.stderr


@pytest.mark.parametrize("option, line", [
    (("--disable", "NOSUCH-9"), "cisfix: error: --disable: no such check: NOSUCH-9 (see `cisfix checks list`)"),
    (("-p", "no:nosuch"), "cisfix: error: -p no:nosuch: no such plugin (see `cisfix plugins`)"),
])
def test_disabling_an_unknown_check_or_blocking_an_unknown_plugin_is_bad_input(node, cisfix, option, line):
    """A mistyped name would leave the check or plugin running, unnoticed."""
    result = cisfix(*option, "audit")
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [line], result.stderr


def make_bad_file(path: Path, kind: str) -> None:
    if kind == "not UTF-8":
        path.write_bytes(b"apiVersion: cisfix/v1\nid: \xff\n")
    elif kind == "NUL":
        path.write_bytes(b"apiVersion: cisfix/v1\0\n")
    elif kind == "FIFO":
        os.mkfifo(path)
    else:  # a sparse GiB: costs no disk, but minutes and gigabytes to read whole
        with open(path, "wb") as f:
            f.truncate(1 << 30)


BAD_FILES = {"not UTF-8": "not UTF-8 text (byte 26)", "NUL": "contains a NUL byte", "FIFO": "not a regular file",
             "1 GiB": "more than the 1048576"}


@pytest.mark.parametrize("kind", BAD_FILES)
def test_validate_reads_a_file_as_a_node_file_is_read(tmp_path, kind):
    bad = tmp_path / "c.yaml"
    make_bad_file(bad, kind)
    result = subprocess.run([sys.executable, "-m", "cisfix", "checks", "validate", str(bad), str(ACME)],
                            capture_output=True, text=True, timeout=60)  # a FIFO must not block
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"{bad}") and BAD_FILES[kind] in line, result.stderr
    assert "3 valid check(s)" in result.stdout  # the other file is still validated


@pytest.mark.parametrize("kind", BAD_FILES)
def test_a_checks_dir_file_is_read_as_a_node_file_is_read(node, cisfix, checks_dir, kind):
    bad = checks_dir / "bad.yaml"
    make_bad_file(bad, kind)
    result = cisfix("--checks-dir", str(checks_dir), "audit", timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and BAD_FILES[kind] in lines[0], result.stderr
