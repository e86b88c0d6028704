"""What the config-file distributions (RKE2, k3s) share: one service that runs the node's components
and one configuration file with drop-ins that sets their flags (`kube-apiserver-arg: [...]`).

A layout built on this module describes each component with an `ArgList` (where its flags are set)
and a supervisor `Component` whose `runs` lists them: the core then routes every `Configure` to the
configuration file (`cisfix.settings`), applies all of a fix's changes in one transaction with one
restart of the service, and gates that restart on every component it runs (`cisfix.gate`).
"""
from __future__ import annotations

import posixpath
import re
from typing import Iterator, Optional, Tuple

from ..node import Node
from ..types import HIDE, WRITE, ArgList, HostPath, NodeInfo, PersistPlan

OWNED_DROPIN = "90-cisfix.yaml"  # cisfix's own drop-in: after the operator's usual 10-..50- names
ARG_KEYS = {"etcd": "etcd-arg", "kube-apiserver": "kube-apiserver-arg",
            "kube-controller-manager": "kube-controller-manager-arg", "kube-scheduler": "kube-scheduler-arg",
            "kubelet": "kubelet-arg"}
KUBELET_PRIVATE = ("pods", "plugins", "plugins_registry", "device-plugins", "pod-resources")


def config_path(distribution: str) -> str:
    return f"/etc/rancher/{distribution}/config.yaml"


def arg_list(distribution: str, component: str, defaults=None) -> ArgList:
    """Where the component's flags are set. Both distributions pass the kube-* lists through k3s's GetArgs
    (`name+=X` appends to the distribution's own value); `etcd-arg` items are written into etcd's
    configuration file instead, where the last one wins (see `cisfix.editors.distconfig`)."""
    from ..editors.distconfig import K3S, REPLACE  # the editor itself only on RKE2 and k3s nodes

    config = config_path(distribution)
    values = REPLACE if component == "etcd" else K3S
    return ArgList(ARG_KEYS[component], config, f"{config}.d", f"{config}.d/{OWNED_DROPIN}", values, defaults or {})


def is_node_of(node: Node, config: dict, distribution: str) -> bool:
    """Is this a node of the distribution: the node configuration says so, or (when it names none) the
    distribution's configuration or data folder is there."""
    named = config.get("distribution")
    if named:
        return named == distribution
    return any(node.host(path).exists() for path in (f"/etc/rancher/{distribution}", f"/var/lib/rancher/{distribution}"))


def version_of(text: str, distribution: str) -> Optional[str]:
    """`1.31.4+rke2r1` from an image tag or folder name such as `v1.31.4-rke2r1-build20241212`."""
    match = re.search(rf"v?(\d+\.\d+\.\d+)[-+]({distribution}(?:r)?\d+)", text)
    return f"{match.group(1)}+{match.group(2)}" if match else None


def persistence(info: NodeInfo, node: Node) -> PersistPlan:
    """Nothing to persist: the distribution regenerates its components' settings from the configuration
    file at every start and keeps that file across upgrades, and that file is where the fixes are (named
    as the operator opens it, under --root)."""
    config = node.display(config_path(info.distribution))
    return PersistPlan(notes=(
        f"{info.distribution}: the fixes are in {config} and {config}.d/, which {info.distribution} reads at every "
        f"start and its upgrades keep: they are persistent already; nothing to do",))


def host_paths(info: NodeInfo, data_dir: str, logs: Tuple[str, ...] = ()) -> Iterator[HostPath]:
    """The configuration folder (written by fixes), the generated files audits read, the credentials
    health probes use, and what no run may see (other pods' secrets under the kubelet's folder)."""
    config_dir = posixpath.dirname(config_path(info.distribution))
    yield HostPath(config_dir, f"{info.distribution}'s configuration and its drop-ins", fix=WRITE)
    yield HostPath(f"{data_dir}/agent", f"the files {info.distribution} generates for the kubelet and static pods")
    yield HostPath(f"{data_dir}/server/tls", "the health probes' credentials and the certificates audits check")
    yield HostPath(f"{data_dir}/server/db/etcd/config", "etcd's configuration file", folder=False)
    for log in logs:
        yield HostPath(log, f"{info.distribution}'s log: its components' live flags", folder=False)
    for name in KUBELET_PRIVATE:
        yield HostPath(f"/var/lib/kubelet/{name}", "the kubelet's: other pods' secrets, volumes or sockets",
                       audit=HIDE, fix=HIDE)
