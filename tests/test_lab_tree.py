"""The node lab without running it: the tree `lab create` writes, command-line parsing, stand-in start-up
checks."""
from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from cisfix.lab import standin
from cisfix.lab.flags import FlagError, parse_command_line
from cisfix.lab.layout import Layout
from cisfix.lab.tree import create

ROOT_MODES = {
    "/etc/kubernetes/manifests": 0o700, "/etc/kubernetes/manifests/kube-apiserver.yaml": 0o600,
    "/etc/kubernetes/manifests/etcd.yaml": 0o600, "/etc/kubernetes/admin.conf": 0o600,
    "/etc/kubernetes/super-admin.conf": 0o600, "/etc/kubernetes/kubelet.conf": 0o600,
    "/etc/kubernetes/pki/ca.crt": 0o644, "/etc/kubernetes/pki/ca.key": 0o600, "/etc/kubernetes/pki/sa.pub": 0o600,
    "/etc/kubernetes/pki/etcd/healthcheck-client.key": 0o600, "/var/lib/etcd": 0o700,
    "/var/lib/kubelet/config.yaml": 0o644, "/var/lib/kubelet/kubeadm-flags.env": 0o644,
    "/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf": 0o644,
    # a network plugin is installed (flannel): its conflist and host-local IPAM state, as on a real node
    "/etc/cni/net.d/10-flannel.conflist": 0o644, "/var/lib/cni/networks/cbr0/10.244.0.2": 0o644,
    "/var/lib/cni/networks/cbr0/last_reserved_ip.0": 0o644,
}


@pytest.mark.parametrize("version, etcd_image", [("1.29", "3.5.10-0"), ("1.32", "3.5.16-0")])
def test_create_writes_kubeadms_tree_with_its_modes_and_a_verifiable_pki(tmp_path, version, etcd_image):
    layout = create(tmp_path / "lab", version, key_algorithm="ECDSA-P256")
    for path, mode in ROOT_MODES.items():
        assert stat.S_IMODE(os.stat(layout.host(path)).st_mode) == mode, path
    pki = layout.host("/etc/kubernetes/pki")
    for ca, leaf in (("ca", "apiserver"), ("ca", "apiserver-kubelet-client"), ("etcd/ca", "etcd/server"),
                     ("etcd/ca", "apiserver-etcd-client"), ("front-proxy-ca", "front-proxy-client")):
        result = subprocess.run(["openssl", "verify", "-CAfile", f"{pki}/{ca}.crt", f"{pki}/{leaf}.crt"],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
    apiserver = layout.host("/etc/kubernetes/manifests/kube-apiserver.yaml").read_text()
    assert f"image: registry.k8s.io/kube-apiserver:v{version}.0" in apiserver
    assert "failureThreshold: 24" in apiserver and "initialDelaySeconds: 10" in apiserver
    assert f"registry.k8s.io/etcd:{etcd_image}" in layout.host("/etc/kubernetes/manifests/etcd.yaml").read_text()


def test_create_refuses_an_unknown_version_and_a_non_empty_directory(tmp_path):
    cli = [sys.executable, "-m", "cisfix.lab.cli", "create"]
    result = subprocess.run(cli + [str(tmp_path / "a"), "--k8s-version", "1.27"], capture_output=True, text=True)
    assert result.returncode == 2 and "unsupported Kubernetes version '1.27'" in result.stderr
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x").write_text("")
    result = subprocess.run(cli + [str(tmp_path / "b")], capture_output=True, text=True)
    assert result.returncode == 2 and "is not empty" in result.stderr


@pytest.mark.parametrize("argv, message", [
    (["--x=1"], "unknown flag: --x"),
    (["-x"], "unknown shorthand flag: 'x' in -x"),
    (["--profiling=maybe"], 'invalid argument "maybe" for "--profiling" flag: strconv.ParseBool: parsing "maybe": '
                            'invalid syntax'),
    (["--secure-port=6443a"], 'invalid argument "6443a" for "--secure-port" flag: strconv.ParseInt: parsing '
                              '"6443a": invalid syntax'),
    (["--request-timeout=5x"], 'time: unknown unit "x" in duration "5x"'),
    (["--request-timeout=60"], 'time: missing unit in duration "60"'),
    (["--bind-address=1.2.3"], 'failed to parse IP: "1.2.3"'),
    (["--etcd-servers"], "flag needs an argument: --etcd-servers"),
    (["serve"], '"kube-apiserver" does not take any arguments, got [serve]'),
])
def test_command_line_errors_carry_the_binarys_message(argv, message):
    with pytest.raises(FlagError) as raised:
        parse_command_line("kube-apiserver", "1.32.0", argv)
    assert message in str(raised.value)


def test_command_line_forms_pflag_accepts():
    values = parse_command_line("kube-apiserver", "1.32.0", ["--anonymous-auth", "--v", "2", "-v=3", "--secure-port=0x1F90",
                                                   "--request-timeout=1m30s"])
    assert values == {"anonymous-auth": "true", "v": "3", "secure-port": "0x1F90", "request-timeout": "1m30s"}


@pytest.mark.parametrize("flags, message", [
    (["--authorization-mode=Node,RABC"], 'authorization-mode \\"RABC\\" is not a valid mode'),
    (["--enable-admission-plugins=NodeRestriction,PodSecurityPolicy"],
     'enable-admission-plugins plugin \\"PodSecurityPolicy\\" is unknown'),
    (["--enable-admission-plugins=EventRateLimit"],
     'couldn\'t init admission plugin \\"EventRateLimit\\": limits: Invalid value'),
    (["--tls-cipher-suites=TLS_RSA_WITH_RC4_128_MD5"], "Cipher suite TLS_RSA_WITH_RC4_128_MD5 not supported"),
    (["--tls-min-version=VersionTLS14"], 'unknown tls version \\"VersionTLS14\\"'),
    (["--audit-policy-file=/etc/kubernetes/audit-policy.yaml"],
     "open /etc/kubernetes/audit-policy.yaml: no such file or directory"),
])
def test_api_server_stand_in_refuses_to_start_like_the_real_one(tmp_path, monkeypatch, capsys, flags, message):
    pki = tmp_path / "pki"
    pki.mkdir()
    monkeypatch.setenv("LAB_MOUNTS", f'[["/etc/kubernetes/pki", "{pki}", true]]')
    assert standin.main("kube-apiserver", ["--secure-port=0", *flags]) == 1
    assert message in capsys.readouterr().err


def test_event_rate_limit_starts_with_a_complete_configuration(tmp_path, monkeypatch):
    conf = tmp_path / "admission"
    conf.mkdir()
    (conf / "admission.yaml").write_text(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n- name: EventRateLimit\n"
        "  path: eventconfig.yaml\n")
    (conf / "eventconfig.yaml").write_text(
        "apiVersion: eventratelimit.admission.k8s.io/v1alpha1\nkind: Configuration\nlimits:\n"
        "- type: Server\n  qps: 5000\n  burst: 20000\n")
    monkeypatch.setenv("LAB_MOUNTS", f'[["/etc/kubernetes/admission", "{conf}", true]]')
    values = {"enable-admission-plugins": "EventRateLimit",
              "admission-control-config-file": "/etc/kubernetes/admission/admission.yaml"}
    standin.check_event_rate_limit(values, standin.Files(standin.Mounts.from_env()))


def test_anonymous_access_restricted_to_health_paths_by_an_authentication_config(tmp_path, monkeypatch):
    (tmp_path / "auth.yaml").write_text(
        "apiVersion: apiserver.config.k8s.io/v1beta1\nkind: AuthenticationConfiguration\nanonymous:\n"
        "  enabled: true\n  conditions:\n  - path: /livez\n  - path: /readyz\n  - path: /healthz\n")
    monkeypatch.setenv("LAB_MOUNTS", f'[["/etc/kubernetes/auth", "{tmp_path}", true]]')
    files = standin.Files(standin.Mounts.from_env())
    values = {"authentication-config": "/etc/kubernetes/auth/auth.yaml"}
    paths = standin.anonymous_paths(values, files, (1, 32))
    authorize = standin.api_server_authorizer(paths)
    assert authorize("/livez", None)[0] == 200
    assert authorize("/api", None)[0] == 401
    with pytest.raises(standin.StartupError, match="anonymous-auth flag is also set"):
        standin.anonymous_paths({**values, "anonymous-auth": "false"}, files, (1, 32))
    with pytest.raises(standin.StartupError, match='unknown field "anonymous"'):
        standin.anonymous_paths(values, files, (1, 30))
    assert standin.api_server_authorizer(())("/livez", None)[0] == 401
    assert standin.api_server_authorizer(())("/livez", "kubernetes-admin")[0] == 200


def test_a_lab_has_a_real_nodes_timings_unless_asked_for_others(tmp_path):
    cli = [sys.executable, "-m", "cisfix.lab.cli", "create", "--key-algorithm", "ECDSA-P256"]
    assert subprocess.run(cli + [str(tmp_path / "real")], capture_output=True).returncode == 0
    settings = Layout(tmp_path / "real").settings()
    assert (settings.backoff_initial, settings.backoff_max, settings.kubelet_restart_sec) == (10, 300, 10)
    assert settings.file_watch and settings.probe_time_scale == 1
    assert "fileCheckFrequency: 20s" in (tmp_path / "real/var/lib/kubelet/config.yaml").read_text()

    fast = ["--file-check-frequency", "1s", "--no-watch", "--backoff-initial", "1", "--backoff-max", "30",
            "--kubelet-restart-sec", "1"]
    assert subprocess.run(cli + [str(tmp_path / "fast"), *fast], capture_output=True).returncode == 0
    settings = Layout(tmp_path / "fast").settings()
    assert (settings.backoff_initial, settings.backoff_max, settings.kubelet_restart_sec) == (1, 30, 1)
    assert not settings.file_watch
    assert "fileCheckFrequency: 1s" in (tmp_path / "fast/var/lib/kubelet/config.yaml").read_text()
    bad = subprocess.run(cli + [str(tmp_path / "bad"), "--backoff-initial", "0"], capture_output=True, text=True)
    assert bad.returncode == 2 and "back-off" in bad.stderr


def test_cni_files_audit_as_on_a_real_kubeadm_node(tmp_path):
    """1.1.9 (mode 600) fails, unscored, on the 644 files flannel writes; 1.1.10 (root:root) passes."""
    import json

    layout = create(tmp_path / "lab", "1.31", key_algorithm="ECDSA-P256")
    audit = subprocess.run([sys.executable, "-m", "cisfix", "--root", str(layout.root), "audit", "--check", "1.1.9",
                            "--check", "1.1.10", "--format", "json"], capture_output=True, text=True)
    verdicts = {r["id"]: r["status"] for r in json.loads(audit.stdout)["results"]}
    assert verdicts == {"1.1.9": "FAIL", "1.1.10": "PASS"}, audit.stdout
