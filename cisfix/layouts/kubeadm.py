"""The built-in kubeadm layout: where a kubeadm node keeps each component's settings, how each is probed
and restarted, and the order of a fix — adjusted by `<root>/etc/cisfix/config.yaml`. It is the only
module of the core that names kubeadm's paths. Registered like any other plugin; it answers last, so a
layout plugin for another distribution (RKE2, k3s) answers first on its own nodes.
"""
from __future__ import annotations

import posixpath
import re
from typing import Dict, Iterator, List, Optional, Tuple

from ..markers import hookimpl
from ..errors import InputError
from ..node import Node
from ..nodefile import read_bytes
from ..types import HIDE, WRITE, Component, HostPath, NetChange, NodeInfo, PersistPlan

MANIFESTS = "/etc/kubernetes/manifests"
PKI = "/etc/kubernetes/pki"
ADMIN_CONF = "/etc/kubernetes/admin.conf"  # the admin kubeconfig kubeadm writes on control-plane nodes
# The kubelet's root directory holds, beside its config and flag files, what no cisfix run may see: every
# pod's secrets, tokens and volumes (pods/), CSI volumes (plugins/) and sockets that register devices and
# plugins or list pods (plugins_registry/, device-plugins/, pod-resources/).
KUBELET_ROOT = "/var/lib/kubelet"
KUBELET_PRIVATE = ("pods", "plugins", "plugins_registry", "device-plugins", "pod-resources")
CREDENTIAL_KEYS = ("caFile", "certFile", "keyFile", "kubeconfig")
STATIC_PODS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
KUBELET_RESTART = ("systemctl", "restart", "kubelet")
KUBELET_UNIT = "system.slice/kubelet.service"  # the kubelet's cgroup: its process is the one systemd started
APISERVER_CLIENT = {"certFile": f"{PKI}/apiserver-kubelet-client.crt", "keyFile": f"{PKI}/apiserver-kubelet-client.key"}

# Health endpoints as kubeadm's probes use them; `portFlag`/`portPath` take the port from the setting
# when it is set (see cisfix.health.endpoint_settings).
HEALTH: Dict[str, dict] = {
    "etcd": {"url": "https://127.0.0.1:2379/health", "caFile": f"{PKI}/etcd/ca.crt",
             "certFile": f"{PKI}/etcd/healthcheck-client.crt", "keyFile": f"{PKI}/etcd/healthcheck-client.key"},
    "kube-apiserver": {"url": ["https://127.0.0.1:6443/livez", "https://127.0.0.1:6443/readyz"],
                       "caFile": f"{PKI}/ca.crt", "kubeconfig": ADMIN_CONF, "portFlag": "secure-port"},
    "kube-controller-manager": {"url": "https://127.0.0.1:10257/healthz", "insecureSkipVerify": True,
                                "portFlag": "secure-port"},
    "kube-scheduler": {"url": "https://127.0.0.1:10259/healthz", "insecureSkipVerify": True, "portFlag": "secure-port"},
    "kubelet": {"url": "http://127.0.0.1:10248/healthz", "portFlag": "healthz-port", "portPath": "healthzPort"},
}
DEPENDS_ON: Dict[str, Tuple[str, ...]] = {
    "kube-apiserver": ("etcd",), "kube-controller-manager": ("kube-apiserver",),
    "kube-scheduler": ("kube-apiserver",), "kubelet": ("kube-apiserver",)}

COMPONENTS: Dict[str, Component] = {
    name: Component(name, manifest=f"{MANIFESTS}/{name}.yaml", health=HEALTH[name], depends_on=DEPENDS_ON.get(name, ()),
                    managed_by="kubelet")
    for name in STATIC_PODS
}
COMPONENTS["kubelet"] = Component(
    "kubelet", config="/var/lib/kubelet/config.yaml",
    flag_files=("/var/lib/kubelet/kubeadm-flags.env", "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf",
                "/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf"),
    restart=KUBELET_RESTART, unit=KUBELET_UNIT, health=HEALTH["kubelet"], config_flag="config", config_kind="KubeletConfiguration", depends_on=DEPENDS_ON["kubelet"],
    # A real kubelet serves its effective configuration on its authenticated port; the API server's
    # kubelet client certificate may read it.
    live_config={"url": "https://127.0.0.1:10250/configz", "insecureSkipVerify": True, **APISERVER_CLIENT,
                 "portFlag": "port", "portPath": "port"})


def _component(name: str, settings: dict) -> Component:
    base = COMPONENTS.get(name, Component(name))
    return Component(
        name, manifest=settings.get("manifest", base.manifest), config=settings.get("config", base.config),
        flag_files=tuple(settings.get("flagFiles", base.flag_files)), process=settings.get("process", base.process),
        health=settings.get("health", base.health), restart=tuple(settings.get("restart", base.restart)),
        config_flag=base.config_flag, config_kind=base.config_kind, depends_on=tuple(settings.get("dependsOn", base.depends_on)),
        managed_by=base.managed_by, live_config=settings.get("liveConfig", base.live_config), user=base.user,
        unit=base.unit)


def _exists(node: Node, path: Optional[str]) -> bool:
    return bool(path) and node.host(node.resolve(path)).exists()


def _detect_types(node: Node, components: Dict[str, Component]) -> tuple:
    types = []
    if _exists(node, components["kube-apiserver"].manifest):
        types.append("master")
    if _exists(node, components["etcd"].manifest):
        types.append("etcd")
    if _exists(node, components["kubelet"].config):
        types.append("worker")
    return tuple(types)


def _detect_version(node: Node, components: Dict[str, Component]) -> Optional[str]:
    """The Kubernetes version from a control-plane manifest's image tag (`.../kube-apiserver:v1.31.2`)."""
    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        path = components[name].manifest
        try:
            data = read_bytes(node.host(node.resolve(path)), node.display(path)) if path else None
        except InputError:  # a broken manifest: its checks say so; the others may still tell the version
            continue
        text = (data or b"").decode("utf-8", "replace")
        match = re.search(rf"image:\s*['\"]?\S*{name}(?:-\w+)?:v?(\d+\.\d+(?:\.\d+)?)", text)
        if match:
            return match.group(1)
    return None


@hookimpl(trylast=True)
def cisfix_describe_node(node: Node, config: dict) -> NodeInfo:
    settings = config.get("components", {})
    components = {name: _component(name, settings.get(name, {})) for name in {*COMPONENTS, *settings}}
    return NodeInfo(
        distribution=config.get("distribution", "kubeadm"),
        version=config.get("version") or _detect_version(node, components),
        node_types=tuple(config.get("nodeTypes", ())) or _detect_types(node, components), components=components)


def host_paths(info: NodeInfo) -> Iterator[HostPath]:
    """The folders of the node's components: their settings (read by audits, written by fixes) and the
    credentials their health probes and live configuration use (read by fixes, to gate a change)."""
    for component in sorted(info.components.values(), key=lambda c: c.name):
        for path in (component.manifest, component.config, *component.flag_files):
            if path:
                yield HostPath(posixpath.dirname(path), f"{component.name}'s settings", fix=WRITE)
        for endpoint in (component.health, component.live_config):
            for key in CREDENTIAL_KEYS:
                if isinstance(endpoint.get(key), str):
                    yield HostPath(posixpath.dirname(endpoint[key]), f"{component.name}'s health probe credentials",
                                   audit="")
    for name in KUBELET_PRIVATE:
        yield HostPath(f"{KUBELET_ROOT}/{name}", "the kubelet's: other pods' secrets, volumes or sockets",
                       audit=HIDE, fix=HIDE)


@hookimpl
def cisfix_host_paths(node_info: NodeInfo) -> Optional[List[HostPath]]:
    return list(host_paths(node_info)) if node_info.distribution == "kubeadm" else None


@hookimpl(trylast=True)
def cisfix_plan_persistence(node_info: NodeInfo, state, changes: List[NetChange]) -> Optional[PersistPlan]:
    """kubeadm regenerates manifests and the kubelet config from its ConfigMaps: see `kubeadm_persist`."""
    if node_info.distribution != "kubeadm":
        return None
    from .kubeadm_persist import plan

    return plan(node_info, state, changes)
