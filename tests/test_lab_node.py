"""The node lab against a running simulated node: start, status, restarts, the failures a real node shows."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from hostile import mallory  # noqa: F401 (fixture)

from cisfix.lab.layout import ALL_COMPONENTS


def lab_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cisfix.lab.cli", *args], capture_output=True, text=True, timeout=60)


def pids(lab) -> dict:
    return {name: s.pid for name, s in lab.status().items()}


def test_fresh_lab_is_healthy_and_status_json_shows_every_component(lab):
    result = lab_cli("status", str(lab.root), "--format", "json")
    assert result.returncode == 0, result.stderr
    components = json.loads(result.stdout)["components"]
    assert set(components) == set(ALL_COMPONENTS)
    for name, status in components.items():
        assert status["healthy"] is True, name
        assert status["pid"] and status["restarts"] == 0 and status["port"] > 1024
    assert len({s["port"] for s in components.values()}) == len(components)
    started = lab.events("pod-started")
    assert sorted(e["component"] for e in started) == sorted(ALL_COMPONENTS[:4])


def test_cisfix_finds_the_processes_and_reads_the_manifest_flags_from_proc(lab):
    from pathlib import Path

    from cisfix.layouts.kubeadm import cisfix_describe_node
    from cisfix.config import load_node_config
    from cisfix.editors.manifest import read_flags
    from cisfix.node import Node
    from cisfix.state import NodeState

    node = Node(str(lab.root))
    config = load_node_config(node)  # validates against the node-config schema
    state = NodeState(node, cisfix_describe_node(node=node, config=config), Path(config["proc"]))
    status = lab.status()
    for name in ALL_COMPONENTS:
        assert state.process(name).pid == status[name].pid, name
    for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        running = state.flags(name)
        assert running.running, name
        assert running.values == dict(read_flags(lab.manifest(name).read_text(), None, fallback=name)), name
    assert state.flags("kubelet").values.get("config") == "/var/lib/kubelet/config.yaml"


def test_editing_a_manifest_restarts_exactly_that_pod_and_a_comment_restarts_nothing(lab):
    before = pids(lab)
    since = time.time()
    lab.edit_manifest("kube-scheduler", "--leader-elect=true", "--leader-elect=false")
    lab.wait_for_event("pod-started", "kube-scheduler", since)
    lab.wait_healthy(10)
    after = pids(lab)
    assert after["kube-scheduler"] != before["kube-scheduler"]
    assert {k: v for k, v in after.items() if k != "kube-scheduler"} == \
           {k: v for k, v in before.items() if k != "kube-scheduler"}
    assert {e["component"] for e in lab.events("pod-started", since=since)} == {"kube-scheduler"}

    since = time.time()
    text = lab.manifest("kube-controller-manager").read_text()
    lab.write_manifest("kube-controller-manager.yaml", "# reviewed\n" + text)
    # A later real change is the barrier: once the kubelet acted on it, it has seen the comment too.
    lab.edit_manifest("kube-scheduler", "--leader-elect=false", "--leader-elect=true")
    lab.wait_for_event("pod-started", "kube-scheduler", since)
    assert lab.events(component="kube-controller-manager", since=since) == []
    assert pids(lab)["kube-controller-manager"] == after["kube-controller-manager"]


def test_unknown_flag_crash_loops_with_the_binary_message(lab):
    since = time.time()
    lab.add_flag("kube-controller-manager", "--no-such-flag=1")
    exited = lab.wait_for_event("container-exited", "kube-controller-manager", since, count=2)
    assert "exited with code 1" in exited[0]["message"]
    assert "Error: unknown flag: --no-such-flag" in exited[0]["message"]
    assert lab.events("restarted", "kube-controller-manager", since)
    assert lab.status()["kube-controller-manager"].healthy is False


def test_a_file_that_is_not_mounted_fails_like_in_a_pod(lab):
    policy = lab.layout.host("/etc/kubernetes/audit-policy.yaml")
    policy.write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n")
    since = time.time()
    lab.add_flag("kube-apiserver", "--audit-policy-file=/etc/kubernetes/audit-policy.yaml")
    exited = lab.wait_for_event("container-exited", "kube-apiserver", since)
    assert "open /etc/kubernetes/audit-policy.yaml: no such file or directory" in exited[0]["message"]


def test_etcd_with_a_cert_path_that_does_not_exist_crash_loops_and_takes_the_api_server_down(lab):
    since = time.time()
    lab.edit_manifest("etcd", "--cert-file=/etc/kubernetes/pki/etcd/server.crt",
                      "--cert-file=/etc/kubernetes/pki/etcd/missing.crt")
    exited = lab.wait_for_event("container-exited", "etcd", since)
    assert "/etc/kubernetes/pki/etcd/missing.crt: no such file or directory" in exited[0]["message"]
    lab.wait_for(lambda: not lab.status()["kube-apiserver"].healthy, 10, "the API server to lose etcd")


def test_anonymous_auth_false_is_killed_by_its_own_probes_then_crash_loops(make_lab):
    lab = make_lab(probe_time_scale=0.02)
    since = time.time()
    lab.add_flag("kube-apiserver", "--anonymous-auth=false")
    lab.wait_for_event("pod-started", "kube-apiserver", since)
    # The new server is up: cisfix's health check (client certificate) passes, the probes get 401.
    lab.wait_for(lambda: lab.status()["kube-apiserver"].healthy, 10, "the API server to answer authenticated")
    # A probe may first find the port not yet open (a loaded machine): one of them must get 401.
    lab.wait_for(lambda: any("401" in e["message"] for e in lab.events("probe-failed", "kube-apiserver", since)),
                 30, "a probe of the new API server to get 401")
    lab.wait_for_event("restarted", "kube-apiserver", since, count=2, timeout=40)
    assert any("will be restarted" in e["message"] for e in lab.events("probe-failed", "kube-apiserver", since))
    assert lab.status()["kube-apiserver"].restarts >= 2


def test_a_bak_file_is_a_duplicate_pod_and_a_dotfile_is_ignored(lab):
    text = lab.manifest("kube-scheduler").read_text()
    since = time.time()
    lab.write_manifest(".kube-scheduler.yaml.swp", text.replace("--leader-elect=true", "--leader-elect=false"))
    lab.write_manifest("kube-scheduler.yaml.bak", text.replace("--leader-elect=true", "--leader-elect=false"))
    duplicate = lab.wait_for_event("duplicate-pod", "kube-scheduler", since)
    # The kubelet has seen the directory since both writes: the dotfile made no pod and no event.
    assert not any(".swp" in e["message"] for e in lab.events(since=since))
    assert "kube-scheduler.yaml.bak" in duplicate[0]["message"]
    # The later file wins: the scheduler now runs what the backup says.
    lab.wait_for_event("pod-started", "kube-scheduler", since)
    assert "kube-scheduler.yaml.bak" in lab.events("pod-started", "kube-scheduler", since)[0]["message"]


def test_restarting_the_kubelet_keeps_the_pods_and_an_invalid_config_stops_it(lab):
    before = pids(lab)
    result = lab_cli("restart-kubelet", str(lab.root))
    assert result.returncode == 0, result.stderr
    lab.wait_healthy(10)
    after = pids(lab)
    assert after["kubelet"] != before["kubelet"]
    assert {k: v for k, v in after.items() if k != "kubelet"} == {k: v for k, v in before.items() if k != "kubelet"}

    config = lab.layout.host("/var/lib/kubelet/config.yaml")
    good = config.read_text()
    config.write_text(good.replace("fileCheckFrequency: 1s", "fileCheckFrequency: soon"))
    since = time.time()
    lab.restart_kubelet()
    invalid = lab.wait_for_event("config-invalid", "kubelet", since)
    assert 'time: invalid duration "soon"' in invalid[0]["message"]
    lab.wait_for(lambda: not lab.status()["kubelet"].healthy, 10, "the kubelet to be down")
    config.write_text(good)
    lab.wait_healthy(10)  # systemd's Restart=always brings it back


def test_two_labs_run_side_by_side(make_lab):
    first, second = make_lab("one"), make_lab("two")
    a, b = first.status(), second.status()
    assert all(s.healthy for s in (*a.values(), *b.values()))
    assert not {s.port for s in a.values()} & {s.port for s in b.values()}
    assert not {s.pid for s in a.values()} & {s.pid for s in b.values()}


def test_a_pod_launcher_she_owns_is_not_run_and_the_pod_fails_as_an_image_that_cannot_run(make_lab, mallory):
    lab = make_lab(start=False)
    launcher, marker = lab.layout.launcher("kube-scheduler"), lab.root.parent / "ran-as-root"
    # Her file (pytest's folders are root's alone, so root writes what she would and hands it to her).
    launcher.write_text(f"import pathlib; pathlib.Path({str(marker)!r}).write_text('pwned')\n")
    os.chown(launcher, *mallory)
    since = time.time()
    lab.start(wait=0)
    exited = lab.wait_for_event("container-exited", "kube-scheduler", since, timeout=120)
    assert f"{launcher}: owned by uid {mallory[0]}" in exited[0]["message"], exited[0]["message"]
    lab.wait_for(lambda: all(s.healthy for n, s in lab.status().items() if n != "kube-scheduler"), 120,
                 "the other components")
    assert not marker.exists(), "her launcher ran as root"
