"""The RKE2 layout: where an RKE2 node keeps each component's settings, and how they reach it.

- Flags are set in `/etc/rancher/rke2/config.yaml` and `config.yaml.d/*.yaml` (`kube-apiserver-arg`, ...);
  cisfix writes `config.yaml.d/90-cisfix.yaml` unless a file of the operator's decides the flag.
- rke2 regenerates the static pod manifests in `agent/pod-manifests/` from that configuration at every
  start (pkg/podexecutor/staticpod.go; rancher/rke2#5142): cisfix reads them (the pods' identity and
  what was generated) and never edits them.
- The kubelet is rke2's own child process, in the `rke2-server` (or `rke2-agent`) unit's cgroup.
- etcd reads its settings from `--config-file` (server/db/etcd/config); `etcd-arg` items are written into
  it (the last one wins). The other `*-arg` lists go through k3s's GetArgs, as on k3s: `name+=X` appends
  to rke2's own value (RKE2 runs k3s's configuration code).
- A change reaches the components only through `systemctl restart rke2-server`, which restarts the
  node's whole control plane: one restart per fix, gated on every component it runs.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Dict, List, Optional

from ...markers import hookimpl
from ...node import Node
from ...nodefile import read_bytes
from ...errors import InputError
from ...types import Component, HostPath, NetChange, NodeInfo, PersistPlan
from .. import configfile
from ..overrides import configured_components

DATA = "/var/lib/rancher/rke2"
MANIFESTS = f"{DATA}/agent/pod-manifests"
TLS = f"{DATA}/server/tls"
ETCD_CONFIG = f"{DATA}/server/db/etcd/config"
KUBECONFIG = "/etc/rancher/rke2/rke2.yaml"
# The kubelet reads rke2's settings from a drop-in of its --config-dir; the operator's own settings are
# its kubelet-arg items, which override the file.
KUBELET_CONFIG = f"{DATA}/agent/etc/kubelet.conf.d/00-rke2-defaults.conf"
STATIC_PODS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
PORTS = {"etcd": 2379, "kube-apiserver": 6443, "kube-controller-manager": 10257, "kube-scheduler": 10259}
APISERVER_CLIENT = {"certFile": f"{TLS}/client-kube-apiserver.crt", "keyFile": f"{TLS}/client-kube-apiserver.key"}

HEALTH: Dict[str, dict] = {
    "etcd": {"url": "https://127.0.0.1:2379/health", "caFile": f"{TLS}/etcd/server-ca.crt",
             "certFile": f"{TLS}/etcd/server-client.crt", "keyFile": f"{TLS}/etcd/server-client.key"},
    "kube-apiserver": {"url": ["https://127.0.0.1:6443/livez", "https://127.0.0.1:6443/readyz"],
                       "caFile": f"{TLS}/server-ca.crt", "certFile": f"{TLS}/client-admin.crt",
                       "keyFile": f"{TLS}/client-admin.key", "portFlag": "secure-port"},
    "kube-controller-manager": {"url": "https://127.0.0.1:10257/healthz", "insecureSkipVerify": True,
                                "portFlag": "secure-port"},
    "kube-scheduler": {"url": "https://127.0.0.1:10259/healthz", "insecureSkipVerify": True, "portFlag": "secure-port"},
    "kubelet": {"url": "http://127.0.0.1:10248/healthz", "portFlag": "healthz-port", "portPath": "healthzPort"},
}
DEPENDS_ON = {"kube-apiserver": ("etcd",), "kube-controller-manager": ("kube-apiserver",),
              "kube-scheduler": ("kube-apiserver",), "kubelet": ("kube-apiserver",)}


def components(service: str) -> Dict[str, Component]:
    """RKE2's components on a server (service `rke2-server`) or an agent (`rke2-agent`: the kubelet only)."""
    unit = f"system.slice/{service}.service"
    found = {"kubelet": Component(
        "kubelet", process="kubelet", unit=unit, health=HEALTH["kubelet"], config=KUBELET_CONFIG,
        config_kind="KubeletConfiguration", depends_on=DEPENDS_ON["kubelet"] if service == "rke2-server" else (),
        args=configfile.arg_list("rke2", "kubelet"), managed_by=service,
        live_config={"url": "https://127.0.0.1:10250/configz", "insecureSkipVerify": True, **APISERVER_CLIENT,
                     "portFlag": "port", "portPath": "port"})}
    if service == "rke2-server":
        for name in STATIC_PODS:
            found[name] = Component(name, manifest=f"{MANIFESTS}/{name}.yaml", health=HEALTH[name],
                                    depends_on=DEPENDS_ON.get(name, ()), managed_by="kubelet",
                                    args=configfile.arg_list("rke2", name))
        found["etcd"] = replace(found["etcd"], config=ETCD_CONFIG, config_flag="config-file")
    found[service] = Component(service, process="rke2", unit=unit, restart=("systemctl", "restart", service),
                               runs=tuple(sorted(found)))
    return found


def _service(node: Node, config: dict) -> str:
    named = set(config.get("components", {})) & {"rke2-server", "rke2-agent"}
    if named:
        return named.pop()
    return "rke2-server" if node.host(f"{DATA}/server").exists() or node.host(MANIFESTS + "/kube-apiserver.yaml").exists() \
        else "rke2-agent"


def _detect_version(node: Node) -> Optional[str]:
    """From the API server's image (`rancher/hardened-kubernetes:v1.31.4-rke2r1-build...`), else from the
    folder rke2 unpacks its binaries to (`data/v1.31.4-rke2r1-<hash>`)."""
    try:
        data = read_bytes(node.host(node.resolve(f"{MANIFESTS}/kube-apiserver.yaml")), f"{MANIFESTS}/kube-apiserver.yaml")
    except InputError:
        data = None
    found = configfile.version_of((data or b"").decode("utf-8", "replace"), "rke2")
    if found:
        return found
    folder = node.host(f"{DATA}/data")
    names = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    return next((v for v in map(lambda n: configfile.version_of(n, "rke2"), reversed(names)) if v), None)


@hookimpl
def cisfix_describe_node(node: Node, config: dict) -> Optional[NodeInfo]:
    if not configfile.is_node_of(node, config, "rke2"):
        return None
    service = _service(node, config)
    found = configured_components(components(service), config)
    types = ("master", "etcd", "worker") if service == "rke2-server" else ("worker",)
    return NodeInfo(distribution="rke2", version=config.get("version") or _detect_version(node),
                    node_types=tuple(config.get("nodeTypes", ())) or types, components=found)


@hookimpl
def cisfix_plan_persistence(node_info: NodeInfo, state, changes: List[NetChange]) -> Optional[PersistPlan]:
    return configfile.persistence(node_info, state.node) if node_info.distribution == "rke2" else None


@hookimpl
def cisfix_host_paths(node_info: NodeInfo) -> Optional[List[HostPath]]:
    return list(configfile.host_paths(node_info, DATA)) if node_info.distribution == "rke2" else None
