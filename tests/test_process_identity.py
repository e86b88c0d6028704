"""A component is a process only root or the runtime could have started for it (`cisfix.identity`): its
uid, its executable and its pod's or unit's cgroup, never its argv. Replayed for real against a lab node
as a local user (`exec -a`) and as a root process in a pod that is not the component's; the shapes of a
node's evidence (cgroup drivers, delegated cgroups, folders) through a proc tree given with `proc:`."""
from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import List

import pytest
from conftest import APISERVER
from hostile import as_mallory, mallory, shared_dir  # noqa: F401 (fixtures)
from node_processes import NODE, fake_process, pod_cgroup, pod_log_folder
from prometheus import value
from test_drift import PROFILING, drift, fixed, set_profiling  # noqa: F401 (fixtures)

from cisfix.lab import cgroups

needs_etcd = pytest.mark.skipif(shutil.which("etcd") is None, reason="the lab needs etcd")
GATE = ("--timeout", "120", "--stability-window", "2")
CONFIG = "/etc/cisfix/config.yaml"
# A process that waits and claims nothing: `exec -a NAME python3 idle.py ARGS` makes it claim anything.
EXEC_AS = "import os, sys; os.execv(sys.executable, sys.argv[1:])"


def run(root, *args: str) -> subprocess.CompletedProcess:
    """A run of its own, as cron starts one: each run names an impostor once."""
    return subprocess.run([sys.executable, "-m", "cisfix", "--root", str(root), *args], capture_output=True, text=True)


def statuses(result: subprocess.CompletedProcess) -> dict:
    return {r["id"]: r["status"] for r in json.loads(result.stdout)["results"]}


def wait_claiming(pid: int, name: str, timeout: float = 30.0) -> None:
    """Until the process's argv[0] is `name` (its exec is done)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0] == name.encode():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"pid {pid} never claimed to be {name}")


@pytest.fixture
def idle(shared_dir) -> Path:
    path = shared_dir / "idle.py"
    path.write_text("import time\ntime.sleep(300)\n")
    os.chmod(path, 0o644)
    return path


@pytest.fixture
def impostors():
    """Start processes with `start(popen)`; every one is killed afterwards (before its lab stops)."""
    started: List[subprocess.Popen] = []
    yield started.append
    for process in started:
        process.kill()
        process.wait()


def her_process(mallory, impostors, argv: List[str]) -> int:
    """mallory's `exec -a argv[0] python3 argv[1:]`: its pid, once it claims argv[0]."""
    process = as_mallory(mallory, EXEC_AS, *argv, background=True)
    impostors(process)
    wait_claiming(process.pid, argv[0])
    return process.pid


# ---- a local user posing as a component ----

@needs_etcd
def test_a_user_posing_as_the_api_server_changes_no_verdict_and_is_named_once(lab, mallory, idle, impostors):
    checks = ("audit", "--format", "json", "--check", "1.2.15", "--check", "1.2.16")
    before = run(lab.root, *checks)
    assert before.returncode == 1 and statuses(before) == {"1.2.15": "FAIL", "1.2.16": "FAIL"}

    pid = her_process(mallory, impostors, [str(lab.layout.launcher("kube-apiserver")), str(idle),
                                           "--profiling=false", "--audit-log-path=/var/log/apiserver/audit.log"])
    named = [f"cisfix: ignored pid {pid} posing as kube-apiserver: uid {mallory[0]}"]
    after = run(lab.root, *checks)
    assert after.returncode == 1 and statuses(after) == statuses(before)
    assert after.stderr.splitlines() == named
    assert run(lab.root, "-q", *checks).stderr.splitlines() == named  # a timer's quiet run says so too
    evidence = json.loads(after.stdout)["results"][0]["evidence"][0]["process"]
    assert evidence != f"kube-apiserver (pid {pid})" and evidence.startswith("kube-apiserver (pid ")


@needs_etcd
def test_a_fake_scheduler_with_the_right_flag_does_not_hide_a_manual_drift(lab, mallory, idle, impostors):
    fixed = run(lab.root, "fix", "--check", "1.4.1", *GATE)
    assert fixed.returncode == 0, fixed.stderr
    since = time.time()
    lab.edit_manifest("kube-scheduler", "--profiling=false", "--profiling=true")  # by hand, behind cisfix's back
    lab.wait_for_event("pod-started", "kube-scheduler", since, timeout=120)
    lab.wait_healthy(120)

    pid = her_process(mallory, impostors, [str(lab.layout.launcher("kube-scheduler")), str(idle), "--profiling=false"])
    result = run(lab.root, "drift", *GATE)
    # Exit 1: the checks cisfix never fixed here still fail, as they did.
    assert result.returncode == 1 and result.stdout.startswith("CORRECTED 1.4.1 (manual"), result.stdout + result.stderr
    assert "--profiling=false" in lab.manifest("kube-scheduler").read_text()
    assert result.stderr.count(f"ignored pid {pid} posing as kube-scheduler: uid {mallory[0]}") == 1


def test_a_user_calling_herself_kubeadm_upgrade_does_not_make_drift_stand_aside(fixed, drift, mallory, idle,
                                                                                impostors):
    # The machine's processes, hers among them. The kubelet is named by the path a real one runs from: other
    # tests' lab kubelets (root's, in system.slice/kubelet.service) are not this node's, and would judge it.
    fixed.write(CONFIG, fixed.read(CONFIG) + b"proc: /proc\ncomponents:\n  kubelet:\n    process: /usr/bin/kubelet\n",
                0o644)
    set_profiling(fixed, "true")
    her_process(mallory, impostors, ["kubeadm", str(idle), "upgrade", "apply", "v1.32.1"])
    result, samples = drift("-q")
    assert result.returncode == 0, result.stderr
    assert "stands aside" not in result.stdout and result.stdout.startswith(f"CORRECTED {PROFILING}")
    assert b"--profiling=false" in fixed.read(APISERVER)
    assert value(samples, "cisfix_paused") == 0


# ---- a root process in a pod that is not the component's ----

@needs_etcd
def test_a_root_process_in_another_pods_cgroup_posing_as_the_api_server_is_ignored(lab, idle, impostors):
    etcd_pod = json.loads((lab.layout.pods_dir / "etcd.json").read_text())["cgroup"].rsplit("/", 1)[0]
    container = f"{etcd_pod}/cri-containerd-{secrets.token_hex(32)}.scope"
    launcher = str(lab.layout.launcher("kube-apiserver"))
    process = subprocess.Popen(cgroups.joined(container, [sys.executable, "-c", EXEC_AS, launcher, str(idle),
                                                          "--profiling=false"]))
    impostors(process)
    try:
        wait_claiming(process.pid, launcher)
        result = run(lab.root, "audit", "--format", "json", "--check", "1.2.15")
    finally:
        process.kill()
        process.wait()
        cgroups.remove(container)
    assert result.returncode == 1 and statuses(result) == {"1.2.15": "FAIL"}
    assert result.stderr.splitlines() == [
        f"cisfix: ignored pid {process.pid} posing as kube-apiserver: its cgroup (/{container}) is not a container "
        f"of pod kube-system/kube-apiserver"]


# ---- the lab gives the evidence a node gives ----

@needs_etcd
def test_the_lab_puts_each_pod_and_the_kubelet_in_the_cgroups_a_node_uses(make_lab):
    lab = make_lab()
    pods = {}
    for name, status in lab.status().items():
        lines = Path(f"/proc/{status.pid}/cgroup").read_text().splitlines()
        paths = {line.split(":", 2)[2] for line in lines if line.startswith("0::") or ":name=systemd:" in line}
        assert len(paths) == 1, (name, lines)
        (path,) = paths
        if name == "kubelet":
            assert path == "/system.slice/kubelet.service"
            continue
        slices = path.strip("/").split("/")
        assert slices[:2] == ["kubepods.slice", "kubepods-burstable.slice"] and slices[3].startswith("cri-containerd-")
        uid = slices[2][len("kubepods-burstable-pod"):-len(".slice")]
        assert [p.name for p in lab.layout.host("/var/log/pods").glob(f"*_{uid}")] == [
            f"kube-system_{name}-lab-node_{uid}"]
        pods[name] = slices[2]
    lab.stop()
    for hierarchy in cgroups.hierarchies():
        for pod in pods.values():
            assert not (hierarchy / "kubepods.slice/kubepods-burstable.slice" / pod).exists()


# ---- each piece of evidence, in a proc tree named by `proc:` ----

@pytest.fixture
def proc_node(node, tmp_path):
    """The offline node reading its processes from a proc tree; the API server's manifest does not
    disable profiling, so only a process the rule accepts can make 1.2.15 PASS."""
    node.write(CONFIG, node.read(CONFIG) + f"proc: {tmp_path / 'proc'}\n".encode(), 0o644)
    return node


def audit_profiling(node) -> subprocess.CompletedProcess:
    return run(node.root, "audit", "--format", "json", "--check", PROFILING)


def api_server(node, tmp_path, cgroup: str, exe: str = os.path.realpath(sys.executable), uid: int = 0) -> None:
    fake_process(tmp_path / "proc", 4242, ["kube-apiserver", "--profiling=false"], exe=exe, cgroup=cgroup, uid=uid)


def assert_not_the_api_server(node, tmp_path, cgroup: str, why: str) -> None:
    """A root process in `cgroup` carrying the flag: no verdict changes, and it is named once, with why."""
    api_server(node, tmp_path, cgroup)
    result = audit_profiling(node)
    assert statuses(result) == {PROFILING: "FAIL"}
    assert result.stderr.splitlines() == [f"cisfix: ignored pid 4242 posing as kube-apiserver: its cgroup ({cgroup}) {why}"]


@pytest.mark.parametrize("driver", [
    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid}.slice/cri-containerd-{id}.scope",
    "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid}.slice/crio-{id}.scope",
    "/kubepods.slice/kubepods-pod{uid}.slice/cri-containerd-{id}.scope",  # guaranteed: no QoS slice
    "/kubepods/burstable/pod{uid}/{id}",  # the cgroupfs driver
    "/kubepods/pod{uid}/{id}",
])
def test_a_container_of_the_components_pod_is_the_component(proc_node, tmp_path, driver):
    uid = pod_log_folder(proc_node.root, "kube-system", "kube-apiserver")
    api_server(proc_node, tmp_path, driver.format(uid=uid, id=secrets.token_hex(32)))
    result = audit_profiling(proc_node)
    assert result.stderr == "" and statuses(result) == {PROFILING: "PASS"}


@pytest.mark.parametrize("where, why", [
    # systemd delegates a user's own subtree to her: a path like a pod's, but not from the root
    ("/user.slice/user-0.slice/user@0.service/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid}"
     ".slice/cri-containerd-{id}.scope", "is not a container of pod kube-system/kube-apiserver"),
    ("/system.slice/kubelet.service", "is not a container of pod kube-system/kube-apiserver"),
    ("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{other}.slice/cri-containerd-{id}.scope",
     "is not a container of pod kube-system/kube-apiserver"),  # a pod of the node, not the API server's
])
def test_a_process_outside_the_components_pod_is_not_the_component(proc_node, tmp_path, where, why):
    uid = pod_log_folder(proc_node.root, "kube-system", "kube-apiserver")
    other = pod_log_folder(proc_node.root, "default", "kube-apiserver")  # same name, a user's namespace
    cgroup = where.format(uid=uid, other=other, id=secrets.token_hex(32))
    assert_not_the_api_server(proc_node, tmp_path, cgroup, why)


def test_a_pod_whose_log_folder_another_user_owns_is_no_proof(proc_node, tmp_path, mallory):
    uid = pod_log_folder(proc_node.root, "kube-system", "kube-apiserver")
    (folder,) = proc_node.root.glob(f"var/log/pods/*_{uid}")
    os.chown(folder, *mallory)
    api_server(proc_node, tmp_path, pod_cgroup(uid))
    result = audit_profiling(proc_node)
    assert statuses(result) == {PROFILING: "FAIL"}
    assert "is not a container of pod kube-system/kube-apiserver" in result.stderr


@pytest.mark.parametrize("where, why", [
    ("her-folder/python3", "owned by uid {uid}, not root (a folder of its executable)"),
    ("root-folder/her-python3", "owned by uid {uid}, not root (its executable)"),
])
def test_an_executable_another_user_could_replace_is_not_the_component(proc_node, tmp_path, shared_dir, mallory,
                                                                       where, why):
    uid = pod_log_folder(proc_node.root, "kube-system", "kube-apiserver")
    exe = shared_dir / where
    exe.parent.mkdir()
    shutil.copy(os.path.realpath(sys.executable), exe)
    os.chown(exe.parent if where.startswith("her-") else exe, *mallory)
    api_server(proc_node, tmp_path, pod_cgroup(uid), exe=str(exe))
    result = audit_profiling(proc_node)
    assert statuses(result) == {PROFILING: "FAIL"}
    [line] = result.stderr.splitlines()
    assert line.startswith("cisfix: ignored pid 4242 posing as kube-apiserver: ")
    assert line.endswith(why.format(uid=mallory[0]))


def test_the_kubelet_is_the_process_in_its_unit(proc_node, tmp_path):
    fake_process(tmp_path / "proc", 11, ["kubelet", "--read-only-port=10255"], exe=os.path.realpath(sys.executable),
                 cgroup="/system.slice/kubelet.service")
    fake_process(tmp_path / "proc", 12, ["kubelet", "--read-only-port=0"], exe=os.path.realpath(sys.executable),
                 cgroup="/user.slice/user-0.slice/session-1.scope", start_ticks=99999)
    result = run(proc_node.root, "audit", "--format", "json", "--check", "4.2.4")
    [evidence] = json.loads(result.stdout)["results"][0]["evidence"][:1]
    assert evidence.get("process") == "kubelet (pid 11)"
    assert result.stderr.splitlines() == [
        "cisfix: ignored pid 12 posing as kubelet: its cgroup (/user.slice/user-0.slice/session-1.scope) is not "
        "system.slice/kubelet.service"]


# How the audit DaemonSet runs: uid 0 with every capability dropped (deploy/kubernetes).
WITHOUT_CAPABILITIES = ["setpriv", "--bounding-set", "-all", "--inh-caps", "-all", "--ambient-caps", "-all",
                        "--no-new-privs", "--"]


@needs_etcd
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) is not installed")
def test_root_without_capabilities_still_knows_the_components_and_no_impostor(lab, mallory, idle, impostors):
    """The kernel hides the components' executables from root without capabilities: their uid and
    cgroup still prove them, and still refuse a user's process."""
    checks = ("audit", "--format", "json", "--check", "1.2.15", "--check", "1.4.1")
    pid = her_process(mallory, impostors, [str(lab.layout.launcher("kube-apiserver")), str(idle), "--profiling=false"])
    as_root = run(lab.root, *checks)
    capless = subprocess.run([*WITHOUT_CAPABILITIES, sys.executable, "-m", "cisfix", "--root", str(lab.root), *checks],
                             capture_output=True, text=True)
    assert capless.returncode == as_root.returncode == 1, capless.stderr
    evidence = lambda result: [r["evidence"] for r in json.loads(result.stdout)["results"]]  # noqa: E731
    assert evidence(capless) == evidence(as_root)
    assert all(e[0]["process"].split(" (pid ")[0] in ("kube-apiserver", "kube-scheduler") for e in evidence(capless))
    assert capless.stderr.splitlines() == [f"cisfix: ignored pid {pid} posing as kube-apiserver: uid {mallory[0]}"]


def test_a_process_seen_from_another_cgroup_namespace_is_not_judged_a_component(proc_node, tmp_path):
    """From inside a container with a cgroup namespace of its own, every other cgroup reads `/../…`:
    nothing ties such a process to a pod, and the run says how to run instead."""
    uid = pod_log_folder(proc_node.root, "kube-system", "kube-apiserver")
    cgroup = "/../../kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{}.scope".format(
        uid.replace("-", "_"), secrets.token_hex(32))
    assert_not_the_api_server(proc_node, tmp_path, cgroup, "is outside this run's cgroup namespace; run cisfix in "
                              "the host's (on the host, or in a privileged container)")


def test_the_logs_the_gate_quotes_are_its_own_pods(node):
    """A pod named like the API server in another namespace (anyone who may create pods there can) never
    has its log lines quoted as the API server's."""
    from cisfix.node import Node
    from cisfix.plugins import Plugins
    from cisfix.state import NodeState

    own = pod_log_folder(node.root, "kube-system", "kube-apiserver")
    other = pod_log_folder(node.root, "default", "kube-apiserver")
    for namespace, uid, line in (("kube-system", own, "etcd unreachable"), ("default", other, "all is well")):
        (folder,) = node.root.glob(f"var/log/pods/{namespace}_*_{uid}")
        (folder / "kube-apiserver").mkdir()
        (folder / "kube-apiserver" / "0.log").write_text(f"2026-12-02T06:00:00Z stderr F {line}\n")
    target = Node(str(node.root))
    state = NodeState(target, Plugins(target).info)
    files = state.log_files("kube-apiserver")
    assert [p.parent.parent.name for p in files] == [f"kube-system_kube-apiserver-{NODE}_{own}"]
    assert state.log_tail(files).endswith("etcd unreachable")


def test_a_pod_anyone_with_rights_in_kube_system_creates_is_no_static_pod(proc_node, tmp_path):
    """`kube-apiserver-backup` in kube-system: named like the API server's static pod, but its uid is the
    API server's UUID, never a static pod's hash of its manifest."""
    import uuid

    uid = pod_log_folder(proc_node.root, "kube-system", "kube-apiserver-backup", uid=str(uuid.uuid4()))
    cgroup = "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/cri-containerd-{}.scope".format(
        uid.replace("-", "_"), secrets.token_hex(32))
    assert_not_the_api_server(proc_node, tmp_path, cgroup, "is not a container of pod kube-system/kube-apiserver")


def test_a_process_that_names_itself_in_bytes_no_text_has_changes_nothing(node, mallory, idle, impostors):
    """Any process may name itself (`/proc/self/comm`) with bytes that are no UTF-8: every run reads the
    process table, so that must never end one."""
    node.write(CONFIG, node.read(CONFIG) + b"proc: /proc\n", 0o644)
    before = audit_profiling(node)
    process = as_mallory(mallory, "import time; open('/proc/self/comm', 'wb').write(b'\\xff\\xfe)\\x1b[2J');"
                         "time.sleep(300)", background=True)
    impostors(process)
    deadline = time.monotonic() + 30
    while Path(f"/proc/{process.pid}/comm").read_bytes() != b"\xff\xfe)\x1b[2J\n":
        assert time.monotonic() < deadline, "she never renamed her process"
        time.sleep(0.05)
    after = audit_profiling(node)
    # The process table is the machine's: other tests' impostors may be named too, never an internal error.
    assert (after.returncode, statuses(after)) == (before.returncode, statuses(before))
    assert "internal error" not in after.stderr and f"pid {process.pid} " not in after.stderr, after.stderr
