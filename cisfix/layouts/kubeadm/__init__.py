"""The built-in kubeadm layout: where a kubeadm node keeps each component's settings (`paths`), how each is
probed and restarted, and the order of a fix — adjusted by `<root>/etc/cisfix/config.yaml` — and how its
fixes outlive `kubeadm upgrade` (`persist`). Registered like any other plugin; it answers last, so a
layout plugin for another distribution (RKE2, k3s) answers first on its own nodes.
"""
from __future__ import annotations

import posixpath
import re
from typing import Dict, Iterator, List, Optional

from ...errors import InputError
from ...markers import hookimpl
from ...node import Node
from ...nodefile import read_bytes
from ...types import HIDE, WRITE, Component, HostPath, NetChange, NodeInfo, PersistPlan
from ..overrides import configured_components
from .paths import COMPONENTS, CREDENTIAL_KEYS, KUBELET_PRIVATE, KUBELET_ROOT


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
    components = configured_components(COMPONENTS, config)
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
    """kubeadm regenerates manifests and the kubelet config from its ConfigMaps: see `persist`."""
    if node_info.distribution != "kubeadm":
        return None
    from .persist import plan  # only a run that persists pays for it

    return plan(node_info, state, changes)
