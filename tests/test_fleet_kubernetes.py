"""deploy/kubernetes: every manifest carries the fields Kubernetes requires and those the design relies
on (no cluster here, so the structure is checked); every host path a pod mounts is one the layout and
checks declare (`cisfix paths`), read-only unless a fix writes there, and that list is complete: an audit
of a tree holding only those paths gives the full node's verdicts. What can run here runs: the audit
container's own commands against a lab node, with the host's root at the lab's root."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest
from ruamel.yaml import YAML

from cisfix.lab.control import find_process
from cisfix.paths_command import Mount, mounts
from cisfix.types import HIDE, READ, WRITE, HostPath

DEPLOY = Path(__file__).resolve().parents[1] / "deploy/kubernetes"
MANIFESTS = sorted(DEPLOY.glob("*.yaml"))
NODE_PLACEHOLDER = "NODE_NAME"  # fix-job.yaml is a template with one node's name to fill in
HOSTPATH_TYPES = {"", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice", "BlockDevice"}
VOLUME_SOURCES = {"hostPath", "emptyDir", "configMap", "secret", "projected", "persistentVolumeClaim"}
API_VERSIONS = {"Namespace": "v1", "DaemonSet": "apps/v1", "Job": "batch/v1", "CronJob": "batch/v1",
                "NetworkPolicy": "networking.k8s.io/v1"}
POD_KINDS = ("DaemonSet", "Job", "CronJob")
HOST = "/host"  # where the pods see the node: `cisfix --root /host`
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def documents() -> Iterator[Tuple[str, dict]]:
    for path in MANIFESTS:
        for index, doc in enumerate(YAML(typ="safe").load_all(path.read_text())):
            yield f"{path.name}#{index}", doc


DOCUMENTS = list(documents())


def all_of_kind(kind: str) -> List[dict]:
    return [doc for _, doc in DOCUMENTS if doc["kind"] == kind]


def by_kind(kind: str) -> dict:
    found = all_of_kind(kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def by_name(name: str) -> dict:
    (found,) = [doc for _, doc in DOCUMENTS if doc["metadata"]["name"] == name]
    return found


AUDIT_CONTROL_PLANE, AUDIT_WORKERS = "cisfix-audit-control-plane", "cisfix-audit-workers"


def pod_template(doc: dict) -> dict:
    spec = doc["spec"]["jobTemplate"]["spec"] if doc["kind"] == "CronJob" else doc["spec"]
    return spec["template"]


def containers(pod_spec: dict) -> List[dict]:
    return pod_spec.get("initContainers", []) + pod_spec["containers"]


def host_mounts(pod_spec: dict) -> Dict[str, dict]:
    """{node path: its container mount} for every hostPath volume mounted under /host."""
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    found = {}
    for container in containers(pod_spec):
        for mount in container.get("volumeMounts", []):
            source = volumes[mount["name"]].get("hostPath")
            if source and (mount["mountPath"] + "/").startswith(HOST + "/"):
                assert mount["mountPath"] == HOST + source["path"], mount  # the node path, under /host
                found[source["path"]] = mount
    return found


def masks(pod_spec: dict) -> Dict[str, dict]:
    """{node path: mount} of the empty folders laid over paths under /host."""
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    return {m["mountPath"][len(HOST):]: m for c in containers(pod_spec) for m in c.get("volumeMounts", [])
            if "emptyDir" in volumes[m["name"]] and m["mountPath"].startswith(HOST + "/")}


def declared(run: str, root: str = "/") -> Dict[str, dict]:
    """`cisfix paths --for RUN` of a node (the default kubeadm layout when ROOT is no node): {path: entry}."""
    result = subprocess.run([sys.executable, "-m", "cisfix", "--root", root, "paths", "--for", run, "--format", "json"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return {entry["path"]: entry for entry in json.loads(result.stdout)}


def inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def test_declared_paths_fold_into_the_folders_to_mount_with_the_strongest_access_and_hidden_ones_never_given():
    declarations = [
        HostPath("/etc/k", "settings", fix=WRITE), HostPath("/etc/k/pki", "probe keys", audit=""),
        HostPath("/etc/k/manifests/", "manifests", fix=WRITE), HostPath("/var/k", "config", fix=WRITE),
        HostPath("/var/k/pods", "secrets", audit=HIDE, fix=HIDE), HostPath("/var/k/pods/x", "wants a secret"),
        HostPath("/elsewhere/pods", "nothing to hide here", audit=HIDE, fix=HIDE),
        HostPath("/var/log/x.log", "log", audit="", fix=WRITE, folder=False), HostPath("/etc/k", "settings")]
    assert mounts(declarations, "audit") == [
        Mount("/etc/k", READ, True, ("settings", "manifests")), Mount("/var/k", READ, True, ("config",)),
        Mount("/var/k/pods", HIDE, True, ("secrets",))]
    assert mounts(declarations, "fix") == [
        Mount("/etc/k", WRITE, True, ("settings", "manifests", "probe keys")), Mount("/var/k", WRITE, True, ("config",)),
        Mount("/var/k/pods", HIDE, True, ("secrets",)), Mount("/var/log/x.log", WRITE, False, ("log",))]


def test_there_are_manifests_for_the_audit_and_the_fix():
    assert {doc["kind"] for _, doc in DOCUMENTS} >= {"DaemonSet", "Job"}


@pytest.mark.parametrize("name,doc", DOCUMENTS, ids=[name for name, _ in DOCUMENTS])
def test_every_document_has_the_fields_kubernetes_requires(name, doc):
    assert doc["apiVersion"] == API_VERSIONS[doc["kind"]]
    assert DNS_SUBDOMAIN.match(doc["metadata"]["name"].replace(NODE_PLACEHOLDER, "node-1")), doc["metadata"]
    if doc["kind"] not in POD_KINDS:
        return
    assert DNS_LABEL.match(doc["metadata"]["namespace"])
    template = pod_template(doc)
    if doc["kind"] == "DaemonSet":
        selector = doc["spec"]["selector"]["matchLabels"]
        assert selector and selector.items() <= template["metadata"]["labels"].items()
    else:
        assert template["spec"]["restartPolicy"] in ("Never", "OnFailure")  # Jobs may not use Always
    spec = template["spec"]
    assert containers(spec)
    names = [c["name"] for c in containers(spec)]
    assert len(set(names)) == len(names) and all(DNS_LABEL.match(n) for n in names)
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    assert len(volumes) == len(spec.get("volumes", []))
    for volume in volumes.values():
        assert len(VOLUME_SOURCES & set(volume)) == 1, volume  # exactly one source
        if "hostPath" in volume:
            assert volume["hostPath"]["path"].startswith("/")
            assert volume["hostPath"].get("type", "") in HOSTPATH_TYPES
    for container in containers(spec):
        assert container["image"] and (container.get("command") or container.get("args"))
        paths = [m["mountPath"] for m in container.get("volumeMounts", [])]
        assert len(set(paths)) == len(paths) and all(p.startswith("/") for p in paths)
        assert {m["name"] for m in container.get("volumeMounts", [])} <= set(volumes), "a mount names no volume"
        for variable in container.get("env", []):
            assert variable["name"] and isinstance(variable.get("value", ""), str)  # env values are strings


@pytest.mark.parametrize("name", [AUDIT_CONTROL_PLANE, AUDIT_WORKERS])
def test_the_audit_mounts_only_declared_paths_read_only_and_hides_the_kubelets_secrets(name):
    spec = pod_template(by_name(name))["spec"]
    wanted = declared("audit")
    given = {p for p, e in wanted.items() if e["access"] != "hide"}
    mounted = host_mounts(spec)
    assert set(mounted) <= given, set(mounted) - given
    # Every declared path: a worker has no etcd data folder (a missing hostPath would be created).
    assert given - set(mounted) == ({"/var/lib/etcd"} if name == AUDIT_WORKERS else set())
    for path, mount in mounted.items():
        assert mount.get("readOnly") is True and wanted[path]["access"] == "read", path
    for volume in (v["hostPath"] for v in spec["volumes"] if v.get("hostPath", {}).get("path") in wanted):
        kinds = ("Directory", "DirectoryOrCreate") if wanted[volume["path"]]["folder"] else ("File",)
        assert volume["type"] in kinds, volume
    hidden = {p for p, e in wanted.items() if e["access"] == "hide"}
    assert hidden and set(masks(spec)) == hidden and all(m.get("readOnly") for m in masks(spec).values())
    # Outside /host, one folder of the node is written: the node_exporter textfile folder, the report.
    (container,) = spec["containers"]
    writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
    assert writable == {"/textfile", env(container, "SHIV_ROOT")}
    textfile = next(v for v in spec["volumes"] if v["name"] == "textfile")
    assert textfile["hostPath"] == {"path": "/var/lib/node_exporter/textfile", "type": "DirectoryOrCreate"}


@pytest.mark.parametrize("name", [AUDIT_CONTROL_PLANE, AUDIT_WORKERS])
def test_the_audit_runs_as_root_without_capabilities_privilege_or_host_namespaces(name):
    spec = pod_template(by_name(name))["spec"]
    assert not any(spec.get(k) for k in ("hostPID", "hostNetwork", "hostIPC"))  # /proc is mounted instead
    assert spec["automountServiceAccountToken"] is False
    assert {"operator": "Exists"} in spec["tolerations"]  # control-plane nodes too
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["securityContext"]["runAsUser"] == 0  # the manifests and keys are root's, 0600
    (container,) = spec["containers"]
    context = container["securityContext"]
    assert context["capabilities"] == {"drop": ["ALL"]}  # nothing added back
    assert context["allowPrivilegeEscalation"] is False and context["privileged"] is False
    assert context["readOnlyRootFilesystem"] is True
    policy = by_kind("NetworkPolicy")["spec"]  # and no network at all
    assert policy["podSelector"]["matchLabels"].items() <= pod_template(by_name(name))["metadata"]["labels"].items()
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"} and not policy.get("ingress") and not policy.get("egress")


def test_the_two_audit_daemonsets_differ_only_in_their_nodes_and_the_etcd_data_folder():
    control_plane, workers = (pod_template(by_name(n)) for n in (AUDIT_CONTROL_PLANE, AUDIT_WORKERS))
    assert control_plane["spec"]["nodeSelector"] == {"node-role.kubernetes.io/control-plane": ""}
    (term,) = workers["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term["matchExpressions"] == [{"key": "node-role.kubernetes.io/control-plane", "operator": "DoesNotExist"}]

    def without_etcd(template: dict) -> dict:
        spec = {k: v for k, v in template["spec"].items() if k not in ("nodeSelector", "affinity")}
        spec["volumes"] = [v for v in spec["volumes"] if v["name"] != "var-lib-etcd"]
        spec["containers"] = [{**c, "volumeMounts": [m for m in c["volumeMounts"] if m["name"] != "var-lib-etcd"]}
                              for c in spec["containers"]]
        return spec
    assert without_etcd(control_plane) == without_etcd(workers)
    names = [{v["name"] for v in t["spec"]["volumes"]} for t in (control_plane, workers)]
    assert names[0] - names[1] == {"var-lib-etcd"} and names[1] <= names[0]


def test_the_fix_job_mounts_only_declared_paths_writable_only_where_a_fix_writes():
    job = by_kind("Job")
    spec = job["spec"]["template"]["spec"]
    wanted = declared("fix")
    given = {p for p, e in wanted.items() if e["access"] != "hide"}
    mounted = host_mounts(spec)
    assert set(mounted) <= given, set(mounted) - given
    # The etcd data folder is left out (workers have none): its two checks are left out with it.
    assert given - set(mounted) == {"/var/lib/etcd"}
    (container,) = spec["containers"]
    assert " ".join(container["command"]).endswith("--disable 1.1.11 --disable 1.1.12")
    for path, mount in mounted.items():
        assert (not mount.get("readOnly")) == (wanted[path]["access"] == "write"), path
    hidden = {p for p, e in wanted.items() if e["access"] == "hide"}
    assert hidden and set(masks(spec)) == hidden and all(m.get("readOnly") for m in masks(spec).values())


@pytest.mark.parametrize("name", [AUDIT_CONTROL_PLANE, AUDIT_WORKERS, "cisfix-fix-NODE_NAME"])
def test_no_pod_sees_the_hosts_root_its_shadow_file_or_other_pods_secrets(name):
    spec = pod_template(by_name(name))["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    sources = [v["hostPath"]["path"] for v in volumes.values() if "hostPath" in v]
    masked = set(masks(spec))
    for secret in ("/etc/shadow", "/etc/gshadow", "/root", "/var/lib/kubelet/pods", "/var/lib/kubelet/plugins",
                   "/etc/ssh", "/var/lib/containerd", "/run/containerd/containerd.sock"):
        seen_through = [s for s in sources if inside(secret, s)]
        assert not seen_through or any(inside(secret, m) for m in masked), (secret, seen_through)
    assert "/" not in sources and "/etc" not in sources and "/var/lib" not in sources


def test_the_fix_job_is_pinned_to_one_node_never_retried_and_says_why_it_is_privileged():
    job = by_kind("Job")
    spec = job["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"kubernetes.io/hostname": NODE_PLACEHOLDER}
    assert NODE_PLACEHOLDER in job["metadata"]["name"]
    assert job["spec"]["backoffLimit"] == 0 and spec["restartPolicy"] == "Never"
    (container,) = spec["containers"]
    # The pod stays off the host network: only cisfix enters the node's network namespace, where the gate
    # probes 127.0.0.1; privileged and hostPID: that nsenter, and the kubelet's restart through nsenter
    # into PID 1. Each says so where it is set.
    assert container["command"][:10] == ["nsenter", "--target", "1", "--net", "--", "python3", "/cisfix.pyz",
                                         "--root", HOST, "fix"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    text = (DEPLOY / "fix-job.yaml").read_text()
    assert not spec.get("hostNetwork") and re.search(r"# cisfix in the node's network namespace: .*127\.0\.0\.1", text)
    assert spec["hostPID"] is True and re.search(r"hostPID: true +# .*nsenter", text)
    assert container["securityContext"]["privileged"] is True and re.search(r"privileged: true +# .*nsenter", text)
    assert spec["automountServiceAccountToken"] is False


def test_every_host_mount_says_why_in_a_comment():
    for path in MANIFESTS:
        for line in path.read_text().splitlines():
            if re.match(r"\s*- \{name: [\w-]+, mountPath: /host/", line) and "name: hidden" not in line:
                assert "#" in line, line


def env(container: dict, name: str) -> str:
    return next(v["value"] for v in container["env"] if v["name"] == name)


def test_the_container_recipe_holds_the_checked_pyz_where_the_manifests_run_it():
    recipe = (DEPLOY / "Containerfile").read_text()
    assert "sha256sum -c cisfix.pyz.sha256" in recipe
    assert re.search(r"^COPY --from=\S+ .*/cisfix\.pyz /cisfix\.pyz$", recipe, re.M)
    assert 'ENTRYPOINT ["python3", "/cisfix.pyz"]' in recipe
    assert "apk add --no-cache util-linux-misc" in recipe  # nsenter: the fix Job's kubelet restart
    images = set()
    for doc in all_of_kind("DaemonSet") + all_of_kind("Job"):
        spec = pod_template(doc)["spec"]
        (container,) = spec["containers"]
        images.add(container["image"])
        assert "python3 /cisfix.pyz --root /host" in " ".join(container.get("command", []) + container.get("args", []))
        # The archive extracts into SHIV_ROOT: an emptyDir mounted there keeps the root file system read-only.
        shiv = next(m for m in container["volumeMounts"] if m["mountPath"] == env(container, "SHIV_ROOT"))
        assert "emptyDir" in next(v for v in spec["volumes"] if v["name"] == shiv["name"])
    assert len(images) == 1


def audit_commands() -> Tuple[str, List[str]]:
    """The audit container's loop script and the cisfix command lines it runs each round."""
    (container,) = pod_template(by_name(AUDIT_CONTROL_PLANE))["spec"]["containers"]
    assert container["command"] == ["/bin/sh", "-c"]
    script = container["args"][0]
    return script, [line.strip() for line in script.splitlines() if line.strip().startswith("python3 /cisfix.pyz")]


def test_the_audit_containers_commands_print_kube_bench_json_for_a_lab_node(lab, pyz, tmp_path):
    script, commands = audit_commands()
    assert subprocess.run(["sh", "-n", "-c", script]).returncode == 0  # the loop itself parses
    assert [c.split(" audit ")[1].split()[:2] for c in commands] == [["--format", "prometheus"], ["--format", "kube-bench"]]
    textfile = tmp_path / "textfile"
    textfile.mkdir()
    env = {"PATH": "/usr/bin:/bin", "SHIV_ROOT": str(tmp_path / "shiv")}
    outputs = []
    for command in commands:
        # The pod's view: the host's root at /host (here the lab's root), the textfile directory mounted.
        line = (command.replace("python3 /cisfix.pyz", f"{sys.executable} {pyz}")
                .replace("/host", str(lab.root)).replace("/textfile/", f"{textfile}/"))
        result = subprocess.run(["sh", "-c", line], capture_output=True, text=True, env=env, timeout=120)
        assert result.returncode in (0, 1), result.stderr  # 1: checks failing, as on a fresh node
        outputs.append(result.stdout)

    assert outputs[0] == ""
    metrics = (textfile / "cisfix.prom").read_text()
    assert re.search(r'^cisfix_checks\{status="FAIL"\} [1-9]', metrics, re.M)

    report = json.loads(outputs[1])
    assert {"Controls", "Totals"} <= set(report)
    results = {}
    for control in report["Controls"]:
        assert control["node_type"] and control["version"]
        for group in control["tests"]:
            for r in group["results"]:
                assert r["status"] in ("PASS", "FAIL", "WARN", "INFO")
                results[r["test_number"]] = r
    assert report["Totals"]["total_fail"] > 0 and len(results) > 100
    # Read from the live process found in /proc (the lab's node configuration says `proc: /proc`).
    apiserver = find_process(str(lab.layout.launcher("kube-apiserver")))
    assert results["1.2.15"]["evidence"] == [f"kube-apiserver (pid {apiserver})"]


def copy_declared(source: Path, target: Path, entries: Dict[str, dict]) -> None:
    """A fresh tree holding only the node's declared paths (owners, modes and links kept; the folders
    above them too), with the hidden ones left out."""
    target.mkdir()
    for path, entry in entries.items():
        relative = path.lstrip("/")
        if entry["access"] != "hide" and (source / relative).exists():
            subprocess.run(["cp", "-a", "--parents", relative, str(target)], cwd=source, check=True)
    for path, entry in entries.items():
        if entry["access"] == "hide":
            subprocess.run(["rm", "-rf", str(target / path.lstrip("/"))], check=True)


# How the audit pod runs: uid 0 with every capability dropped, no new privileges.
AS_THE_AUDIT_POD = ["setpriv", "--bounding-set", "-all", "--inh-caps", "-all", "--ambient-caps", "-all",
                    "--no-new-privs", "--"]


def verdicts(root: Path, prefix: Tuple[str, ...] = ()) -> Dict[str, Tuple[str, str, str, str]]:
    """Each check's status, actual value, reason and evidence (a file, or a live process) from `audit
    --format json`, the root's path blanked."""
    result = subprocess.run([*prefix, sys.executable, "-m", "cisfix", "--root", str(root), "audit", "--format", "json"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(result.stdout.replace(str(root), "<root>"))
    return {r["id"]: (r["status"], r["actual"], r["reason"], json.dumps(r["evidence"])) for r in report["results"]}


def test_an_audit_of_only_the_declared_paths_without_capabilities_gives_the_whole_nodes_verdicts(lab, tmp_path):
    wanted = declared("audit", str(lab.root))  # the lab node's own list (its node configuration applies)
    partial = tmp_path / "declared-only"
    copy_declared(lab.root, partial, wanted)
    left_out = [p for p in lab.root.rglob("*") if not (partial / p.relative_to(lab.root)).exists()]
    assert left_out  # the lab's tree holds more than the checks read (launchers, the lab's own state)

    # The full tree audited by root with every capability; the declared paths as the pod has them.
    full, declared_only = verdicts(lab.root), verdicts(partial, tuple(AS_THE_AUDIT_POD))
    assert declared_only == full
    statuses = [verdict[0] for verdict in full.values()]
    assert statuses.count("PASS") > 20 and statuses.count("FAIL") > 5
    # The file checks found their files, and the flag checks the live processes (the lab says proc: /proc).
    assert full["1.1.1"][0] == "PASS" and full["1.1.13"][0] == "PASS"
    apiserver = find_process(str(lab.layout.launcher("kube-apiserver")))
    assert json.loads(full["1.2.15"][3]) == [{"process": f"kube-apiserver (pid {apiserver})"}]
