"""The RKE2 lab: a node laid out as an RKE2 server, whose `rke2 server` regenerates the static pods from
config.yaml and its drop-ins at every start and runs the kubelet as its child."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import time

import pytest
from rke2_lab_fixtures import RKE2Node, make_rke2_lab  # noqa: F401 (fixture)
from ruamel.yaml import YAML

from cisfix.lab import rke2
from cisfix.lab.control import processes_under
from cisfix.lab.kubeadm import Cluster
from cisfix.lab.layout import ALL_COMPONENTS, Layout
from cisfix.lab.tree import PORT_NAMES

CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")


def pids(lab: RKE2Node) -> dict:
    return {name: s.pid for name, s in lab.status().items()}


def cgroup(pid: int) -> str:
    lines = open(f"/proc/{pid}/cgroup").read().splitlines()
    return next(line.split(":", 2)[2] for line in lines if line.startswith(("0::", "1:name=systemd:")))


def new_process(lab: RKE2Node, component: str, old: int, flag: str, present: bool = True) -> int:
    """Wait for the component's process that replaced `old` and whose argv has (or lacks) `flag`."""
    def found():
        pid = lab.status()[component].pid
        return pid if pid and pid != old and (flag in lab.argv(pid)) == present else None
    return lab.wait_for(found, 60, f"a new {component} {'with' if present else 'without'} {flag}")


def test_create_writes_rke2s_tree_and_describes_the_node_for_cisfix(tmp_path):
    layout = Layout(tmp_path / "rke2")
    result = subprocess.run([sys.executable, "-m", "cisfix.lab.cli", "create", str(layout.root), "--distribution",
                             "rke2", "--k8s-version", "1.31", "--key-algorithm", "ECDSA-P256"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    modes = {rke2.CONFIG: 0o600, rke2.MANIFESTS: 0o700, rke2.ETCD_DATA: 0o700, f"{rke2.TLS}/server-ca.key": 0o600,
             f"{rke2.TLS}/server-ca.crt": 0o644, f"{rke2.CRED}/controller.kubeconfig": 0o600,
             f"{rke2.CRED}/encryption-config.json": 0o600, rke2.KUBELET_KUBECONFIG: 0o600}
    for path, mode in modes.items():
        assert stat.S_IMODE(os.stat(layout.host(path)).st_mode) == mode, path
    config = YAML(typ="safe").load(layout.host(rke2.CONFIG).read_text())
    assert config["write-kubeconfig-mode"] == "0644" and "profile" not in config  # a fresh install
    tls = layout.host(rke2.TLS)
    for ca, leaf in (("server-ca", "serving-kube-apiserver"), ("client-ca", "client-kube-apiserver"),
                     ("etcd/server-ca", "etcd/server-client"), ("etcd/peer-ca", "etcd/peer-server-client")):
        check = subprocess.run(["openssl", "verify", "-CAfile", f"{tls}/{ca}.crt", f"{tls}/{leaf}.crt"],
                               capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
    node = YAML(typ="safe").load(layout.host("/etc/cisfix/config.yaml").read_text())
    ports = layout.settings().ports
    assert (node["distribution"], node["version"], node["proc"]) == ("rke2", "1.31.0+rke2r1", "/proc")
    assert node["components"]["rke2-server"] == {
        "process": str(layout.host("/usr/local/bin/rke2")), "unit": "system.slice/rke2-server.service",
        "restart": [str(layout.host("/usr/local/sbin/lab-restart-rke2-server"))]}
    assert node["components"]["kube-apiserver"]["health"]["url"] == f"https://127.0.0.1:{ports['apiserver']}/livez"
    assert node["components"]["kubelet"]["process"] == str(layout.host("/var/lib/rancher/rke2/bin/kubelet"))
    assert not any("manifest" in c or "config" in c for c in node["components"].values())
    assert layout.settings().distribution == "rke2"


def test_create_refuses_a_distribution_it_does_not_know(tmp_path):
    result = subprocess.run([sys.executable, "-m", "cisfix.lab.cli", "create", str(tmp_path / "k"),
                             "--distribution", "openshift"], capture_output=True, text=True)
    assert result.returncode == 2 and "openshift" in result.stderr
    assert not (tmp_path / "k").exists()


def test_the_configuration_is_read_with_rke2s_merge_rules(tmp_path):
    layout = Layout(tmp_path)
    layout.host(rke2.CONFIG_D).mkdir(parents=True)
    layout.host(rke2.CONFIG).write_text("kube-apiserver-arg: [audit-log-maxage=1]\nkubelet-arg: [v=1]\ntoken: one\n")
    layout.host(f"{rke2.CONFIG_D}/20-b.yml").write_text("kube-apiserver-arg+: [audit-log-maxbackup=2]\ntoken: two\n")
    layout.host(f"{rke2.CONFIG_D}/10-a.yaml").write_text("kubelet-arg: [v=2]\netcd-arg: [snapshot-count=5, quota]\n")
    layout.host(f"{rke2.CONFIG_D}/30-c.yaml.bak").write_text("token: ignored\nkube-apiserver-arg: [profiling=true]\n")
    config = rke2.read_config(layout)
    assert rke2.setting(config, "token") == "two"  # a later file wins; 30-c.yaml.bak is not a drop-in
    cluster = Cluster("1.32.0", {name: 1000 + i for i, name in enumerate(PORT_NAMES)})
    args = rke2.api_server_args(cluster, config)
    assert {"--audit-log-maxage=1", "--audit-log-maxbackup=2", "--profiling=false"} <= set(args)  # `key+` appends
    assert "--v=2" in rke2.kubelet_args(cluster, config) and "--v=1" not in rke2.kubelet_args(cluster, config)
    etcd = rke2.etcd_config(cluster, config)
    assert etcd["snapshot-count"] == 5 and "quota" not in etcd  # an etcd-arg without `=` is ignored
    # An item replaces the default of its name.
    layout.host(f"{rke2.CONFIG_D}/40-d.yaml").write_text("kube-scheduler-arg: [profiling=true]\n")
    scheduler = rke2.component_args(rke2.read_config(layout), "kube-scheduler", {"profiling": "false", "v": "0"})
    assert scheduler == ["--profiling=true", "--v=0"]


def test_a_configuration_rke2_cannot_read_is_an_error_naming_the_file(tmp_path):
    layout = Layout(tmp_path)
    layout.host(rke2.CONFIG_D).mkdir(parents=True)
    layout.host(f"{rke2.CONFIG_D}/50-bad.yaml").write_text("kube-apiserver-arg: [unclosed\n")
    with pytest.raises(rke2.ConfigError, match="50-bad.yaml"):
        rke2.read_config(layout)


def test_a_fresh_rke2_lab_runs_every_component_under_rke2_server(make_rke2_lab):
    lab = make_rke2_lab()
    status = lab.status()
    assert set(status) == set(ALL_COMPONENTS) | {"rke2-server"}
    assert all(s.healthy for s in status.values()), status
    server, kubelet = status["rke2-server"].pid, status["kubelet"].pid
    # The kubelet is rke2's child in rke2-server's unit cgroup, not a pod.
    assert int(open(f"/proc/{kubelet}/stat").read().rsplit(")", 1)[1].split()[1]) == server
    assert cgroup(server) == cgroup(kubelet) == "/system.slice/rke2-server.service"
    assert cgroup(status["kube-apiserver"].pid).startswith("/kubepods.slice/")
    assert f"--config-dir={rke2.KUBELET_CONF_D}" in lab.argv(kubelet)
    # etcd runs with its configuration file only; the static pods are RKE2's generated ones.
    assert lab.argv(status["etcd"].pid)[1:] == [f"--config-file={rke2.ETCD_CONFIG}"]
    etcd_config = YAML(typ="safe").load(lab.layout.host(rke2.ETCD_CONFIG).read_text())
    assert etcd_config["client-transport-security"]["client-cert-auth"] is True
    for name in CONTROL_PLANE:
        assert stat.S_IMODE(os.stat(lab.manifest(name)).st_mode) == 0o644, name  # no `profile: cis`
    assert stat.S_IMODE(os.stat(lab.layout.host(rke2.KUBECONFIG)).st_mode) == 0o644  # write-kubeconfig-mode


def test_an_arg_in_a_dropin_reaches_the_api_server_at_restart_and_the_others_keep_running(make_rke2_lab):
    lab = make_rke2_lab()
    before = pids(lab)
    lab.dropin("10-audit.yaml").write_text('kube-apiserver-arg:\n- "audit-log-maxage=30"\n')
    lab.dropin("20-more.yaml").write_text('kube-apiserver-arg+:\n- "audit-log-maxbackup=10"\n')
    assert lab.restart_rke2().returncode == 0  # once the new rke2 is ready: its API server answers
    apiserver = lab.status()["kube-apiserver"].pid
    assert apiserver != before["kube-apiserver"]
    assert {"--audit-log-maxage=30", "--audit-log-maxbackup=10"} <= set(lab.argv(apiserver))
    lab.wait_healthy(60)
    manifest = YAML(typ="safe").load(lab.manifest("kube-apiserver").read_text())
    assert {"--audit-log-maxage=30", "--audit-log-maxbackup=10"} <= set(manifest["spec"]["containers"][0]["args"])
    after = pids(lab)
    assert after["rke2-server"] != before["rke2-server"] and after["kubelet"] != before["kubelet"]
    for name in ("etcd", "kube-controller-manager", "kube-scheduler"):  # unchanged manifests: adopted
        assert after[name] == before[name], name


def test_an_etcd_arg_goes_into_etcds_configuration_file_and_restarts_etcd(make_rke2_lab):
    lab = make_rke2_lab()
    before = pids(lab)
    lab.dropin("50-etcd.yaml").write_text("etcd-arg:\n- snapshot-count=5000\n")
    lab.restart_rke2()
    lab.wait_for(lambda: lab.status()["etcd"].pid not in (None, before["etcd"]), 60, "a new etcd")
    lab.wait_healthy(60)
    assert YAML(typ="safe").load(lab.layout.host(rke2.ETCD_CONFIG).read_text())["snapshot-count"] == 5000
    assert lab.argv(lab.status()["etcd"].pid)[1:] == [f"--config-file={rke2.ETCD_CONFIG}"]


def test_a_bad_flag_crash_loops_the_api_server_with_its_own_error_and_removing_it_heals(make_rke2_lab):
    lab = make_rke2_lab()
    good = lab.status()["kube-apiserver"].pid
    dropin = lab.dropin("90-bad.yaml")
    dropin.write_text("kube-apiserver-arg:\n- no-such-flag=1\n")
    since = time.time()
    blocked = lab.restart_rke2(wait=0)  # never ready: `systemctl restart` waits on (TimeoutStartSec=0)
    exited = lab.wait_for_event("container-exited", "kube-apiserver", since, count=2)
    assert "Error: unknown flag: --no-such-flag" in exited[0]["message"]
    assert lab.events("restarted", "kube-apiserver", since)  # CrashLoopBackOff
    logs = list(lab.layout.host("/var/log/pods").glob("kube-system_kube-apiserver-lab-node_*/kube-apiserver/*.log"))
    assert any("unknown flag: --no-such-flag" in log.read_text() for log in logs)
    assert lab.status()["kube-apiserver"].healthy is False

    assert blocked.poll() is None
    dropin.unlink()
    assert lab.restart_rke2().returncode == 0
    assert blocked.wait(30) == 1 and "failed" in blocked.stderr.read()  # its job was replaced
    new_process(lab, "kube-apiserver", good, "--no-such-flag=1", present=False)
    lab.wait_healthy(60)


def test_a_hand_edit_of_a_generated_manifest_is_reverted_at_the_next_restart(make_rke2_lab):
    lab = make_rke2_lab()
    original = lab.manifest("kube-scheduler").read_bytes()
    old = lab.status()["kube-scheduler"].pid
    lab.write_manifest("kube-scheduler.yaml", original.decode().replace("--profiling=false", "--profiling=true"))
    edited = new_process(lab, "kube-scheduler", old, "--profiling=true")
    apiserver = lab.manifest("kube-apiserver").read_bytes()
    before = pids(lab)
    assert lab.restart_rke2().returncode == 0
    new_process(lab, "kube-scheduler", edited, "--profiling=false")
    assert lab.manifest("kube-scheduler").read_bytes() == original
    # rke2 removes and rewrites the API server's manifest at every start: the same bytes, a new process.
    assert lab.manifest("kube-apiserver").read_bytes() == apiserver
    assert lab.status()["kube-apiserver"].pid != before["kube-apiserver"]
    assert lab.status()["kube-controller-manager"].pid == before["kube-controller-manager"]
    lab.wait_healthy(60)


def test_stop_leaves_no_process_and_status_reports_everything_down(make_rke2_lab):
    lab = make_rke2_lab()
    assert lab.stop() == []
    assert processes_under(lab.root) == []
    assert list(lab.layout.pods_dir.glob("*.json")) == []
    status = lab.status()
    assert not any(s.healthy or s.pid for s in status.values()), status


def test_profile_cis_is_refused_on_an_unprepared_node_until_the_profile_goes(make_rke2_lab):
    lab = make_rke2_lab()
    (lab.layout.host("/proc/sys/kernel")).mkdir(parents=True)  # the node's kernel: panic=0, not 10
    lab.layout.host("/proc/sys/kernel/panic").write_text("0\n")
    dropin = lab.dropin("80-cis.yaml")
    dropin.write_text("profile: cis\n")
    restarts = lab.restarts("rke2-server")
    refused = lab.restart_rke2()
    assert refused.returncode == 1 and "rke2-server.service failed" in refused.stderr.read()
    # rke2 exits at once, the unit restarts it after RestartSec, again and again; the kubelet is down.
    lab.wait_for(lambda: lab.restarts("rke2-server") >= restarts + 3, 60, "rke2-server to crash-loop")
    log = lab.layout.host("/var/log/lab/rke2-server.log").read_text()
    assert "missing required: user: unknown user etcd" in log
    assert "invalid kernel parameter value kernel.panic=0 - expected 10" in log
    assert lab.status()["kubelet"].healthy is False
    dropin.unlink()
    lab.wait_healthy(60)


def test_profile_cis_on_a_prepared_node_writes_its_manifests_0600_with_audit_logging(make_rke2_lab):
    lab = make_rke2_lab()
    for name, value in rke2.KERNEL_PARAMETERS.items():  # a tuned kernel, and the etcd user
        path = lab.layout.host("/proc/sys/" + name.replace(".", "/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{value}\n")
    lab.layout.host("/etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\netcd:x:52034:52034::/:/sbin/nologin\n")
    lab.layout.host("/etc/group").write_text("root:x:0:\netcd:x:52034:\n")
    before = pids(lab)
    lab.dropin("80-cis.yaml").write_text("profile: cis\n")
    lab.restart_rke2()
    apiserver = new_process(lab, "kube-apiserver", before["kube-apiserver"], f"--audit-policy-file={rke2.AUDIT_POLICY}")
    lab.wait_healthy(60)
    assert f"--audit-log-path={rke2.AUDIT_LOG}" in lab.argv(apiserver)
    assert lab.layout.host(rke2.AUDIT_POLICY).is_file()
    for name in CONTROL_PLANE:
        assert stat.S_IMODE(os.stat(lab.manifest(name)).st_mode) == 0o600, name
    etcd = YAML(typ="safe").load(lab.manifest("etcd").read_text())
    assert etcd["spec"]["securityContext"] == {"runAsGroup": 52034, "runAsUser": 52034}
    assert "--protect-kernel-defaults=true" in lab.argv(lab.status()["kubelet"].pid)
    pss = YAML(typ="safe").load(lab.layout.host(rke2.PSS_CONFIG).read_text())
    assert pss["plugins"][0]["configuration"]["defaults"]["enforce"] == "restricted"
