"""The GKE layout: a worker node of a Google Kubernetes Engine node pool (Container-Optimized OS or Ubuntu).

The node's startup scripts write the kubelet's configuration `/home/kubernetes/kubelet-config.yaml`
(configure.sh download-kubelet-config, from the instance metadata `kubelet-config`, umask 077), its flags
into `/etc/default/kubelet` (`KUBELET_OPTS="... --config /home/kubernetes/kubelet-config.yaml"`) and the
unit `/etc/systemd/system/kubelet.service` (`EnvironmentFile=/etc/default/kubelet`,
`ExecStart=/home/kubernetes/bin/kubelet $KUBELET_OPTS`), from the node pool's settings (kubernetes
cluster/gce/gci/configure-helper.sh, start-kubelet). They run at every boot (kube-node-installation.service
and kube-node-configuration.service, enabled by the node's cloud-config, cluster/gce/gci/node.yaml), so a
reboot rewrites those three files, and a node pool upgrade replaces the node; what lasts is the node pool's
system configuration (`kubeletConfig`), which holds a few kubelet settings.
"""
from __future__ import annotations

from typing import List, Optional

from ...markers import hookimpl
from ...node import Node
from ...types import HostPath, NetChange, NodeInfo, PersistPlan
from .. import worker

CONFIG = "/home/kubernetes/kubelet-config.yaml"
FLAGS = "/etc/default/kubelet"
PROVIDER = worker.Provider("gke", binary="/home/kubernetes/bin/kubelet", config=CONFIG, env_files=(FLAGS,),
                           cgroup="system.slice/kubelet.service", client_ca="/etc/srv/kubernetes/pki",
                           # configure.sh and configure-helper.sh write these at every boot
                           boot_owned=(CONFIG, FLAGS, worker.UNIT))
MECHANISM = "the node pool's system configuration `kubeletConfig`"
USAGE = ("gcloud container node-pools update POOL --cluster CLUSTER --system-config-from-file="
         "{dir}/gke-system-config.yaml")


def _port_disabled(value) -> Optional[bool]:
    port = worker.as_int(value)
    return None if port is None else port != 0


# The node system configuration's kubeletConfig fields for the kubelet settings CIS checks may change
# (cloud.google.com/kubernetes-engine/docs/how-to/node-system-config): the read-only port is
# `insecureKubeletReadonlyPortEnabled`; the authentication, authorization, TLS and event settings have none.
FIELDS = {
    "readOnlyPort": worker.Field("insecureKubeletReadonlyPortEnabled", _port_disabled),
    "podPidsLimit": worker.Field("podPidsLimit", worker.as_int),
    "containerLogMaxSize": worker.Field("containerLogMaxSize", str),
    "containerLogMaxFiles": worker.Field("containerLogMaxFiles", worker.as_int),
    "imageGCHighThresholdPercent": worker.Field("imageGcHighThresholdPercent", worker.as_int),
    "imageGCLowThresholdPercent": worker.Field("imageGcLowThresholdPercent", worker.as_int),
    "cpuManagerPolicy": worker.Field("cpuManagerPolicy", str),
    "cpuCFSQuota": worker.Field("cpuCfsQuota", worker.as_bool),
    "cpuCFSQuotaPeriod": worker.Field("cpuCfsQuotaPeriod", str),
    "allowedUnsafeSysctls": worker.Field("allowedUnsafeSysctls", lambda v: v if isinstance(v, list) else str(v).split(",")),
}


@hookimpl
def cisfix_describe_node(node: Node, config: dict) -> Optional[NodeInfo]:
    if not worker.is_node_of(node, config, "gke", ((CONFIG,),)):
        return None
    lasts = worker.not_lasting(f"the node's startup scripts rewrite {CONFIG}, {FLAGS} and the kubelet's unit from "
                               "the instance metadata at every boot, and a node pool upgrade, repair or scaling "
                               "replaces the node with one made from the node pool's settings",
                               f"set them in {MECHANISM}")
    return worker.describe(node, config, PROVIDER, lasts)


@hookimpl
def cisfix_host_paths(node_info: NodeInfo) -> Optional[List[HostPath]]:
    return worker.host_paths(node_info, PROVIDER) if node_info.distribution == "gke" else None


@hookimpl
def cisfix_plan_persistence(node_info: NodeInfo, state, changes: List[NetChange]) -> Optional[PersistPlan]:
    if node_info.distribution != "gke":
        return None
    fields, notes = worker.node_pool_fields(state, node_info, changes, FIELDS, MECHANISM)
    if not fields:
        return PersistPlan(notes=tuple(notes))
    return PersistPlan(files={"gke-system-config.yaml": worker.yaml_text({"kubeletConfig": fields})}, show_files=True,
                       files_usage=USAGE, notes=tuple(notes))
