"""The k3s lab: a k3s server node whose one `k3s server` process runs every component from config.yaml and
its drop-ins, logs their flags as k3s does, and restarts as a whole."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from k3s_lab_fixtures import k3s_lab, make_k3s_lab  # noqa: F401 (fixtures)

from cisfix.lab import k3s
from cisfix.lab.layout import Layout

CORPUS = Path("/work/shared/corpus")
HARDENED = CORPUS / "manifests/praveen902012-k3s-conf__k3s-config.yaml"
EMBEDDED = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet")


def flags(args):
    """`--name=value` arguments as (name, value) pairs, repeats kept."""
    return [tuple(a[2:].split("=", 1)) for a in args]


def test_fresh_lab_runs_every_component_in_one_k3s_process_in_its_unit(k3s_lab):
    status = k3s_lab.status()
    assert set(status) == {"k3s", *EMBEDDED}
    assert all(s.healthy for s in status.values()), status
    pid = status["k3s"].pid
    assert {s.pid for s in status.values()} == {pid}
    cgroups = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    assert any(line.endswith(":/system.slice/k3s.service") for line in cgroups), cgroups
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert argv[1:3] == [str(k3s_lab.layout.host(k3s.BINARY)).encode(), b"server"]
    # sqlite through kine: the datastore is a file, no etcd runs.
    assert k3s_lab.layout.host(k3s.DB).is_file()
    assert not any(b"etcd" in Path(f"/proc/{p}/cmdline").read_bytes() for p in _lab_pids(k3s_lab))


def _lab_pids(lab):
    from cisfix.lab.control import processes_under

    return processes_under(lab.root)


def test_the_log_has_one_running_line_per_component_in_k3s_order_with_its_defaults(k3s_lab):
    lines = [line for line in k3s_lab.log_text().splitlines() if 'msg="Running ' in line]
    assert [line.split('msg="Running ')[1].split(" ")[0] for line in lines] == [
        "kube-apiserver", "kube-scheduler", "kube-controller-manager", "cloud-controller-manager", "kubelet"]
    assert all(line.startswith('time="') and '" level=info msg="Running ' in line for line in lines)
    api = dict(flags(k3s_lab.running("kube-apiserver")[0]))
    assert api["anonymous-auth"] == "false" and api["profiling"] == "false"
    assert api["authorization-mode"] == "Node,RBAC" and api["enable-admission-plugins"] == "NodeRestriction"
    assert api["etcd-servers"] == "unix://kine.sock" and api["storage-backend"] == "etcd3"
    assert api["tls-cert-file"] == f"{k3s.TLS}/serving-kube-apiserver.crt"
    names = [n for n, _ in flags(k3s_lab.running("kube-apiserver")[0])]
    assert names == sorted(names)  # GetArgs sorts by name
    assert dict(flags(k3s_lab.running("kube-controller-manager")[0]))["profiling"] == "false"
    assert dict(flags(k3s_lab.running("kube-scheduler")[0]))["profiling"] == "false"
    kubelet = dict(flags(k3s_lab.running("kubelet")[0]))
    assert kubelet["config-dir"] == k3s.KUBELET_CONF_DIR and kubelet["read-only-port"] == "0"
    assert "k3s is up and running" in k3s_lab.log_text()


def test_node_files_are_a_fresh_k3s_servers_and_cisfix_config_describes_it(k3s_lab):
    from cisfix.config import load_node_config
    from cisfix.node import Node

    host = k3s_lab.layout.host
    assert host(k3s.CONFIG).read_text() == 'write-kubeconfig-mode: "0644"\n'
    assert host(k3s.DROPINS).is_dir() and list(host(k3s.DROPINS).iterdir()) == []
    assert stat.S_IMODE(host(k3s.KUBECONFIG).stat().st_mode) == 0o644  # k3s applied write-kubeconfig-mode
    assert "client-certificate-data" in host(k3s.KUBECONFIG).read_text()
    for path in (f"{k3s.TLS}/client-ca.crt", f"{k3s.TLS}/server-ca.key", f"{k3s.CRED}/admin.kubeconfig",
                 f"{k3s.AGENT}/kubelet.kubeconfig", f"{k3s.AGENT}/client-kubelet.crt", k3s.KUBELET_DEFAULTS):
        assert host(path).is_file(), path
    assert stat.S_IMODE(host(k3s.TLS).stat().st_mode) == 0o700
    config = load_node_config(Node(str(k3s_lab.root)))  # valid against the node-config schema
    assert config["distribution"] == "k3s" and config["version"] == "1.32.0+k3s1"
    unit = config["components"]["k3s"]
    assert unit == {"process": str(host(k3s.BINARY)), "restart": [str(k3s_lab.layout.restart_program("k3s"))],
                    "unit": "system.slice/k3s.service", "log": "/var/log/k3s.log"}
    for name in EMBEDDED:
        assert set(config["components"][name]) == {"health"}, name


def test_an_appending_dropin_and_the_restart_program_give_a_new_process_and_a_new_running_line(k3s_lab):
    before = k3s_lab.status()["k3s"].pid
    k3s_lab.write_dropin("50-cis.yaml", 'kube-apiserver-arg:\n  - "enable-admission-plugins+=AlwaysPullImages"\n'
                                        '  - "request-timeout=300s"\n')
    result = k3s_lab.restart()
    assert result.returncode == 0, result.stderr
    status = k3s_lab.status()  # the restart program returns once k3s is ready: healthy at once
    assert all(s.healthy for s in status.values()), status
    assert status["k3s"].pid != before
    runs = k3s_lab.running("kube-apiserver")
    assert len(runs) == 2
    newest = flags(runs[-1])
    assert [v for n, v in newest if n == "enable-admission-plugins"] == ["NodeRestriction", "AlwaysPullImages"]
    assert ("request-timeout", "300s") in newest

    # A plain `name=` replaces k3s's default: NodeRestriction is gone.
    k3s_lab.write_dropin("50-cis.yaml", 'kube-apiserver-arg: ["enable-admission-plugins=AlwaysPullImages"]\n')
    assert k3s_lab.restart().returncode == 0
    assert [v for n, v in flags(k3s_lab.running("kube-apiserver")[-1]) if n == "enable-admission-plugins"] == [
        "AlwaysPullImages"]


@pytest.mark.parametrize("key, item, error", [
    ("kube-apiserver-arg", "bogus-flag=1", 'level=fatal msg="apiserver exited: unknown flag: --bogus-flag"'),
    ("kube-scheduler-arg", "profiling=maybe", 'level=fatal msg="scheduler exited: invalid argument \\"maybe\\" for '
                                              '\\"--profiling\\" flag: strconv.ParseBool: parsing \\"maybe\\": '
                                              'invalid syntax"'),
    ("kubelet-arg", "read-only-port=abc", 'level=fatal msg="kubelet exited: failed to parse kubelet flag: invalid '
                                          'argument \\"abc\\" for \\"--read-only-port\\" flag: strconv.ParseInt: '
                                          'parsing \\"abc\\": invalid syntax"'),
])
def test_a_bad_flag_makes_k3s_exit_with_the_components_error_and_crash_loop_until_removed(k3s_lab, key, item, error):
    dropin = k3s_lab.write_dropin("90-bad.yaml", f'{key}:\n  - "{item}"\n')
    starts = k3s_lab.starts()
    result = k3s_lab.restart()
    assert result.returncode == 1
    assert result.stderr.strip().endswith('See "systemctl status k3s.service" and "journalctl -xeu k3s.service" '
                                          'for details.')
    assert error in k3s_lab.log_text()
    # Restart=always: systemd starts it again and again, every start failing the same way.
    k3s_lab.wait_for(lambda: k3s_lab.starts() >= starts + 3, what="the crash loop")
    assert k3s_lab.log_text().count(error) >= 2
    assert not k3s_lab.status()["k3s"].healthy  # never ready: no start gets through

    dropin.unlink()
    result = k3s_lab.restart()
    assert result.returncode == 0, result.stderr
    assert all(s.healthy for s in k3s_lab.status().values())
    assert item not in " ".join(" ".join(k3s_lab.running(c)[-1]) for c in EMBEDDED)


def test_a_real_hardened_config_yaml_starts_with_every_flag_on_its_running_lines(k3s_lab):
    if not HARDENED.is_file():
        pytest.skip(f"the corpus is not on this machine ({HARDENED})")
    host = k3s_lab.layout.host
    shutil.copy(HARDENED, host(k3s.CONFIG))
    shutil.copy(CORPUS / "policies/praveen902012-k3s-conf__psa.yaml", host(f"{k3s.SERVER}/psa.yaml"))
    shutil.copy(CORPUS / "policies/praveen902012-k3s-conf__eventconfig.yaml", host(f"{k3s.SERVER}/eventconfig.yaml"))
    host(f"{k3s.SERVER}/audit.yaml").write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n")
    host(f"{k3s.SERVER}/logs").mkdir()
    result = k3s_lab.restart()
    assert result.returncode == 0, result.stderr + k3s_lab.log_text()[-2000:]
    api = flags(k3s_lab.running("kube-apiserver")[-1])
    assert ("enable-admission-plugins", "NodeRestriction,EventRateLimit") in api
    assert ("admission-control-config-file", "/var/lib/rancher/k3s/server/psa.yaml") in api
    assert ("encryption-provider-config", k3s.ENCRYPTION_CONFIG) in api  # secrets-encryption: true
    assert host(k3s.ENCRYPTION_CONFIG).is_file()
    assert ("terminated-pod-gc-threshold", "100") in flags(k3s_lab.running("kube-controller-manager")[-1])
    assert ("pod-max-pids", "1000") in flags(k3s_lab.running("kubelet")[-1])
    assert "protectKernelDefaults: true" in host(k3s.KUBELET_DEFAULTS).read_text()
    assert stat.S_IMODE(host(k3s.KUBECONFIG).stat().st_mode) == 0o600
    assert "Unknown flag" not in k3s_lab.log_text()


def test_config_files_merge_as_k3s_merges_them(tmp_path):
    layout = Layout(tmp_path)
    config, dropins = layout.host(k3s.CONFIG), layout.host(k3s.DROPINS)
    dropins.mkdir(parents=True)
    config.write_text('write-kubeconfig-mode: "0644"\nkube-apiserver-arg:\n  - "a=1"\nkubelet-arg: ["x=1"]\n')
    (dropins / "20-b.yml").write_text('kube-apiserver-arg+:\n  - "b=2"\ndebug: true\n')
    (dropins / "10-a.yaml").write_text('kubelet-arg: ["y=2"]\n')  # a plain key replaces the earlier list
    (dropins / "30-notes.txt").write_text("kubelet-arg: [ignored]\n")
    (dropins / "40-sub.yaml").mkdir()
    assert k3s.config_args(layout) == ["--write-kubeconfig-mode=0644", "--kube-apiserver-arg=a=1",
                                       "--kube-apiserver-arg=b=2", "--kubelet-arg=y=2", "--debug=true"]
    options, unknown = k3s.server_options(k3s.config_args(layout) + ["--no-such=1"])
    assert options["kube-apiserver-arg"] == ["a=1", "b=2"] and unknown == ["no-such"]


def test_arg_values_follow_k3s_getargs():
    defaults = {"enable-admission-plugins": "NodeRestriction", "profiling": "false"}
    assert k3s.get_args(defaults, ["enable-admission-plugins-=A", "enable-admission-plugins+=B", "v=2"]) == [
        "--enable-admission-plugins=A", "--enable-admission-plugins=NodeRestriction",
        "--enable-admission-plugins=B", "--profiling=false", "--v=2"]
    assert k3s.get_args(defaults, ["profiling=true", "enable-admission-plugins=C"]) == [
        "--enable-admission-plugins=C", "--profiling=true"]


def test_restart_takes_a_whole_k3s_start(make_k3s_lab):
    lab = make_k3s_lab(timing={"startup_delay": 2.0, "restart_sec": 0.3})
    started = time.monotonic()
    assert lab.restart().returncode == 0
    assert time.monotonic() - started >= 2.0


def test_create_refuses_a_version_k3s_lab_does_not_simulate(tmp_path):
    result = subprocess.run([sys.executable, "-m", "cisfix.lab.cli", "create", str(tmp_path / "old"),
                             "--distribution", "k3s", "--k8s-version", "1.29"], capture_output=True, text=True)
    assert result.returncode == 2 and "unsupported k3s Kubernetes version '1.29'" in result.stderr
    assert not os.path.exists(tmp_path / "old")
    result = subprocess.run([sys.executable, "-m", "cisfix.lab.cli", "create", str(tmp_path / "r"),
                             "--distribution", "rke3"], capture_output=True, text=True)
    assert result.returncode == 2 and "no such lab" in result.stderr


def test_stop_leaves_no_process_and_a_stopped_lab_restarts_from_its_files(make_k3s_lab):
    lab = make_k3s_lab()
    pid = lab.status()["k3s"].pid
    assert lab.stop() == []
    assert not Path(f"/proc/{pid}").exists() or b"zombie" in Path(f"/proc/{pid}/status").read_bytes().lower()
    assert _lab_pids(lab) == []
    lab.start(wait=60)
    assert len(lab.running("kube-apiserver")) == 2


def test_an_unreadable_config_file_is_fatal_at_start_and_status_says_unhealthy(k3s_lab):
    k3s_lab.write_dropin("50-broken.yaml", "kube-apiserver-arg: [unclosed\n")
    result = k3s_lab.restart()
    assert result.returncode == 1
    assert 'level=fatal msg="yaml: ' in k3s_lab.log_text() and "/etc/rancher/k3s/config.yaml.d/50-broken.yaml" in \
        k3s_lab.log_text()
    status = subprocess.run([sys.executable, "-m", "cisfix.lab.cli", "status", str(k3s_lab.root), "--format", "json"],
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 1
    assert '"k3s": {\n      "healthy": false' in status.stdout
