"""What a k3s server node is, per Kubernetes version: its paths, its unit, how `k3s server` reads its
configuration, and the flags it gives each component it embeds.

Pure data and rules, no I/O beyond reading the node's files; `k3s_tree.py` writes a node from it and
`k3s_server.py` is the `k3s server` program that runs it. Sources (cited in data/SOURCES.md):
k3s-io/k3s `pkg/daemons/control/server.go` (the control-plane defaults), `pkg/daemons/agent/` (the
kubelet's, which from v1.32 go to `agent/etc/kubelet.conf.d/00-k3s-defaults.conf` with `--config-dir`,
k3s-io/k3s#2116), `pkg/util/args.go` GetArgs (the `*-arg` value rules), `pkg/configfilearg/parser.go`
(config.yaml and its drop-ins).

The lab deviates from a real node only where several labs on one loopback interface force it: every port
is chosen per lab (the API server serves on the lab's port, not 6444 behind the supervisor's 6443; the
controller manager's, scheduler's and kubelet's ports likewise), and the node IP is 127.0.0.1. The
datastore is k3s's default, SQLite through kine inside the k3s process: no etcd process runs.
"""
from __future__ import annotations

import shlex
from typing import Dict, List, Tuple

from .layout import Layout, Unit

SUPPORTED = ("1.32", "1.33", "1.34", "1.35")  # k3s passes the kubelet --config-dir from v1.32 on
CONFIG = "/etc/rancher/k3s/config.yaml"
DROPINS = CONFIG + ".d"
KUBECONFIG = "/etc/rancher/k3s/k3s.yaml"
DATA = "/var/lib/rancher/k3s"
SERVER = f"{DATA}/server"
TLS = f"{SERVER}/tls"
CRED = f"{SERVER}/cred"
DB = f"{SERVER}/db/state.db"
AGENT = f"{DATA}/agent"
KUBELET_CONF_DIR = f"{AGENT}/etc/kubelet.conf.d"
KUBELET_DEFAULTS = f"{KUBELET_CONF_DIR}/00-k3s-defaults.conf"
EGRESS_CONFIG = f"{SERVER}/etc/egress-selector-config.yaml"
ENCRYPTION_CONFIG = f"{CRED}/encryption-config.json"
BINARY = "/usr/local/bin/k3s"
UNIT_FILE = "/etc/systemd/system/k3s.service"
CGROUP = "system.slice/k3s.service"
LOG = "/var/log/k3s.log"  # OpenRC's output_log/error_log; journald is not simulated
NODE_NAME = "lab-node"
NODE_IP = "127.0.0.1"
CONTAINERD = "/run/k3s/containerd/containerd.sock"
KINE = "unix://kine.sock"
SERVICE_CIDR, CLUSTER_CIDR, CLUSTER_DNS, DOMAIN = "10.43.0.0/16", "10.42.0.0/16", "10.43.0.10", "cluster.local"
PORT_NAMES = ("apiserver", "controller-manager", "scheduler", "kubelet-healthz", "kubelet")

# Components in the order `k3s server` starts them and logs their `Running ...` lines (server.go Server(),
# then the agent), with the config key holding their extra flags.
ARG_KEYS = {"kube-apiserver": "kube-apiserver-arg", "kube-scheduler": "kube-scheduler-arg",
            "kube-controller-manager": "kube-controller-manager-arg", "kubelet": "kubelet-arg"}
# The embedded cloud controller manager (k3s's own cloud provider) is logged between the controller manager
# and the kubelet; the lab logs its flags but runs nothing for it (it serves no port the lab's health uses).
CCM_ARG_KEY = "kube-cloud-controller-manager-arg"
# What each embedded component's exit is logged as (pkg/daemons/executor/embed.go: logrus.Fatalf).
EXIT_NAMES = {"kube-apiserver": "apiserver", "kube-scheduler": "scheduler",
              "kube-controller-manager": "controller-manager", "kubelet": "kubelet"}
# Flags k3s's Kubernetes fork adds, which the upstream flag tables do not have.
FORK_FLAGS = {"kube-apiserver": frozenset({"advertise-port"})}
SLICE_KEYS = frozenset(ARG_KEYS.values()) | {"kube-proxy-arg", "kube-cloud-controller-manager-arg", "etcd-arg",
                                             "tls-san", "disable", "node-label", "node-taint"}
# `k3s server` flags the lab knows; a config file key outside them is skipped with k3s's warning.
SERVER_FLAGS = SLICE_KEYS | {
    "config", "debug", "v", "vmodule", "log", "alsologtostderr", "data-dir", "token", "token-file", "agent-token",
    "write-kubeconfig", "write-kubeconfig-mode", "write-kubeconfig-group", "bind-address", "advertise-address",
    "https-listen-port", "cluster-cidr", "service-cidr", "cluster-dns", "cluster-domain", "flannel-backend",
    "disable-network-policy", "disable-kube-proxy", "disable-cloud-controller", "disable-helm-controller",
    "egress-selector-mode", "datastore-endpoint", "cluster-init", "secrets-encryption", "protect-kernel-defaults",
    "selinux", "node-name", "node-ip", "node-external-ip", "snapshotter", "default-local-storage-path",
    "system-default-registry", "embedded-registry", "prefer-bundled-bin", "kubelet-config-file"}


def k3s_version(version: str) -> str:
    """"1.32.0" -> "1.32.0+k3s1"."""
    return f"{version}+k3s1"


# ---- the unit ----

UNIT_TEXT = """[Unit]
Description=Lightweight Kubernetes
Documentation=https://k3s.io
Wants=network-online.target
After=network-online.target

[Install]
WantedBy=multi-user.target

[Service]
Type=notify
EnvironmentFile=-/etc/default/%N
EnvironmentFile=-/etc/sysconfig/%N
EnvironmentFile=-/etc/systemd/system/k3s.service.env
KillMode=process
Delegate=yes
User=root
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
TimeoutStartSec=0
Restart=always
RestartSec=5s
ExecStartPre=-/sbin/modprobe br_netfilter
ExecStartPre=-/sbin/modprobe overlay
ExecStart=/usr/local/bin/k3s \\
    server \\

"""


def exec_start(unit_text: str) -> List[str]:
    """ExecStart's words, its backslash-continued lines joined."""
    joined = unit_text.replace("\\\n", " ")
    for line in joined.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "ExecStart":
            return shlex.split(value)
    return []


def unit(layout: Layout) -> Unit:
    """k3s.service, read at every start: its ExecStart with the program the lab's k3s launcher."""
    argv = exec_start(layout.host(UNIT_FILE).read_text(encoding="utf-8"))
    if argv and argv[0] == BINARY:
        argv[0] = str(layout.host(BINARY))
    return Unit("k3s", argv, CGROUP, layout.settings().service_restart_sec, layout.host(LOG))


# ---- config.yaml and its drop-ins (a private mirror of k3s's pkg/configfilearg until
# cisfix/editors/distconfig.py lands; the lead switches this reader to it) ----

class ConfigError(ValueError):
    """A configuration file k3s cannot read; the message is what k3s says."""


def _go_string(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return "" if value is None else str(value)


def config_files(layout: Layout) -> List[str]:
    """config.yaml (when it exists), then every *.yaml/*.yml in config.yaml.d in name order (os.ReadDir)."""
    files = [CONFIG] if layout.host(CONFIG).is_file() else []
    try:
        names = sorted(p.name for p in layout.host(DROPINS).iterdir()
                       if not p.is_dir() and p.name.lower().endswith((".yaml", ".yml")))
    except FileNotFoundError:
        names = []
    return files + [f"{DROPINS}/{name}" for name in names]


def config_args(layout: Layout) -> List[str]:
    """The `--key=value` arguments the files amount to (readConfigFile): keys in first-seen order; a later
    file's value replaces an earlier one, unless the key ends in `+`, which appends to a list; a list is
    one argument per item."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    values: Dict[str, object] = {}
    for path in config_files(layout):
        try:
            data = YAML(typ="safe", pure=True).load(layout.host(path).read_text(encoding="utf-8"))
        except YAMLError as exc:
            raise ConfigError(f"yaml: {str(exc).splitlines()[0]} in {path}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"open {path}: {getattr(exc, 'strerror', None) or exc}") from None
        if data is None:
            continue
        if not isinstance(data, dict):
            raise ConfigError(f"yaml: unmarshal errors: cannot unmarshal !!{type(data).__name__} into yaml.MapSlice "
                              f"in {path}")
        for raw_key, value in data.items():
            key = _go_string(raw_key)
            append = key.endswith("+")
            key = key.rstrip("+") if append else key
            # A key keeps its first place; a later plain key replaces the value, a `key+` extends it.
            values[key] = _as_list(values[key]) + _as_list(value) if append and key in values else value
    args = []
    for key, value in values.items():
        prefix = "-" if len(key) == 1 else "--"
        for item in value if isinstance(value, list) else [value]:
            args.append(f"{prefix}{key}={_go_string(item)}")
    return args


def _as_list(value: object) -> list:
    """configfilearg's toSlice."""
    if isinstance(value, (list, str)):
        return value if isinstance(value, list) else [value]
    text = _go_string(value).strip()
    return [text] if text else []


def server_options(args: List[str]) -> Tuple[Dict[str, object], List[str]]:
    """(options, unknown keys) from `--key=value` arguments: a list key collects every value, any other
    takes the last."""
    options: Dict[str, object] = {}
    unknown = []
    for arg in args:
        key, eq, value = arg.lstrip("-").partition("=")
        value = value if eq else "true"
        if key not in SERVER_FLAGS:
            unknown.append(key)
        elif key in SLICE_KEYS:
            options.setdefault(key, []).append(value)  # type: ignore[union-attr]
        else:
            options[key] = value
    return options, unknown


def flag_true(options: Dict[str, object], key: str) -> bool:
    return str(options.get(key, "false")).lower() in ("1", "t", "true")


# ---- the components' flags ----

def get_args(defaults: Dict[str, str], extra: List[str]) -> List[str]:
    """k3s's GetArgs (pkg/util/args.go): `name=v` replaces the default (and earlier values), `name+=v`
    appends to the default and earlier values, `name-=v` prepends; each value is its own `--name=v`;
    sorted by name, a name's values in order."""
    initial = dict(defaults)
    multi: Dict[str, List[str]] = {}
    for item in extra:
        name, eq, value = item[2:].partition("=") if item.startswith("--") else item.partition("=")
        value = value if eq else "true"
        clean = name.rstrip("+-")
        start = [initial[clean]] if clean in initial else []
        earlier = multi.get(clean, [])
        if name.endswith("+"):
            values = start + earlier + [value]
        elif name.endswith("-"):
            values = [value] + start + earlier
        else:
            values = earlier + [value]
        initial.pop(clean, None)
        multi[clean] = values
    for name, value in initial.items():
        multi[name] = [value]
    return [f"--{name}={value}" for name in sorted(multi) for value in multi[name]]


def arg_value(name: str, extra: List[str]) -> str:
    """k3s's ArgValue: the first extra argument named `name`."""
    for item in extra:
        key, _, value = item.lstrip("-").partition("=")
        if key == name:
            return value
    return ""


def defaults(component: str, ports: Dict[str, int], options: Dict[str, object]) -> Dict[str, str]:
    """k3s's own flags for an embedded component (server.go, agent), as node paths."""
    if component == "kube-apiserver":
        return _apiserver(ports, options)
    if component == "kube-controller-manager":
        kubeconfig = f"{CRED}/controller.kubeconfig"
        return {
            # The embedded cloud controller manager runs (disable-cloud-controller unset): k3s drops its
            # controllers from the controller manager's.
            "controllers": "*,tokencleaner,-service,-route,-cloud-node-lifecycle", "configure-cloud-routes": "false",
            "kubeconfig": kubeconfig, "authorization-kubeconfig": kubeconfig, "authentication-kubeconfig": kubeconfig,
            "service-account-private-key-file": f"{TLS}/service.current.key", "allocate-node-cidrs": "true",
            "service-cluster-ip-range": SERVICE_CIDR, "cluster-cidr": CLUSTER_CIDR, "root-ca-file": f"{TLS}/server-ca.crt",
            "profiling": "false", "tls-cert-file": f"{TLS}/kube-controller-manager/kube-controller-manager.crt",
            "tls-private-key-file": f"{TLS}/kube-controller-manager/kube-controller-manager.key",
            "bind-address": "127.0.0.1", "secure-port": str(ports["controller-manager"]),
            "use-service-account-credentials": "true", **cluster_signing_flags(TLS)}
    if component == "kube-scheduler":
        kubeconfig = f"{CRED}/scheduler.kubeconfig"
        return {"kubeconfig": kubeconfig, "authorization-kubeconfig": kubeconfig,
                "authentication-kubeconfig": kubeconfig, "bind-address": "127.0.0.1",
                "secure-port": str(ports["scheduler"]), "profiling": "false",
                "tls-cert-file": f"{TLS}/kube-scheduler/kube-scheduler.crt",
                "tls-private-key-file": f"{TLS}/kube-scheduler/kube-scheduler.key"}
    # The kubelet: since v1.32 only these are flags; the rest is 00-k3s-defaults.conf.
    return {"cloud-provider": "external", "config-dir": KUBELET_CONF_DIR, "containerd": CONTAINERD,
            "hostname-override": NODE_NAME, "kubeconfig": f"{AGENT}/kubelet.kubeconfig", "node-ip": NODE_IP,
            "node-labels": "", "read-only-port": "0"}


def cluster_signing_flags(tls: str) -> Dict[str, str]:
    """The controller manager's `cluster-signing-*` flags, the CAs in the server's `tls` folder
    (server.go controllerManager; rke2 runs the same code, so its controller manager gets them too)."""
    return {
        "cluster-signing-kube-apiserver-client-cert-file": f"{tls}/client-ca.nochain.crt",
        "cluster-signing-kube-apiserver-client-key-file": f"{tls}/client-ca.key",
        "cluster-signing-kubelet-client-cert-file": f"{tls}/client-ca.nochain.crt",
        "cluster-signing-kubelet-client-key-file": f"{tls}/client-ca.key",
        "cluster-signing-kubelet-serving-cert-file": f"{tls}/server-ca.nochain.crt",
        "cluster-signing-kubelet-serving-key-file": f"{tls}/server-ca.key",
        "cluster-signing-legacy-unknown-cert-file": f"{tls}/server-ca.nochain.crt",
        "cluster-signing-legacy-unknown-key-file": f"{tls}/server-ca.key"}


def cloud_controller_defaults() -> Dict[str, str]:
    """server.go cloudControllerManager(): k3s's own cloud provider, service load balancer on."""
    kubeconfig = f"{CRED}/cloud-controller.kubeconfig"
    return {"profiling": "false", "allocate-node-cidrs": "true", "leader-elect-resource-name": "k3s-cloud-controller-manager",
            "cloud-provider": "k3s", "cloud-config": f"{SERVER}/etc/cloud-config.yaml", "cluster-cidr": CLUSTER_CIDR,
            "configure-cloud-routes": "false", "controllers": "*,-route", "kubeconfig": kubeconfig,
            "authorization-kubeconfig": kubeconfig, "authentication-kubeconfig": kubeconfig,
            "node-status-update-frequency": "1m0s", "bind-address": "127.0.0.1"}


def _apiserver(ports: Dict[str, int], options: Dict[str, object]) -> Dict[str, str]:
    extra = list(options.get("kube-apiserver-arg") or [])
    args = {
        "storage-backend": "etcd3", "etcd-servers": KINE, "cert-dir": f"{TLS}/temporary-certs",
        "allow-privileged": "true", "enable-bootstrap-token-auth": "true",
        "service-account-signing-key-file": f"{TLS}/service.current.key", "service-cluster-ip-range": SERVICE_CIDR,
        "service-node-port-range": "30000-32767", "advertise-port": str(ports["apiserver"]),
        "advertise-address": NODE_IP, "secure-port": str(ports["apiserver"]), "bind-address": "127.0.0.1",
        "enable-aggregator-routing": "true", "egress-selector-config-file": EGRESS_CONFIG,
        "tls-cert-file": f"{TLS}/serving-kube-apiserver.crt", "tls-private-key-file": f"{TLS}/serving-kube-apiserver.key",
        "service-account-key-file": f"{TLS}/service.key",
        "service-account-issuer": f"https://kubernetes.default.svc.{DOMAIN}",
        "api-audiences": f"https://kubernetes.default.svc.{DOMAIN},k3s",
        "kubelet-certificate-authority": f"{TLS}/server-ca.crt",
        "kubelet-client-certificate": f"{TLS}/client-kube-apiserver.crt",
        "kubelet-client-key": f"{TLS}/client-kube-apiserver.key",
        "kubelet-preferred-address-types": "InternalIP,ExternalIP,Hostname",
        "requestheader-client-ca-file": f"{TLS}/request-header-ca.crt", "requestheader-allowed-names": "system:auth-proxy",
        "proxy-client-cert-file": f"{TLS}/client-auth-proxy.crt", "proxy-client-key-file": f"{TLS}/client-auth-proxy.key",
        "requestheader-extra-headers-prefix": "X-Remote-Extra-", "requestheader-group-headers": "X-Remote-Group",
        "requestheader-username-headers": "X-Remote-User", "client-ca-file": f"{TLS}/client-ca.crt",
        "enable-admission-plugins": "NodeRestriction", "profiling": "false"}
    # k3s leaves these to a user-provided authorization/authentication config file.
    if not arg_value("authorization-config", extra):
        args["authorization-mode"] = "Node,RBAC"
    if not arg_value("authentication-config", extra):
        args["anonymous-auth"] = "false"
    if flag_true(options, "secrets-encryption"):
        args["encryption-provider-config"] = ENCRYPTION_CONFIG
        args["encryption-provider-config-automatic-reload"] = "true"
    return args


def kubelet_config(ports: Dict[str, int], options: Dict[str, object]) -> Dict[str, object]:
    """00-k3s-defaults.conf: the KubeletConfiguration k3s writes at every start (the lab adds its ports)."""
    config: Dict[str, object] = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration", "address": "0.0.0.0",
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"cacheTTL": "2m0s", "enabled": True},
                           "x509": {"clientCAFile": f"{AGENT}/client-ca.crt"}},
        "authorization": {"mode": "Webhook", "webhook": {"cacheAuthorizedTTL": "5m0s", "cacheUnauthorizedTTL": "30s"}},
        "cgroupDriver": "systemd", "clusterDNS": [CLUSTER_DNS], "clusterDomain": DOMAIN,
        "containerRuntimeEndpoint": f"unix://{CONTAINERD}",
        "evictionHard": {"imagefs.available": "5%", "nodefs.available": "5%"},
        "evictionMinimumReclaim": {"imagefs.available": "10%", "nodefs.available": "10%"},
        "failSwapOn": False, "healthzBindAddress": "127.0.0.1", "healthzPort": ports["kubelet-healthz"],
        "port": ports["kubelet"], "serializeImagePulls": False, "staticPodPath": f"{AGENT}/pod-manifests",
        "tlsCertFile": f"{AGENT}/serving-kubelet.crt", "tlsPrivateKeyFile": f"{AGENT}/serving-kubelet.key"}
    if flag_true(options, "protect-kernel-defaults"):
        config["protectKernelDefaults"] = True
    return config


def arg_string(args: List[str]) -> str:
    """config.ArgString: the arguments joined by spaces, as the `Running ...` lines show them."""
    return " ".join(args)


def component_argv(component: str, args: List[str]) -> List[str]:
    """The arguments the upstream component parses: those of k3s's fork dropped."""
    fork = FORK_FLAGS.get(component, frozenset())
    return [a for a in args if a[2:].partition("=")[0] not in fork]
