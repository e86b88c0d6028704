"""What `kubeadm init` writes for a single control-plane node, per Kubernetes version (1.29-1.35).

Pure data: the ClusterConfiguration kubeadm stores in the `kubeadm-config` ConfigMap, the four static pods
generated from it (at `init` and at `upgrade apply` alike), the kubelet's config, flags file and systemd drop-in, and kubeconfig
documents. Flags, probes, volumes and mounts follow kubeadm's `phases/controlplane/manifests.go`,
`phases/etcd/local.go` and `util/staticpod/utils.go`. The lab deviates from kubeadm in three ways, all
forced by running several labs on one loopback interface: every port is chosen per lab, the controller
manager and the scheduler get an explicit `--secure-port`, and the advertise address is 127.0.0.1.
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

SUPPORTED = ("1.29", "1.30", "1.31", "1.32", "1.33", "1.34", "1.35")
# The etcd image kubeadm picks per version (1.33-1.35 from memory, see data/SOURCES.md). From 1.34 that
# is etcd 3.6, for which kubeadm writes the non-experimental flag names; the lab keeps the 3.5 names
# that the etcd it runs (Debian's 3.4) accepts.
ETCD_IMAGE = {"1.29": "3.5.10-0", "1.30": "3.5.12-0", "1.31": "3.5.15-0", "1.32": "3.5.16-0", "1.33": "3.5.21-0",
              "1.34": "3.6.4-0", "1.35": "3.6.5-0"}
# The pause image kubeadm passes to the kubelet (constants.PauseVersion per release; 1.35 passes none).
PAUSE_IMAGE = {"1.29": "3.9", "1.30": "3.9", "1.31": "3.10", "1.32": "3.10", "1.33": "3.10", "1.34": "3.10.1",
               "1.35": "3.10.1"}
PKI = "/etc/kubernetes/pki"
ADDRESS = "127.0.0.1"
NODE_NAME = "lab-node"
CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"  # kubeadm labels every control-plane node
CRI_SOCKET = "unix:///var/run/containerd/containerd.sock"


@dataclass(frozen=True)
class Cluster:
    version: str  # "1.32.0"
    ports: Dict[str, int]  # apiserver, controller-manager, scheduler, etcd-client, etcd-peer, etcd-metrics, kubelet-healthz, kubelet
    node: str = NODE_NAME  # nodeRegistration.name: the etcd member's name, the certificates' subject
    # The etcd members (name, peer URL) a node joining the cluster's stacked etcd starts with, itself
    # included; empty at `kubeadm init` and `kubeadm upgrade`, whose etcd names only itself.
    etcd_members: Tuple[Tuple[str, str], ...] = ()

    @property
    def minor(self) -> str:
        return ".".join(self.version.split(".")[:2])

    @property
    def api_server_url(self) -> str:
        return f"https://{ADDRESS}:{self.ports['apiserver']}"


def parse_version(text: str) -> str:
    """"1.32" or "v1.32.4" -> "1.32.0" / "1.32.4"; only the versions the lab knows."""
    parts = text.lstrip("v").split(".")
    minor = ".".join(parts[:2])
    if minor not in SUPPORTED or len(parts) > 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"unsupported Kubernetes version {text!r} (supported: {', '.join(SUPPORTED)})")
    return ".".join(parts + ["0"] * (3 - len(parts)))


# ---- ClusterConfiguration (the kubeadm-config ConfigMap) ----

KUBEADM_CONFIG, KUBELET_CONFIGMAP = "kubeadm-config", "kubelet-config"  # their data keys: ClusterConfiguration, kubelet
V1BETA3, V1BETA4 = "kubeadm.k8s.io/v1beta3", "kubeadm.k8s.io/v1beta4"
# Where each static pod's settings are in a ClusterConfiguration.
SECTIONS = {"kube-apiserver": ("apiServer",), "kube-controller-manager": ("controllerManager",),
            "kube-scheduler": ("scheduler",), "etcd": ("etcd", "local")}


def config_api_version(version: str) -> str:
    """kubeadm stores its configuration in the newest API it has: v1beta4 from 1.31 on (where it became
    the default), v1beta3 before."""
    major, minor = (int(p) for p in version.split(".")[:2])
    return V1BETA4 if (major, minor) >= (1, 31) else V1BETA3


def cluster_configuration(c: Cluster) -> Dict[str, Any]:
    """The ClusterConfiguration `kubeadm init` uploads for this node (no customisation)."""
    config: Dict[str, Any] = {
        "apiServer": {}, "apiVersion": config_api_version(c.version), "certificatesDir": PKI,
        "clusterName": "kubernetes", "controlPlaneEndpoint": f"{ADDRESS}:{c.ports['apiserver']}",
        "controllerManager": {}, "dns": {}, "etcd": {"local": {"dataDir": "/var/lib/etcd"}},
        "imageRepository": "registry.k8s.io", "kind": "ClusterConfiguration", "kubernetesVersion": f"v{c.version}",
        "networking": {"dnsDomain": "cluster.local", "serviceSubnet": "10.96.0.0/12"}, "scheduler": {}}
    if config["apiVersion"] == V1BETA4:
        config.update({"caCertificateValidityPeriod": "87600h0m0s", "certificateValidityPeriod": "8760h0m0s",
                       "encryptionAlgorithm": "RSA-2048", "proxy": {}})
    return config


def upgraded_configuration(config: Dict[str, Any], c: Cluster) -> Dict[str, Any]:
    """The ClusterConfiguration `kubeadm upgrade apply` uploads: the new kubernetesVersion, in the newest
    API of the new kubeadm (v1beta3 extraArgs maps become v1beta4 lists of name/value)."""
    new = json.loads(json.dumps(config))
    new["kubernetesVersion"] = f"v{c.version}"
    if config_api_version(c.version) == V1BETA4 and new.get("apiVersion") == V1BETA3:
        new["apiVersion"] = V1BETA4
        for path in SECTIONS.values():
            section = _section(new, path)
            if isinstance(section.get("extraArgs"), dict):
                section["extraArgs"] = [{"name": k, "value": v} for k, v in sorted(section["extraArgs"].items())]
    return new


def _section(config: Dict[str, Any], path: Tuple[str, ...]) -> Dict[str, Any]:
    for key in path:
        config = config.get(key) or {}
    return config


def component_section(config: Dict[str, Any], component: str) -> Dict[str, Any]:
    return _section(config, SECTIONS[component])


def _go_string(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def extra_args(section: Dict[str, Any]) -> List[Tuple[str, str]]:
    """extraArgs as (name, value) pairs: v1beta3's map or v1beta4's list of {name, value}."""
    args = section.get("extraArgs") or {}
    if isinstance(args, dict):
        return [(str(k), _go_string(v)) for k, v in args.items()]
    return [(str(a.get("name")), _go_string(a.get("value", ""))) for a in args]


def arguments_to_command(defaults: List[str], overrides: List[Tuple[str, str]]) -> List[str]:
    """kubeadm's ArgumentsToCommand: a flag named in the overrides replaces every default of that name;
    the result is sorted by name, then value."""
    named = set(name for name, _ in overrides)
    args = list(overrides) + [(n, v) for n, _, v in (f[2:].partition("=") for f in defaults) if n not in named]
    return [f"--{name}={value}" for name, value in sorted(args)]


def extra_volumes(section: Dict[str, Any]) -> Dict[str, Mount]:
    """extraVolumes (HostPathMount: name, hostPath, mountPath, readOnly, pathType); a name kubeadm uses
    already replaces its mount. The pathType is passed through as it is: kubeadm's AddExtraHostPathMounts
    (phases/controlplane/volumes.go) hands NewHostPathMount a pointer to it, so an empty one is written as
    `type: ""` (no check on the host path, nothing created), not defaulted."""
    return {v["name"]: (v["hostPath"], v["mountPath"], v.get("pathType") or "", bool(v.get("readOnly")))
            for v in section.get("extraVolumes") or ()}


# ---- static pods ----

def _probe(path: str, port: int, scheme: str, failure_threshold: int, host: str = ADDRESS,
           initial_delay: int = 10, period: int = 10) -> Dict[str, Any]:
    probe = {"failureThreshold": failure_threshold,
             "httpGet": {"host": host, "path": path, "port": port, "scheme": scheme},
             "periodSeconds": period, "timeoutSeconds": 15}
    if initial_delay:
        probe["initialDelaySeconds"] = initial_delay
    return probe


Mount = Tuple[str, str, str, bool]  # host path, mount path, hostPath type, readOnly


def _volumes(mounts: Dict[str, Mount]) -> Tuple[list, list]:
    """name -> mount  =>  (volumes, volumeMounts), sorted by name as kubeadm's VolumeMapToSlice."""
    names = sorted(mounts)
    volumes = [{"hostPath": {"path": mounts[n][0], "type": mounts[n][2]}, "name": n} for n in names]
    volume_mounts = [dict({"mountPath": mounts[n][1], "name": n}, **({"readOnly": True} if mounts[n][3] else {}))
                     for n in names]
    return volumes, volume_mounts


def _same_path(entries: List[Tuple[str, str, str, bool]]) -> Dict[str, Mount]:
    """(name, path, type, readOnly) entries mounted at their host path, as all of kubeadm's own are."""
    return {name: (path, path, kind, ro) for name, path, kind, ro in entries}


_CA_CERT_MOUNTS = [  # kubeadm's ca-certs and the Debian-family extras it adds when they exist
    ("ca-certs", "/etc/ssl/certs", "DirectoryOrCreate", True),
    ("etc-ca-certificates", "/etc/ca-certificates", "DirectoryOrCreate", True),
    ("usr-local-share-ca-certificates", "/usr/local/share/ca-certificates", "DirectoryOrCreate", True),
    ("usr-share-ca-certificates", "/usr/share/ca-certificates", "DirectoryOrCreate", True),
]


def _pod(name: str, image: str, flags: List[str], mounts: list, cpu: str, probes: Dict[str, Any],
         section: Dict[str, Any], annotations: Dict[str, str] = None, memory: str = "") -> Dict[str, Any]:
    """The static pod of `name`, its default flags and mounts overridden by its ClusterConfiguration
    `section`'s extraArgs and extraVolumes."""
    volumes, volume_mounts = _volumes({**_same_path(mounts), **extra_volumes(section)})
    requests = {"cpu": cpu, **({"memory": memory} if memory else {})}
    command = [name] + arguments_to_command(flags, extra_args(section))
    container = {"command": command, "image": image, "imagePullPolicy": "IfNotPresent", **probes,
                 "name": name, "resources": {"requests": requests}, "volumeMounts": volume_mounts}
    metadata = {"creationTimestamp": None, "labels": {"component": name, "tier": "control-plane"},
                "name": name, "namespace": "kube-system"}
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata,
            "spec": {"containers": [container], "hostNetwork": True, "priority": 2000001000,
                     "priorityClassName": "system-node-critical",
                     "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}, "volumes": volumes},
            "status": {}}


def _component_probes(path: str, port: int, readiness: str = "") -> Dict[str, Any]:
    probes = {"livenessProbe": _probe(path, port, "HTTPS", 8), "startupProbe": _probe(path, port, "HTTPS", 24)}
    if readiness:
        probes["readinessProbe"] = _probe(readiness, port, "HTTPS", 3, initial_delay=0, period=1)
    return probes


def api_server(c: Cluster, section: Dict[str, Any]) -> Dict[str, Any]:
    port = c.ports["apiserver"]
    flags = [
        f"--advertise-address={ADDRESS}", "--allow-privileged=true", "--authorization-mode=Node,RBAC",
        f"--client-ca-file={PKI}/ca.crt", "--enable-admission-plugins=NodeRestriction",
        "--enable-bootstrap-token-auth=true", f"--etcd-cafile={PKI}/etcd/ca.crt",
        f"--etcd-certfile={PKI}/apiserver-etcd-client.crt", f"--etcd-keyfile={PKI}/apiserver-etcd-client.key",
        f"--etcd-servers=https://127.0.0.1:{c.ports['etcd-client']}",
        f"--kubelet-client-certificate={PKI}/apiserver-kubelet-client.crt",
        f"--kubelet-client-key={PKI}/apiserver-kubelet-client.key",
        "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
        f"--proxy-client-cert-file={PKI}/front-proxy-client.crt", f"--proxy-client-key-file={PKI}/front-proxy-client.key",
        "--requestheader-allowed-names=front-proxy-client", f"--requestheader-client-ca-file={PKI}/front-proxy-ca.crt",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-", "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-username-headers=X-Remote-User", f"--secure-port={port}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={PKI}/sa.pub", f"--service-account-signing-key-file={PKI}/sa.key",
        "--service-cluster-ip-range=10.96.0.0/12", f"--tls-cert-file={PKI}/apiserver.crt",
        f"--tls-private-key-file={PKI}/apiserver.key",
    ]
    mounts = _CA_CERT_MOUNTS + [("k8s-certs", PKI, "DirectoryOrCreate", True)]
    return _pod("kube-apiserver", f"registry.k8s.io/kube-apiserver:v{c.version}", flags,
                mounts, "250m", _component_probes("/livez", port, readiness="/readyz"), section,
                {"kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint": f"{ADDRESS}:{port}"})


def controller_manager(c: Cluster, section: Dict[str, Any]) -> Dict[str, Any]:
    conf = "/etc/kubernetes/controller-manager.conf"
    port = c.ports["controller-manager"]
    flags = [
        f"--authentication-kubeconfig={conf}", f"--authorization-kubeconfig={conf}", "--bind-address=127.0.0.1",
        f"--client-ca-file={PKI}/ca.crt", "--cluster-name=kubernetes", f"--cluster-signing-cert-file={PKI}/ca.crt",
        f"--cluster-signing-key-file={PKI}/ca.key", "--controllers=*,bootstrapsigner,tokencleaner",
        f"--kubeconfig={conf}", "--leader-elect=true", f"--requestheader-client-ca-file={PKI}/front-proxy-ca.crt",
        f"--root-ca-file={PKI}/ca.crt", f"--secure-port={port}", f"--service-account-private-key-file={PKI}/sa.key",
        "--use-service-account-credentials=true",
    ]
    mounts = _CA_CERT_MOUNTS + [
        ("flexvolume-dir", "/usr/libexec/kubernetes/kubelet-plugins/volume/exec", "DirectoryOrCreate", False),
        ("k8s-certs", PKI, "DirectoryOrCreate", True), ("kubeconfig", conf, "FileOrCreate", True)]
    return _pod("kube-controller-manager", f"registry.k8s.io/kube-controller-manager:v{c.version}",
                flags, mounts, "200m", _component_probes("/healthz", port), section)


def scheduler(c: Cluster, section: Dict[str, Any]) -> Dict[str, Any]:
    conf = "/etc/kubernetes/scheduler.conf"
    port = c.ports["scheduler"]
    flags = [f"--authentication-kubeconfig={conf}", f"--authorization-kubeconfig={conf}",
             "--bind-address=127.0.0.1", f"--kubeconfig={conf}", "--leader-elect=true", f"--secure-port={port}"]
    return _pod("kube-scheduler", f"registry.k8s.io/kube-scheduler:v{c.version}", flags,
                [("kubeconfig", conf, "FileOrCreate", True)], "100m", _component_probes("/healthz", port), section)


def etcd_peer_url(c: Cluster) -> str:
    return f"https://{ADDRESS}:{c.ports['etcd-peer']}"


def etcd(c: Cluster, section: Dict[str, Any]) -> Dict[str, Any]:
    """As kubeadm's phases/etcd/local.go getEtcdCommand: at init and upgrade `--initial-cluster` names only
    this member (etcd ignores it once its data directory holds a member); a joining member gets the whole
    cluster and `--initial-cluster-state=existing`."""
    client, peer, metrics = f"https://{ADDRESS}:{c.ports['etcd-client']}", etcd_peer_url(c), c.ports["etcd-metrics"]
    members = c.etcd_members or ((c.node, peer),)
    flags = [
        f"--advertise-client-urls={client}", f"--cert-file={PKI}/etcd/server.crt", "--client-cert-auth=true",
        "--data-dir=/var/lib/etcd", "--experimental-initial-corrupt-check=true",
        "--experimental-watch-progress-notify-interval=5s", f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster={','.join(f'{name}={url}' for name, url in members)}", f"--key-file={PKI}/etcd/server.key",
        f"--listen-client-urls={client}", f"--listen-metrics-urls=http://127.0.0.1:{metrics}",
        f"--listen-peer-urls={peer}", f"--name={c.node}", f"--peer-cert-file={PKI}/etcd/peer.crt",
        "--peer-client-cert-auth=true", f"--peer-key-file={PKI}/etcd/peer.key",
        f"--peer-trusted-ca-file={PKI}/etcd/ca.crt", "--snapshot-count=10000", f"--trusted-ca-file={PKI}/etcd/ca.crt",
    ] + (["--initial-cluster-state=existing"] if c.etcd_members else [])
    probes = {"livenessProbe": _probe("/health?exclude=NOSPACE&serializable=true", metrics, "HTTP", 8),
              "startupProbe": _probe("/health?serializable=false", metrics, "HTTP", 24)}
    mounts = [("etcd-certs", f"{PKI}/etcd", "DirectoryOrCreate", False),
              ("etcd-data", "/var/lib/etcd", "DirectoryOrCreate", False)]
    return _pod("etcd", f"registry.k8s.io/etcd:{ETCD_IMAGE[c.minor]}", flags, mounts, "100m", probes, section,
                {"kubeadm.kubernetes.io/etcd.advertise-client-urls": client}, memory="100Mi")


STATIC_PODS = {"etcd": etcd, "kube-apiserver": api_server, "kube-controller-manager": controller_manager,
               "kube-scheduler": scheduler}


def static_pods(c: Cluster, config: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """The four static pods kubeadm generates from a ClusterConfiguration (`kubeadm init`, and `kubeadm
    upgrade apply` with the stored one): its defaults, then each component's extraArgs and extraVolumes."""
    return {name: make(c, component_section(config, name)) for name, make in STATIC_PODS.items()}


# ---- kubelet ----

def kubelet_config(c: Cluster, file_check_frequency: str) -> Dict[str, Any]:
    """`/var/lib/kubelet/config.yaml` as kubeadm writes it (zero durations mean "the default"),
    with the lab's healthz and serving ports and static pod re-list interval."""
    zero = "0s"
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"cacheTTL": zero, "enabled": True},
                           "x509": {"clientCAFile": f"{PKI}/ca.crt"}},
        "authorization": {"mode": "Webhook", "webhook": {"cacheAuthorizedTTL": zero, "cacheUnauthorizedTTL": zero}},
        "cgroupDriver": "systemd", "clusterDNS": ["10.96.0.10"], "clusterDomain": "cluster.local",
        "containerRuntimeEndpoint": "", "cpuManagerReconcilePeriod": zero, "evictionPressureTransitionPeriod": zero,
        "fileCheckFrequency": file_check_frequency, "healthzBindAddress": "127.0.0.1",
        "healthzPort": c.ports["kubelet-healthz"], "port": c.ports["kubelet"], "httpCheckFrequency": zero,
        "imageMaximumGCAge": zero,
        "imageMinimumGCAge": zero, "kind": "KubeletConfiguration",
        "logging": {"flushFrequency": 0, "options": {"json": {"infoBufferSize": "0"}, "text": {"infoBufferSize": "0"}},
                    "verbosity": 0},
        "memorySwap": {}, "nodeStatusReportFrequency": zero, "nodeStatusUpdateFrequency": zero,
        "resolvConf": "/run/systemd/resolve/resolv.conf", "rotateCertificates": True, "runtimeRequestTimeout": zero,
        "shutdownGracePeriod": zero, "shutdownGracePeriodCriticalPods": zero, "staticPodPath": "/etc/kubernetes/manifests",
        "streamingConnectionIdleTimeout": zero, "syncFrequency": zero, "volumeStatsAggPeriod": zero,
    }


def node_kubelet_config(config: Dict[str, Any], c: Cluster) -> Dict[str, Any]:
    """The kubelet-config ConfigMap's configuration as one node writes it: the lab's per-node ports in
    place of the first node's (on a real cluster every kubelet uses the same default ports)."""
    return {**config, "healthzPort": c.ports["kubelet-healthz"], "port": c.ports["kubelet"]}


def kubeadm_flags_env(c: Cluster) -> str:
    """kubeadm-flags.env as `kubeadm init` of this version writes it (see flagsenv: the runtime endpoint
    moves to instance-config.yaml in 1.34, the pause image goes in 1.35)."""
    from ..layouts.kubeadm import flagsenv  # here: the simulated kubelet imports this module, not the layout

    return flagsenv.write_args(flagsenv.init_args(c.version, CRI_SOCKET, f"registry.k8s.io/pause:{PAUSE_IMAGE[c.minor]}"))


def instance_config(c: Cluster) -> Optional[str]:
    """/var/lib/kubelet/instance-config.yaml, which `kubeadm init` writes from 1.34 on."""
    from ..layouts.kubeadm import flagsenv

    return flagsenv.instance_config(CRI_SOCKET) if flagsenv.minor(c.version) >= flagsenv.NODE_LOCAL_CRI_SOCKET else None


# The drop-in shipped by the pkgs.k8s.io kubeadm package.
KUBELET_DROPIN = """\
# Note: This dropin only works with kubeadm and kubelet v1.11+
[Service]
Environment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf"
Environment="KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml"
# This is a file that "kubeadm init" and "kubeadm join" generates at runtime, populating the KUBELET_KUBEADM_ARGS variable dynamically
EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env
# This is a file that the user can use for overrides of the kubelet args as a last resort. Preferably, the user should use
# the .NodeRegistration.KubeletExtraArgs object in the configuration files instead. KUBELET_EXTRA_ARGS should be sourced from this file.
EnvironmentFile=-/etc/default/kubelet
ExecStart=
ExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS
"""

# The kubelet package's unit file (/usr/lib/systemd/system/kubelet.service).
KUBELET_UNIT = """\
[Unit]
Description=kubelet: The Kubernetes Node Agent
Documentation=https://kubernetes.io/docs/
Wants=network-online.target
After=network-online.target

[Service]
ExecStart=/usr/bin/kubelet
Restart=always
StartLimitInterval=0
RestartSec=10

[Install]
WantedBy=multi-user.target
"""


# ---- the network plugin ----

POD_NETWORK = "cbr0"


def cni_files() -> Dict[str, str]:
    """What a kubeadm node holds once a network plugin is installed (flannel, kubeadm's documented
    example), each written with mode 0644 as on a real node: the conflist its DaemonSet's install-cni
    container copies with `cp`, and host-local IPAM's allocations (one file per IP, holding the
    container id and interface) under /var/lib/cni/networks/<network>."""
    conflist = {"name": POD_NETWORK, "cniVersion": "0.3.1", "plugins": [
        {"type": "flannel", "delegate": {"hairpinMode": True, "isDefaultGateway": True}},
        {"type": "portmap", "capabilities": {"portMappings": True}}]}
    state = f"/var/lib/cni/networks/{POD_NETWORK}"
    return {
        "/etc/cni/net.d/10-flannel.conflist": json.dumps(conflist, indent=2) + "\n",
        f"{state}/10.244.0.2": "4f1c3a9e0b7d\r\neth0",
        f"{state}/10.244.0.3": "9b2e7d4c1a05\r\neth0",
        f"{state}/last_reserved_ip.0": "10.244.0.3",
        f"{state}/lock": "",
    }


# ---- kubeconfigs ----

# file -> (user name, subject of the client certificate)
KUBECONFIGS = {
    "admin.conf": ("kubernetes-admin", "/O=kubeadm:cluster-admins/CN=kubernetes-admin"),
    "super-admin.conf": ("kubernetes-super-admin", "/O=system:masters/CN=kubernetes-super-admin"),
    "controller-manager.conf": ("system:kube-controller-manager", "/CN=system:kube-controller-manager"),
    "scheduler.conf": ("system:kube-scheduler", "/CN=system:kube-scheduler"),
}
def kubelet_client_subject(node: str) -> str:
    return f"/O=system:nodes/CN=system:node:{node}"



KUBELET_CLIENT_PEM = "/var/lib/kubelet/pki/kubelet-client-current.pem"


def kubeconfig(c: Cluster, user: str, ca_pem: bytes, credentials: Dict[str, str]) -> Dict[str, Any]:
    """A kubeconfig for `user`; `credentials` holds client-certificate(-data) and client-key(-data)."""
    b64 = base64.b64encode(ca_pem).decode()
    context = f"{user}@kubernetes"
    return {"apiVersion": "v1",
            "clusters": [{"cluster": {"certificate-authority-data": b64, "server": c.api_server_url},
                          "name": "kubernetes"}],
            "contexts": [{"context": {"cluster": "kubernetes", "user": user}, "name": context}],
            "current-context": context, "kind": "Config", "preferences": {},
            "users": [{"name": user, "user": credentials}]}
