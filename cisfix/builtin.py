"""Built-in plugin: describes a kubeadm node (adjusted by `<root>/etc/cisfix/config.yaml`) and provides
the report formats of `cisfix.reports`. Registered like any other plugin; it answers last."""
from __future__ import annotations

import posixpath
import re
from typing import List, Optional

from . import hookimpl
from .errors import InputError
from .node import Node
from .nodefile import read_bytes, require_regular
from .types import Component, NodeInfo, ReportFormat

MANIFESTS = "/etc/kubernetes/manifests"
KUBEADM_COMPONENTS = {
    name: Component(name, manifest=f"{MANIFESTS}/{name}.yaml")
    for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
}
KUBEADM_COMPONENTS["kubelet"] = Component(
    "kubelet", config="/var/lib/kubelet/config.yaml",
    flag_files=("/var/lib/kubelet/kubeadm-flags.env", "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf",
                "/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf"),
    restart=("systemctl", "restart", "kubelet"))


def _component(name: str, settings: dict) -> Component:
    base = KUBEADM_COMPONENTS.get(name, Component(name))
    return Component(
        name, manifest=settings.get("manifest", base.manifest), config=settings.get("config", base.config),
        flag_files=tuple(settings.get("flagFiles", base.flag_files)), process=settings.get("process", base.process),
        health=settings.get("health", base.health), restart=tuple(settings.get("restart", base.restart)))


def _detect_types(node: Node, components: dict) -> tuple:
    def exists(component: str, attr: str) -> bool:
        path = getattr(components.get(component) or Component(component), attr)
        return bool(path) and node.host(node.resolve(path)).exists()

    types = []
    if exists("kube-apiserver", "manifest"):
        types.append("master")
    if exists("etcd", "manifest"):
        types.append("etcd")
    if exists("kubelet", "config"):
        types.append("worker")
    return tuple(types)


def _detect_version(node: Node, components: dict) -> Optional[str]:
    """The Kubernetes version from a control-plane manifest's image tag (`.../kube-apiserver:v1.31.2`)."""
    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        path = components[name].manifest if name in components else None
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
    components = {name: _component(name, settings.get(name, {})) for name in {*KUBEADM_COMPONENTS, *settings}}
    return NodeInfo(
        distribution=config.get("distribution", "kubeadm"),
        version=config.get("version") or _detect_version(node, components),
        node_types=tuple(config.get("nodeTypes", ())) or _detect_types(node, components), components=components)


@hookimpl
def cisfix_register_report_formats() -> List[ReportFormat]:
    from .reports import FORMATS

    return FORMATS


def not_a_node_reason(node: Node) -> Optional[str]:
    """Why `--root` does not look like a Kubernetes node (a typo in a cron job, an unmounted disk), or
    None when it has a static pod manifest or a kubelet configuration where the node's configuration
    (or kubeadm's layout) puts them. A root like that must never read as a compliant node."""
    if not node.root.is_dir():
        return "no such directory"
    from .config import load_node_config

    info = cisfix_describe_node(node, load_node_config(node))
    wanted = [p for c in info.components.values() for p in (c.manifest, c.config) if p]
    if any(require_regular(node.host(node.resolve(p)), node.display(p)) for p in wanted):
        return None
    manifests = sorted({posixpath.dirname(c.manifest) for c in info.components.values() if c.manifest})
    configs = sorted(c.config for c in info.components.values() if c.config)
    return (f"no static pod manifest in {', '.join(node.display(m) for m in manifests)} and no kubelet "
            f"configuration at {', '.join(node.display(c) for c in configs)}")
