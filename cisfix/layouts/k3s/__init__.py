"""The k3s layout: one `k3s server` process runs every component; a configuration file sets their flags.

- Flags are set in `/etc/rancher/k3s/config.yaml` and `config.yaml.d/*.yaml` (`kube-apiserver-arg`, ...);
  inside a value `name+=X` appends X to k3s's own default and `name-=X` prepends it, while a plain
  `name=X` replaces the default (a plain `enable-admission-plugins=` drops NodeRestriction). cisfix writes
  `config.yaml.d/90-cisfix.yaml` unless a file of the operator's decides the flag.
- The components have no processes or manifests of their own: their live flags are the `Running ...`
  lines the running k3s logged (`liveflags`); a check of a file they do not have is NOT_APPLICABLE.
- A change reaches them only through `systemctl restart k3s`: one restart per fix, gated on each
  component's health (the API server's /readyz, the kubelet's /healthz) and verified on the new lines.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Dict, List, Optional

from ...errors import InputError
from ...markers import hookimpl
from ...node import Node
from ...types import Component, HostPath, NetChange, NodeInfo, PersistPlan
from .. import configfile
from ..overrides import configured_components
from .liveflags import SERVICE, live_flags, read_node_tail

DATA = "/var/lib/rancher/k3s"
TLS = f"{DATA}/server/tls"
ETCD_CONFIG = f"{DATA}/server/db/etcd/config"
# The kubelet reads k3s's settings from a drop-in of its --config-dir (k3s 1.32+); the operator's own
# settings are its kubelet-arg items, which override the file.
CONFIGS = {"etcd": ETCD_CONFIG, "kubelet": f"{DATA}/agent/etc/kubelet.conf.d/00-k3s-defaults.conf"}
LOG = "/var/log/k3s.log"  # under OpenRC; under systemd the journal
UNIT = f"system.slice/{SERVICE}.service"
EMBEDDED = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet")
# k3s's own values of the flags its `name+=X` items add to (pkg/daemons/control/server.go, k3s v1.31).
DEFAULTS = {"kube-apiserver": {"enable-admission-plugins": "NodeRestriction", "authorization-mode": "Node,RBAC"}}

HEALTH: Dict[str, dict] = {
    "kube-apiserver": {"url": ["https://127.0.0.1:6443/livez", "https://127.0.0.1:6443/readyz"],
                       "caFile": f"{TLS}/server-ca.crt", "certFile": f"{TLS}/client-admin.crt",
                       "keyFile": f"{TLS}/client-admin.key", "portFlag": "secure-port"},
    "kube-controller-manager": {"url": "https://127.0.0.1:10257/healthz", "insecureSkipVerify": True,
                                "portFlag": "secure-port"},
    "kube-scheduler": {"url": "https://127.0.0.1:10259/healthz", "insecureSkipVerify": True, "portFlag": "secure-port"},
    "kubelet": {"url": "http://127.0.0.1:10248/healthz", "portFlag": "healthz-port"},
}


def components(node: Node) -> Dict[str, Component]:
    """k3s's embedded components (etcd only where k3s runs its embedded etcd) and the k3s service."""
    names = list(EMBEDDED) + (["etcd"] if node.host(ETCD_CONFIG).exists() else [])
    found = {name: Component(name, process=SERVICE, unit=UNIT, health=HEALTH.get(name, {}), managed_by=SERVICE,
                             args=configfile.arg_list("k3s", name, DEFAULTS.get(name)),
                             live_flags=live_flags,
                             config=CONFIGS.get(name), config_kind="KubeletConfiguration" if name == "kubelet" else None)
             for name in names}
    found[SERVICE] = Component(SERVICE, process=SERVICE, unit=UNIT, restart=("systemctl", "restart", SERVICE),
                               runs=tuple(sorted(found)), logs=(LOG,) if node.host(LOG).exists() else ())
    return found


def _detect_version(node: Node) -> Optional[str]:
    """From the newest `Starting k3s v1.31.4+k3s1 (...)` line of its log, when it logs to a file."""
    try:
        text = read_node_tail(node, LOG).decode("utf-8", "replace")
    except (FileNotFoundError, InputError):  # no log file (journald), or one someone else could have written
        return None
    found = [configfile.version_of(line, "k3s") for line in text.splitlines() if "Starting k3s v" in line]
    return next((v for v in reversed(found) if v), None)


@hookimpl
def cisfix_describe_node(node: Node, config: dict) -> Optional[NodeInfo]:
    if not configfile.is_node_of(node, config, "k3s"):
        return None
    server = node.host(f"{DATA}/server").exists() or "kube-apiserver" in config.get("components", {})
    found = configured_components(components(node), config)
    service, own = found[SERVICE], config.get("components", {})
    for name in found[SERVICE].runs:  # their process is the service's, wherever the configuration puts it
        found[name] = replace(found[name], process=own.get(name, {}).get("process", service.process),
                              unit=own.get(name, {}).get("unit", service.unit))
    if not server:
        found = {name: c for name, c in found.items() if name in ("kubelet", SERVICE)}
    # A server is audited as an etcd node too, as kube-bench audits it: on SQLite (no etcd) those checks
    # say so instead of being left out.
    types = ("master", "etcd", "worker") if server else ("worker",)
    return NodeInfo(distribution="k3s", version=config.get("version") or _detect_version(node),
                    node_types=tuple(config.get("nodeTypes", ())) or types, components=found)


@hookimpl
def cisfix_plan_persistence(node_info: NodeInfo, state, changes: List[NetChange]) -> Optional[PersistPlan]:
    return configfile.persistence(node_info, state.node) if node_info.distribution == "k3s" else None


@hookimpl
def cisfix_host_paths(node_info: NodeInfo) -> Optional[List[HostPath]]:
    logs = node_info.components[SERVICE].logs if SERVICE in node_info.components else ()
    return list(configfile.host_paths(node_info, DATA, logs)) if node_info.distribution == "k3s" else None
