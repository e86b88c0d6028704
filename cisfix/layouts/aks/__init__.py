"""The AKS layout: a worker node of an Azure Kubernetes Service node pool (AgentBaker's images).

The kubelet's settings are flags: `/etc/default/kubelet` (0600) holds `KUBELET_FLAGS=--address=0.0.0.0
--anonymous-auth=false ... --eviction-hard=memory.available<750Mi,...` (unquoted) beside
`KUBELET_NODE_LABELS=...` (cse_config.sh ensureKubelet); a node pool given a config file also has
`/etc/default/kubeletconfig.json` (0600) and the drop-in `kubelet.service.d/10-componentconfig.conf`
(`Environment="KUBELET_CONFIG_FILE_FLAGS=--config /etc/default/kubeletconfig.json"`), and the flags
translated into it leave KUBELET_FLAGS. The unit `/etc/systemd/system/kubelet.service` reads it
(`EnvironmentFile=/etc/default/kubelet`) and runs `/opt/bin/kubelet --enable-server
--node-labels="${KUBELET_NODE_LABELS}" ... $KUBELET_CONFIG_FILE_FLAGS $KUBELET_CONTAINERD_FLAGS $KUBELET_FLAGS`
(Azure/AgentBaker parts/linux/cloud-init/artifacts/kubelet.service; `/usr/local/bin/kubelet` on images
made before AgentBaker #7125, January 2026: the layout takes the one the unit runs).
A node pool upgrade or reimage replaces the node; what lasts is the node pool's custom node configuration
(`kubeletConfig`), which holds a few kubelet settings.
"""
from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import List, Optional

from ...errors import InputError
from ...markers import hookimpl
from ...node import Node
from ...nodefile import read_bytes
from ...types import HIDE, HostPath, NetChange, NodeInfo, PersistPlan
from .. import worker

FLAGS = "/etc/default/kubelet"
CONFIG = "/etc/default/kubeletconfig.json"  # on node pools given a config file (10-componentconfig.conf)
AZURE_JSON = "/etc/kubernetes/azure.json"  # the cloud provider's configuration (0600): its presence only
PROVIDER = worker.Provider("aks", binary="/opt/bin/kubelet", config=None, env_files=(FLAGS,),
                           cgroup="system.slice/kubelet.service", client_ca="/etc/kubernetes/certs",
                           older_binaries=("/usr/local/bin/kubelet",))
MECHANISM = "the node pool's custom node configuration `kubeletConfig`"
USAGE = "az aks nodepool add ... --kubelet-config {dir}/aks-kubelet-config.json (a new node pool holds it)"


def _megabytes(value) -> Optional[int]:
    """`containerLogMaxSizeMB` from the kubelet's `50Mi` / `1Gi`."""
    match = re.fullmatch(r"(\d+)(Mi|Gi|M|G)", str(value))
    return int(match.group(1)) * (1024 if match.group(2).startswith("G") else 1) if match else None


# AKS custom node configuration, kubelet parameters (learn.microsoft.com/azure/aks/custom-node-configuration-
# reference): cpuManagerPolicy, cpuCfsQuota, cpuCfsQuotaPeriod, imageGcHigh/LowThreshold, topologyManagerPolicy,
# allowedUnsafeSysctls, failSwapOn, containerLogMaxSizeMB, containerLogMaxFiles, podMaxPids, seccompDefault.
# None of the CIS node settings (authentication, authorization, read-only port, TLS, event rate) is among them.
FIELDS = {
    "cpuManagerPolicy": worker.Field("cpuManagerPolicy", str),
    "cpuCFSQuota": worker.Field("cpuCfsQuota", worker.as_bool),
    "cpuCFSQuotaPeriod": worker.Field("cpuCfsQuotaPeriod", str),
    "imageGCHighThresholdPercent": worker.Field("imageGcHighThreshold", worker.as_int),
    "imageGCLowThresholdPercent": worker.Field("imageGcLowThreshold", worker.as_int),
    "topologyManagerPolicy": worker.Field("topologyManagerPolicy", str),
    "allowedUnsafeSysctls": worker.Field("allowedUnsafeSysctls", lambda v: v if isinstance(v, list) else str(v).split(",")),
    "failSwapOn": worker.Field("failSwapOn", worker.as_bool),
    "containerLogMaxSize": worker.Field("containerLogMaxSizeMB", _megabytes),
    "containerLogMaxFiles": worker.Field("containerLogMaxFiles", worker.as_int),
    "podPidsLimit": worker.Field("podMaxPids", worker.as_int),
    "seccompDefault": worker.Field("seccompDefault", lambda v: "RuntimeDefault" if worker.as_bool(v) else None),
}


@hookimpl
def cisfix_describe_node(node: Node, config: dict) -> Optional[NodeInfo]:
    if not worker.is_node_of(node, config, "aks", ((FLAGS, AZURE_JSON),)) or not _aks_flags(node, config):
        return None
    lasts = worker.not_lasting("a node pool upgrade, reimage or scaling replaces the node with one made from the "
                               "node pool's settings", f"create the node pool with {MECHANISM}")
    with_config = node.host(node.resolve(CONFIG)).exists()
    return worker.describe(node, config, replace(PROVIDER, config=CONFIG) if with_config else PROVIDER, lasts)


def _aks_flags(node: Node, config: dict) -> bool:
    """Named, or /etc/default/kubelet is AgentBaker's (`KUBELET_FLAGS=`): a Debian kubelet package's
    /etc/default/kubelet (`KUBELET_EXTRA_ARGS=`) on a kubeadm node is not."""
    if config.get("distribution"):
        return True
    try:
        data = read_bytes(node.host(node.resolve(FLAGS)), node.display(FLAGS))
    except InputError:  # no regular file, or too large: not AgentBaker's
        return False
    return any(line.startswith(b"KUBELET_FLAGS=") for line in (data or b"").splitlines())


@hookimpl
def cisfix_host_paths(node_info: NodeInfo) -> Optional[List[HostPath]]:
    # azure.json holds the node's cloud credentials: no run reads it (in a container, the node configuration
    # names the distribution, since its presence cannot be seen there).
    secret = HostPath(AZURE_JSON, "the cloud provider's credentials", audit=HIDE, fix=HIDE, folder=False)
    return worker.host_paths(node_info, PROVIDER, [secret]) if node_info.distribution == "aks" else None


@hookimpl
def cisfix_plan_persistence(node_info: NodeInfo, state, changes: List[NetChange]) -> Optional[PersistPlan]:
    if node_info.distribution != "aks":
        return None
    fields, notes = worker.node_pool_fields(state, node_info, changes, FIELDS, MECHANISM)
    if not fields:
        return PersistPlan(notes=tuple(notes))
    text = json.dumps(fields, indent=2, sort_keys=True) + "\n"
    return PersistPlan(files={"aks-kubelet-config.json": text.encode("utf-8")}, show_files=True, files_usage=USAGE,
                       notes=tuple(notes))
