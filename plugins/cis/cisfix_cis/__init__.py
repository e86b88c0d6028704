"""The CIS Kubernetes Benchmark, as a cisfix plugin (registered by default, like any other plugin).

`catalog` holds the recommendations of v1.11, v1.12 and v2.0 as data, `distributions` the RKE2 and k3s
benchmarks derived from them, `managed` the EKS, GKE and AKS worker benchmarks derived from them; `audits`,
`fixes` and `apiserver` are the builders it uses; `kubelet` reads the kubelet's effective configuration;
`kubebench` renders results as kube-bench's JSON.
"""
from __future__ import annotations

from typing import List, Optional

from cisfix.markers import hookimpl
from cisfix.types import WRITE, Benchmark, Check, HostPath, NodeInfo, ReportFormat

from .checks import benchmarks


@hookimpl
def cisfix_register_benchmarks() -> List[Benchmark]:
    return list(benchmarks().values())


@hookimpl
def cisfix_register_checks(node_info: NodeInfo) -> Optional[List[Check]]:
    if node_info.benchmark not in benchmarks():
        return None
    from .checks import checks_for

    return checks_for(node_info.benchmark)


@hookimpl
def cisfix_register_report_formats() -> List[ReportFormat]:
    from .kubebench import render

    return [ReportFormat("kube-bench", render, "kube-bench's JSON (Controls, tests, results, Totals)")]


@hookimpl
def cisfix_host_paths(node_info: NodeInfo) -> List[HostPath]:
    """Where the checks look beyond the components' own settings (kubeadm's places, the defaults of the
    flags that move them: a node that moves them mounts those instead)."""
    from .targets import CNI_CONF_DIR, CNI_NETWORKS, ETCD_DATA_DIR_DEFAULT, KUBERNETES_DIR

    return [
        HostPath(KUBERNETES_DIR, "kubeconfigs and PKI (their modes and owners), the API server's policy and "
                                 "encryption files; fixes create those files", fix=WRITE),
        HostPath(ETCD_DATA_DIR_DEFAULT, "the etcd data folder's mode and owner", fix=WRITE),
        HostPath(CNI_CONF_DIR, "CNI configuration files' modes and owners", fix=WRITE),
        HostPath(CNI_NETWORKS, "CNI state files' modes and owners", fix=WRITE),
        *_distribution_paths(node_info.distribution),
    ]


def _distribution_paths(distribution: str) -> List[HostPath]:
    """RKE2's and k3s's data folder, where their benchmarks name the kubeconfigs, certificates, etcd's data
    and the agent's files; on a managed provider's worker, the kubelet's kubeconfig (the folder it is in
    holds other pods' secrets)."""
    from .distributions import DERIVED
    from .managed import KUBELET_KUBECONFIG, MANAGED

    if distribution in {b.distribution for b in MANAGED.values()}:
        return [HostPath(KUBELET_KUBECONFIG, "the kubelet's kubeconfig (its mode and owner)", fix=WRITE, folder=False)]
    if distribution not in {b.distribution for b in DERIVED.values()}:
        return []
    return [HostPath(f"/var/lib/rancher/{distribution}", f"{distribution}'s kubeconfigs, certificates, etcd data "
                                                        "and agent files (their modes and owners)", fix=WRITE)]
