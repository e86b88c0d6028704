"""Lab nodes of Kubernetes 1.29-1.35: each starts healthy with its own version's images and flag tables,
its stand-ins reject the flags that version's binaries reject and accept the ones it added, and on 1.34
(anonymous-auth conditions GA) CIS 1.2.1 is fixed live with the probe-safe AuthenticationConfiguration."""
from __future__ import annotations

import http.client
import json
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cisfix.lab.flags import FlagError, parse_command_line

VERSIONS = ["1.29", "1.30", "1.31", "1.32", "1.33", "1.34", "1.35"]
APISERVER = "/etc/kubernetes/manifests/kube-apiserver.yaml"
GATE = ("--timeout", "120", "--stability-window", "2")


def cisfix(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cisfix", "--root", str(root), *args], capture_output=True, text=True)


def journal(lab) -> list:
    path = Path(lab.root) / "var/lib/cisfix/journal.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_every_version_starts_healthy(make_lab):
    """One lab at a time (each stopped before the next): every component healthy, its images tagged
    with the version."""
    for version in VERSIONS:
        lab = make_lab(f"lab-{version}", version=version)
        status = lab.status()
        assert all(s.healthy for s in status.values()), (version, status)
        assert f"image: registry.k8s.io/kube-apiserver:v{version}.0" in lab.manifest("kube-apiserver").read_text()
        assert lab.stop() == []


@pytest.mark.parametrize("version, benchmark", [("1.29", "cis-1.11"), ("1.33", "cis-1.12"), ("1.35", "cis-2.0")])
def test_lab_create_takes_each_version_and_audit_picks_its_benchmark(tmp_path, version, benchmark):
    root = tmp_path / f"lab-{version}"
    created = cisfix(tmp_path, "lab", "create", str(root), "--k8s-version", version, "--key-algorithm", "ECDSA-P256")
    assert created.returncode == 0, created.stderr
    assert f"created a kubeadm {version}.0 control-plane node" in created.stdout
    audit = cisfix(root, "audit", "--format", "kube-bench")
    assert audit.returncode in (0, 1), audit.stderr
    assert {c["version"] for c in json.loads(audit.stdout)["Controls"]} == {benchmark}


def test_lab_create_refuses_a_version_it_has_no_tables_for(tmp_path):
    result = cisfix(tmp_path, "lab", "create", str(tmp_path / "lab"), "--k8s-version", "1.36")
    assert result.returncode == 2
    assert "unsupported Kubernetes version '1.36' (supported: 1.29, 1.30, 1.31, 1.32, 1.33, 1.34, 1.35)" in result.stderr


# (component, flag, the version that removed it)
REMOVED = [("kube-apiserver", "--cloud-provider=external", "1.33"),
           ("kube-apiserver", "--cloud-config=/etc/kubernetes/cloud.conf", "1.33"),
           ("kubelet", "--azure-container-registry-config=/etc/kubernetes/azure.json", "1.30"),
           ("kubelet", "--pod-infra-container-image=registry.k8s.io/pause:3.10", "1.35"),
           ("kubelet", "--cloud-config=/etc/kubernetes/cloud.conf", "1.34")]
# (component, flag, the version that added it)
ADDED = [("kube-apiserver", "--emulated-version=1.31", "1.31"),
         ("kube-apiserver", "--emulation-forward-compatible=true", "1.33"),
         ("kube-apiserver", "--coordinated-leadership-lease-duration=20s", "1.34"),
         ("kube-apiserver", "--min-compatibility-version=1.34", "1.35"),
         ("kube-controller-manager", "--concurrent-daemonset-syncs=3", "1.32"),
         ("kubelet", "--fail-cgroupv1=false", "1.31")]


def _previous(version: str) -> str:
    major, minor = version.split(".")
    return f"{major}.{int(minor) - 1}"


@pytest.mark.parametrize("component, flag, version", REMOVED)
def test_a_removed_flag_is_unknown_from_its_version_on(component, flag, version):
    assert parse_command_line(component, _previous(version), [flag])
    for later in VERSIONS[VERSIONS.index(version):]:
        with pytest.raises(FlagError, match=f"^unknown flag: {flag.split('=')[0]}$"):
            parse_command_line(component, later, [flag])


@pytest.mark.parametrize("component, flag, version", ADDED)
def test_an_added_flag_is_accepted_from_its_version_on(component, flag, version):
    with pytest.raises(FlagError, match=f"^unknown flag: {flag.split('=')[0]}$"):
        parse_command_line(component, _previous(version), [flag])
    for later in VERSIONS[VERSIONS.index(version):]:
        assert parse_command_line(component, later, [flag])


def test_a_1_33_api_server_rejects_cloud_provider_and_accepts_what_1_33_added(make_lab):
    lab = make_lab(version="1.33")
    path = lab.manifest("kube-apiserver")
    before = path.read_bytes()
    since = time.time()
    rejected = cisfix(lab.root, "edit", APISERVER, "--flag", "cloud-provider=external", "--format", "json", *GATE)
    assert rejected.returncode == 3, rejected.stdout + rejected.stderr
    assert json.loads(rejected.stdout)["status"] == "REMEDIATION_FAILED_ROLLED_BACK"
    assert path.read_bytes() == before
    exits = lab.events("container-exited", "kube-apiserver", since)
    assert any("unknown flag: --cloud-provider" in e["message"] for e in exits), exits
    assert [(r["phase"], r["healthy"]) for r in journal(lab) if r["type"] == "health"] == [
        ("apply", False), ("rollback", True)]

    accepted = cisfix(lab.root, "edit", APISERVER, "--flag", "emulation-forward-compatible=true", "--format", "json",
                      *GATE)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert json.loads(accepted.stdout)["status"] == "FIXED"
    assert b"- --emulation-forward-compatible=true\n" in path.read_bytes()
    assert lab.status()["kube-apiserver"].healthy


def _anonymous_get(lab, path: str) -> int:
    """An HTTPS GET of the API server without credentials: what kubeadm's probes send."""
    context = ssl.create_default_context(cafile=str(Path(lab.root) / "etc/kubernetes/pki/ca.crt"))
    context.check_hostname = False
    connection = http.client.HTTPSConnection("127.0.0.1", lab.status()["kube-apiserver"].port, context=context,
                                             timeout=10)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    finally:
        connection.close()


def test_on_1_34_cis_1_2_1_is_fixed_live_with_anonymous_access_to_the_health_endpoints_only(make_lab):
    lab = make_lab(version="1.34")
    old_pid = lab.status()["kube-apiserver"].pid
    assert _anonymous_get(lab, "/api") == 403  # anonymous requests authenticate, RBAC forbids them
    since = time.time()
    report = cisfix(lab.root, "fix", "--check", "1.2.1", "--format", "json", *GATE)
    assert report.returncode == 0, report.stdout[-2000:] + report.stderr[-2000:]
    assert [(r["id"], r["fix"]) for r in json.loads(report.stdout)["results"]] == [("1.2.1", "FIXED")]
    assert b"- --authentication-config=/etc/kubernetes/authentication-config.yaml\n" in \
        lab.manifest("kube-apiserver").read_bytes()

    status = lab.status()["kube-apiserver"]
    assert status.healthy and status.pid != old_pid
    for health in ("/livez", "/readyz", "/healthz"):
        assert _anonymous_get(lab, health) == 200, health
    assert _anonymous_get(lab, "/api") == 401
    assert _anonymous_get(lab, "/api/v1/namespaces/kube-system/secrets") == 401
    audit = json.loads(cisfix(lab.root, "audit", "--check", "1.2.1", "--format", "json").stdout)
    assert [(r["id"], r["status"]) for r in audit["results"]] == [("1.2.1", "PASS")]
    # The kubelet's own probes (anonymous, as kubeadm's) pass: the new pod started up and is ready.
    pod = lab.wait_for(lambda: (lambda state: state if state["startedUp"] and state["ready"] else None)(
        json.loads((lab.layout.pods_dir / "kube-apiserver.json").read_text())), timeout=60,
        what="the API server's startup and readiness probes to pass")
    assert pod["pid"] == status.pid
    assert lab.events("probe-failed", "kube-apiserver", since) == []
    assert lab.events("restarted", "kube-apiserver", since) == []
