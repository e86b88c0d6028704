"""Which files a file check looks at, resolved on the node: a component's manifest, the etcd data
directory its process or manifest names, the kubelet's config and kubeconfig as its command line names
them, globs under the PKI directory. Each resolver returns node paths or glob patterns."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

from cisfix.state import NodeState

from . import etcd, kubelet

KUBERNETES_DIR = "/etc/kubernetes"
PKI = f"{KUBERNETES_DIR}/pki"
ETCD_DATA_DIR_DEFAULT = "/var/lib/etcd"
CNI_CONF_DIR = "/etc/cni/net.d"
CNI_NETWORKS = "/var/lib/cni/networks"


@dataclass(frozen=True)
class Target:
    describe: str
    resolve: Callable[[NodeState], List[str]]

    def __call__(self, state: NodeState) -> List[str]:
        return [p for p in self.resolve(state) if p]


def paths(*patterns: str) -> Target:
    return Target(", ".join(patterns), lambda state: list(patterns))


def manifest(component: str) -> Target:
    return Target(f"the {component} manifest", lambda state: [state.component(component).manifest or ""])


def etcd_data_dir(state: NodeState, default: str = ETCD_DATA_DIR_DEFAULT) -> str:
    """etcd's --data-dir (from its flags or its --config-file), else `default` (where etcd has it then)."""
    return etcd.settings(state, state.flags(etcd.COMPONENT).values).get("data-dir") or default


def etcd_data_dir_or(default: str) -> Target:
    return Target("the etcd data directory (--data-dir)", lambda state: [etcd_data_dir(state, default)])


def _kubelet_service(state: NodeState) -> List[str]:
    # The systemd unit's drop-ins among the kubelet's flag files (kube-bench's $kubeletsvc).
    return [p for p in state.component(kubelet.COMPONENT).flag_files if p.endswith(".conf") and state.stat(p)]


def kubelet_file(describe: str, flag: str, config_path: Optional[str], default: str) -> Target:
    """A file the kubelet's settings name (`--flag` or `config_path`), else `default` (where the node's
    installer puts it)."""
    def resolve(state: NodeState) -> List[str]:
        present, value, _ = kubelet.view(state).setting(flag, config_path)
        return [str(value) if present and value else default]
    return Target(describe, resolve)


def proxy_kubeconfig(default: str) -> Target:
    """kube-proxy's kubeconfig as its flags or config file name it, else `default`."""
    def resolve(state: NodeState) -> List[str]:
        flags = state.flags("kube-proxy")
        if flags.get("kubeconfig"):
            return [flags.get("kubeconfig")]
        config = state.yaml(flags.get("config")) if flags.get("config") else None
        if isinstance(config, dict) and (config.get("clientConnection") or {}).get("kubeconfig"):
            return [config["clientConnection"]["kubeconfig"]]
        return [default]
    return Target("kube-proxy's kubeconfig", resolve)


def _cni(state: NodeState) -> List[str]:
    conf_dir = kubelet.view(state).flags.get("cni-conf-dir") or CNI_CONF_DIR
    return [f"{conf_dir}/*", f"{CNI_NETWORKS}/*/*"]


ETCD_DATA_DIR = etcd_data_dir_or(ETCD_DATA_DIR_DEFAULT)
KUBELET_SERVICE = Target("the kubelet's systemd drop-in", _kubelet_service)
KUBELET_CONFIG = Target("the kubelet config file (--config)", lambda state: [kubelet.view(state).config_path or ""])
KUBELET_KUBECONFIG = kubelet_file("the kubelet's --kubeconfig", "kubeconfig", None, f"{KUBERNETES_DIR}/kubelet.conf")
KUBELET_CLIENT_CA = kubelet_file("the kubelet's client CA file", "client-ca-file", "authentication.x509.clientCAFile",
                                 f"{PKI}/ca.crt")
PROXY_KUBECONFIG = proxy_kubeconfig(f"{KUBERNETES_DIR}/proxy.conf")
CNI_FILES = Target("the CNI configuration and state files", _cni)
ADMIN_CONFS = paths(f"{KUBERNETES_DIR}/admin.conf", f"{KUBERNETES_DIR}/super-admin.conf")
PKI_TREE = paths(PKI, f"{PKI}/**/*")
PKI_CERTS = paths(f"{PKI}/**/*.crt")
PKI_KEYS = paths(f"{PKI}/**/*.key")


def expand(state: NodeState, target: Target) -> Tuple[str, ...]:
    """The existing paths a target names, globs expanded (for remediations)."""
    found: List[str] = []
    for pattern in target(state):
        for path in state.glob(pattern) if any(c in pattern for c in "*?[") else [pattern]:
            if state.stat(path) is not None and path not in found:
                found.append(path)
    return tuple(found)


def component_files(component: str, default: str = "") -> Target:
    """The component's static pod manifest and config file as the node's layout names them, else
    `default` (a path the benchmark names)."""
    def resolve(state: NodeState) -> List[str]:
        spec = state.component(component)
        return [p for p in (spec.manifest, spec.config) if p] or [default]
    return Target(f"the {component} manifest and config file", resolve)
