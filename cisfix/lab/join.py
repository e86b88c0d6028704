"""`lab create DIR --join FIRST`: another control-plane node of FIRST's cluster, as `kubeadm join
--control-plane` makes it (cmd/kubeadm/app/cmd/join.go and its phases).

The node has its own directory, name, ports, kubelet and static pods. It gets the cluster-wide authorities
and service-account key (what `kubeadm init --upload-certs` shares through the kubeadm-certs Secret) and
makes its own leaf certificates naming itself; its static pods are generated from the cluster's stored
ClusterConfiguration (so extraArgs and extraVolumes persisted there apply to it), its kubelet config from
the cluster's kubelet-config ConfigMap. Its API server serves the cluster's store (the first node's) and
talks to its own etcd member (kubeadm's stacked topology): the member is announced to the running etcd
cluster first, and the manifest starts it with every member in `--initial-cluster` and
`--initial-cluster-state=existing` (phases/etcd/local.go CreateStackedEtcdStaticPodManifestFile).

One deviation: kubeadm adds the member as a learner and promotes it once it has caught up (EtcdLearnerMode,
on by default from 1.29); the lab adds a voting member at once, as kubeadm did before, because the lab's
join writes the node and `lab start` starts it later, and a learner's startup probe would fail until a
promotion nothing runs. So between `create --join` and `lab start` of the second node of a cluster, etcd
has no quorum (two members, one running).
"""
from __future__ import annotations

import dataclasses
import os
import shutil
from itertools import count
from typing import Optional, Tuple

from . import kubeadm
from .configmaps import ConfigMapStore
from .control import Lab
from .etcdcluster import EtcdClient, client_url
from .layout import BadLabInput, LabError, Layout
from .tree import check_timing, load_yaml, new_layout, static_pod_node, write_node, write_static_pods


def join(root: "str | os.PathLike[str]", first: "str | os.PathLike[str]", node_name: Optional[str] = None,
         key_algorithm: str = "RSA-2048", probe_time_scale: float = 1.0, startup_delay: float = 0.0,
         backoff: Tuple[float, float] = (10.0, 300.0), kubelet_restart_sec: float = 10.0,
         file_watch: bool = True) -> Layout:
    """Write a node joining the cluster of the running lab `first`; the version and the kubelet's
    configuration are the cluster's."""
    check_timing(backoff, kubelet_restart_sec)
    leader = Lab(first)
    first_settings = leader.layout.settings()
    if first_settings.distribution != "kubeadm":
        raise BadLabInput(f"{leader.root}: a {first_settings.distribution} lab cannot be joined (kubeadm only)")
    if not leader.init_pid():
        raise LabError(f"{leader.root} is not running: `cisfix lab start` it first (a node joins through the "
                       f"cluster's running etcd)")
    store_path = leader.layout.store(first_settings)
    store = ConfigMapStore(store_path)
    stored, kubelet_map = store.get(kubeadm.KUBEADM_CONFIG), store.get(kubeadm.KUBELET_CONFIGMAP)
    if stored is None or kubelet_map is None:
        raise LabError(f"{store_path} holds no kubeadm-config or kubelet-config ConfigMap")
    nodes = store.nodes()
    name = node_name or next(f"{kubeadm.NODE_NAME}-{i}" for i in count(2) if f"{kubeadm.NODE_NAME}-{i}" not in nodes)
    if name in nodes:
        raise BadLabInput(f"{store_path}: the cluster has a node named {name} already")
    config = load_yaml(stored["data"]["ClusterConfiguration"])
    etcd = EtcdClient(client_url(first_settings.ports), leader.layout)
    if not etcd.healthy():
        raise LabError(f"the etcd cluster is not healthy (no answer from {etcd.endpoint})")

    layout = new_layout(root)
    cluster, settings = static_pod_node(str(config["kubernetesVersion"]), backoff, name,
                                        probe_time_scale=probe_time_scale, startup_delay=startup_delay,
                                        kubelet_restart_sec=kubelet_restart_sec, file_watch=file_watch,
                                        cluster_store=str(store_path))
    kubelet_config = kubeadm.node_kubelet_config(load_yaml(kubelet_map["data"]["kubelet"]), cluster)
    try:
        write_node(layout, cluster, settings, kubelet_config, key_algorithm, cluster_pki=leader.layout)
        members = etcd.add_member(name, kubeadm.etcd_peer_url(cluster))
        joining = dataclasses.replace(cluster, etcd_members=tuple(members))
        write_static_pods(layout, kubeadm.static_pods(joining, config))
    except BaseException:
        for entry in layout.root.iterdir():  # the folder was empty: leave it so
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        raise
    store.add_node(name, {kubeadm.CONTROL_PLANE_LABEL: ""})
    return layout
