"""Where a kubeadm node keeps each component: its manifests, config and flag files, credentials, health
endpoints, restart and dependencies. The only module of the core that names kubeadm's paths."""
from __future__ import annotations

from typing import Dict, Tuple

from ...types import Component

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
DAEMON_RELOAD = ("systemctl", "daemon-reload")  # before the restart, when a fix changed kubelet.service or its drop-in
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
KUBEADM_FLAGS_ENV = "/var/lib/kubelet/kubeadm-flags.env"  # node-local flags kubeadm writes (see flagsenv)
COMPONENTS["kubelet"] = Component(
    "kubelet", config="/var/lib/kubelet/config.yaml",
    flag_files=(KUBEADM_FLAGS_ENV, "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf",
                "/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf"),
    # The kubeadm and kubelet packages (pkgs.k8s.io) install these with `install -m 644`, and reinstall
    # them so at every package upgrade (the first step of kubeadm's upgrade procedure): CIS 4.1.1's mode
    # and any edit of them are undone by it, not by kubeadm.
    package_owned=("/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf", "/usr/lib/systemd/system/kubelet.service"),
    restart=KUBELET_RESTART, reload=DAEMON_RELOAD, unit=KUBELET_UNIT, health=HEALTH["kubelet"], config_flag="config", config_dir_flag="config-dir", config_kind="KubeletConfiguration", depends_on=DEPENDS_ON["kubelet"],
    # A real kubelet serves its effective configuration on its authenticated port; the API server's
    # kubelet client certificate may read it.
    live_config={"url": "https://127.0.0.1:10250/configz", "insecureSkipVerify": True, **APISERVER_CLIENT,
                 "portFlag": "port", "portPath": "port"})
