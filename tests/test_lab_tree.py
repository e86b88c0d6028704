"""The node lab without running it: the tree `lab create` writes, command-line parsing, stand-in start-up
checks."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from hostile import as_mallory, her_dir, mallory, shared_dir  # noqa: F401 (fixtures)

from cisfix.lab import standin
from cisfix.lab.kubeadm import cni_files
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
    """1.1.9 (mode 600) fails, unscored, on the 644 files flannel writes; 1.1.10 (root:root) passes. The
    finding counts the files it lists: the conflist and the state files, two patterns' matches as one set."""
    layout = create(tmp_path / "lab", "1.31", key_algorithm="ECDSA-P256")
    audit = subprocess.run([sys.executable, "-m", "cisfix", "--root", str(layout.root), "audit", "--check", "1.1.9",
                            "--check", "1.1.10", "--format", "json"], capture_output=True, text=True)
    results = {r["id"]: r for r in json.loads(audit.stdout)["results"]}
    assert {i: r["status"] for i, r in results.items()} == {"1.1.9": "FAIL", "1.1.10": "PASS"}, audit.stdout
    cni = sorted(cni_files())  # five: one conflist, four state files
    assert results["1.1.9"]["actual"] == f"{len(cni)} of {len(cni)} files differ"
    assert results["1.1.9"]["evidence"] == [{"file": p, "detail": "mode 644"} for p in cni]


LAB_CLI = [sys.executable, "-m", "cisfix", "lab"]
# Her "python": whatever runs it as root leaves a mark. She writes it herself, so she owns it.
HER_PROGRAM = """import os, sys
os.makedirs(os.path.dirname(sys.argv[1]), exist_ok=True)
open(sys.argv[1], "w").write("#!/bin/sh\\ntouch {marker}\\n")
os.chmod(sys.argv[1], 0o755)
"""


def refused_in_one_line(result, *words):
    assert result.returncode == 2, (result.stdout, result.stderr)
    (line,) = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr and all(w in line for w in words), line


def test_root_makes_no_lab_in_a_folder_she_owns(her_dir, mallory):
    result = subprocess.run(LAB_CLI + ["create", str(her_dir / "lab")], capture_output=True, text=True)
    refused_in_one_line(result, str(her_dir), f"owned by uid {mallory[0]}", "not using it as a lab")
    assert not (her_dir / "lab").exists()


@pytest.mark.parametrize("command", ["start", "stop", "status", "restart-kubelet", "upgrade"])
def test_root_runs_nothing_of_a_lab_she_put_together(her_dir, mallory, command):
    """Her lab: lab.json names her program as the python, next to a copy of a real lab's init."""
    lab, marker = her_dir / "lab", her_dir / "ran-as-root"
    her_python = lab / "bin" / "python"
    assert as_mallory(mallory, HER_PROGRAM.format(marker=marker), str(her_python)).returncode == 0
    settings = json.dumps({"version": "1.32.0", "ports": {}, "python": str(her_python), "import_path": []})
    made = as_mallory(mallory, "import os, sys\nfor path, text in zip(sys.argv[1::2], sys.argv[2::2]):\n"
                               "    os.makedirs(os.path.dirname(path), exist_ok=True); open(path, 'w').write(text)\n",
                      str(lab / "var/lib/lab/lab.json"), settings, str(lab / "sbin/lab-init"), "#!/usr/bin/python3\n")
    assert made.returncode == 0, made.stderr
    result = subprocess.run(LAB_CLI + [command, str(lab)], capture_output=True, text=True, timeout=60)
    refused_in_one_line(result, str(her_dir), f"owned by uid {mallory[0]}")
    assert not marker.exists(), "her program ran as root"


def test_root_does_not_run_a_python_in_her_folder_that_its_lab_json_names(tmp_path, her_dir, mallory):
    layout = create(tmp_path / "lab", key_algorithm="ECDSA-P256")
    marker, her_python = her_dir / "ran-as-root", her_dir / "python"
    assert as_mallory(mallory, HER_PROGRAM.format(marker=marker), str(her_python)).returncode == 0
    settings = json.loads(layout.settings_file.read_text())
    layout.settings_file.write_text(json.dumps({**settings, "python": str(her_python)}))
    result = subprocess.run(LAB_CLI + ["start", str(layout.root), "--wait", "0"], capture_output=True, text=True,
                            timeout=60)
    refused_in_one_line(result, str(her_dir), f"owned by uid {mallory[0]}", "not running the python that runs")
    assert not marker.exists(), "her program ran as root"


def test_root_does_not_run_a_lab_init_she_owns(tmp_path, mallory):
    layout = create(tmp_path / "lab", key_algorithm="ECDSA-P256")
    os.chown(layout.init_program, *mallory)
    result = subprocess.run(LAB_CLI + ["start", str(layout.root), "--wait", "0"], capture_output=True, text=True,
                            timeout=60)
    refused_in_one_line(result, str(layout.init_program), f"owned by uid {mallory[0]}", "not running the lab's init")
    assert not layout.init_pidfile.exists()


@pytest.mark.parametrize("kind, words", [
    ("a file", ("not a directory",)), ("a device", ("not a directory",)), ("a FIFO", ("not a directory",)),
    ("a symlink loop", ("too many levels of symbolic links",)), ("under a file", ("Not a directory",)),
])
def test_create_refuses_what_is_no_folder_in_one_line_and_creates_nothing(tmp_path, kind, words):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    target = {"a file": Path("/etc/hosts"), "a device": Path("/dev/null"), "a FIFO": scratch / "fifo",
              "a symlink loop": scratch / "loop", "under a file": scratch / "file" / "lab"}[kind]
    if kind == "a FIFO":
        os.mkfifo(target)
    elif kind == "a symlink loop":
        os.symlink(target.name, target)
    elif kind == "under a file":
        target.parent.write_text("")
    before = sorted(p.name for p in scratch.iterdir())
    result = subprocess.run(LAB_CLI + ["create", str(target)], capture_output=True, text=True, timeout=60)
    refused_in_one_line(result, *words)
    assert sorted(p.name for p in scratch.iterdir()) == before
