"""deploy/kubernetes: every manifest carries the fields Kubernetes requires and those the design relies
on (no cluster here, so the structure is checked), and what can run here runs: the audit container's
own commands against a lab node, with the host's root at the lab's root."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest
from ruamel.yaml import YAML

from cisfix.lab.control import find_process

DEPLOY = Path(__file__).resolve().parents[1] / "deploy/kubernetes"
MANIFESTS = sorted(DEPLOY.glob("*.yaml"))
NODE_PLACEHOLDER = "NODE_NAME"  # fix-job.yaml is a template with one node's name to fill in
HOSTPATH_TYPES = {"", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice", "BlockDevice"}
VOLUME_SOURCES = {"hostPath", "emptyDir", "configMap", "secret", "projected", "persistentVolumeClaim"}
API_VERSIONS = {"Namespace": "v1", "DaemonSet": "apps/v1", "Job": "batch/v1", "CronJob": "batch/v1"}
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def documents() -> Iterator[Tuple[str, dict]]:
    for path in MANIFESTS:
        for index, doc in enumerate(YAML(typ="safe").load_all(path.read_text())):
            yield f"{path.name}#{index}", doc


DOCUMENTS = list(documents())


def by_kind(kind: str) -> dict:
    found = [doc for _, doc in DOCUMENTS if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def pod_template(doc: dict) -> dict:
    spec = doc["spec"]["jobTemplate"]["spec"] if doc["kind"] == "CronJob" else doc["spec"]
    return spec["template"]


def containers(pod_spec: dict) -> List[dict]:
    return pod_spec.get("initContainers", []) + pod_spec["containers"]


def host_mount(pod_spec: dict) -> dict:
    """The container mount of the volume that is the host's root."""
    host_volumes = {v["name"] for v in pod_spec["volumes"] if v.get("hostPath", {}).get("path") == "/"}
    mounts = [m for c in containers(pod_spec) for m in c.get("volumeMounts", []) if m["name"] in host_volumes]
    assert len(mounts) == 1, mounts
    return mounts[0]


def test_there_are_manifests_for_the_audit_and_the_fix():
    assert {doc["kind"] for _, doc in DOCUMENTS} >= {"DaemonSet", "Job"}


@pytest.mark.parametrize("name,doc", DOCUMENTS, ids=[name for name, _ in DOCUMENTS])
def test_every_document_has_the_fields_kubernetes_requires(name, doc):
    assert doc["apiVersion"] == API_VERSIONS[doc["kind"]]
    assert DNS_SUBDOMAIN.match(doc["metadata"]["name"].replace(NODE_PLACEHOLDER, "node-1")), doc["metadata"]
    if doc["kind"] == "Namespace":
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


def test_the_audit_daemonset_sees_the_host_read_only_and_writes_only_the_textfile():
    spec = pod_template(by_kind("DaemonSet"))["spec"]
    assert spec["hostPID"] is True
    assert host_mount(spec) == {"name": "host", "mountPath": "/host", "readOnly": True}
    assert {"operator": "Exists"} in spec["tolerations"]  # control-plane nodes too
    (container,) = spec["containers"]
    assert not container.get("securityContext", {}).get("privileged")
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
    assert writable == {"/textfile", env(container, "SHIV_ROOT")}
    textfile = next(v for v in spec["volumes"] if v["name"] == "textfile")
    assert textfile["hostPath"] == {"path": "/var/lib/node_exporter/textfile", "type": "DirectoryOrCreate"}


def test_the_fix_job_is_privileged_pinned_to_one_node_and_never_retried():
    job = by_kind("Job")
    spec = job["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"kubernetes.io/hostname": NODE_PLACEHOLDER}
    assert NODE_PLACEHOLDER in job["metadata"]["name"]
    assert spec["hostPID"] is True and spec["hostNetwork"] is True  # host processes; probes on 127.0.0.1
    (container,) = spec["containers"]
    assert container["securityContext"]["privileged"] is True
    assert not host_mount(spec).get("readOnly")
    assert container["command"][:5] == ["python3", "/cisfix.pyz", "--root", "/host", "fix"]
    assert job["spec"]["backoffLimit"] == 0 and spec["restartPolicy"] == "Never"


def env(container: dict, name: str) -> str:
    return next(v["value"] for v in container["env"] if v["name"] == name)


def test_the_container_recipe_holds_the_checked_pyz_where_the_manifests_run_it():
    recipe = (DEPLOY / "Containerfile").read_text()
    assert "sha256sum -c cisfix.pyz.sha256" in recipe
    assert re.search(r"^COPY --from=\S+ .*/cisfix\.pyz /cisfix\.pyz$", recipe, re.M)
    assert 'ENTRYPOINT ["python3", "/cisfix.pyz"]' in recipe
    images = set()
    for kind in ("DaemonSet", "Job"):
        spec = pod_template(by_kind(kind))["spec"]
        (container,) = spec["containers"]
        images.add(container["image"])
        assert "python3 /cisfix.pyz --root /host" in " ".join(container.get("command", []) + container.get("args", []))
        # The archive extracts into SHIV_ROOT: an emptyDir mounted there keeps the root file system read-only.
        shiv = next(m for m in container["volumeMounts"] if m["mountPath"] == env(container, "SHIV_ROOT"))
        assert "emptyDir" in next(v for v in spec["volumes"] if v["name"] == shiv["name"])
    assert len(images) == 1


def audit_commands() -> Tuple[str, List[str]]:
    """The audit container's loop script and the cisfix command lines it runs each round."""
    (container,) = pod_template(by_kind("DaemonSet"))["spec"]["containers"]
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
