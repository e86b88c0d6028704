"""What an RKE2 server node holds and what `rke2 server` generates from its configuration, per start.

Pure functions of the lab's files: RKE2's paths; its configuration read with RKE2's merge rules; the
four static pods it writes (RKE2's default flags, each `<component>-arg` item replacing the default of
the same name); etcd's configuration file, which the `etcd-arg` items go into; the kubelet's command line
and configuration drop-in; and the unit the lab's init runs (`rke2-server`). Sources in data/SOURCES.md
("RKE2"). The lab deviates from RKE2 where several labs share one loopback interface: every port is
chosen per lab, every address is 127.0.0.1.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Dict, List, Tuple

from ..editors.distconfig import DistConfig, dropin_order, load
from ..errors import InputError
from .k3s import cluster_signing_flags, exec_start
from .kubeadm import NODE_NAME, Cluster
from .layout import IMAGE_BIN, Layout, Unit

CONFIG = "/etc/rancher/rke2/config.yaml"
CONFIG_D = CONFIG + ".d"
KUBECONFIG = "/etc/rancher/rke2/rke2.yaml"
PSS_CONFIG = "/etc/rancher/rke2/rke2-pss.yaml"
DATA = "/var/lib/rancher/rke2"
SERVER = f"{DATA}/server"
TLS = f"{SERVER}/tls"
CRED = f"{SERVER}/cred"
ETCD_DATA = f"{SERVER}/db/etcd"
ETCD_CONFIG = f"{ETCD_DATA}/config"
ETCD_NAME_FILE = f"{ETCD_DATA}/name"
AGENT = f"{DATA}/agent"
MANIFESTS = f"{AGENT}/pod-manifests"
KUBELET_CONF_D = f"{AGENT}/etc/kubelet.conf.d"
KUBELET_DEFAULTS = f"{KUBELET_CONF_D}/00-rke2-defaults.conf"
KUBELET_KUBECONFIG = f"{AGENT}/kubelet.kubeconfig"
KUBELET_LOG = f"{AGENT}/logs/kubelet.log"
RKE2_BINARY = f"{IMAGE_BIN}/rke2"  # the install script's place
UNIT_FILE = "/usr/local/lib/systemd/system/rke2-server.service"
KUBELET_BINARY = f"{DATA}/bin/kubelet"  # a link into data/<version>/bin on a node
UNIT = "rke2-server"
UNIT_CGROUP = "system.slice/rke2-server.service"
COMPONENT_ARGS = {"etcd": "etcd-arg", "kube-apiserver": "kube-apiserver-arg",
                  "kube-controller-manager": "kube-controller-manager-arg",
                  "kube-scheduler": "kube-scheduler-arg", "kubelet": "kubelet-arg"}
ETCD_NAME = f"{NODE_NAME}-4f1c3a9e"  # RKE2: the hostname and a random suffix, kept in ETCD_NAME_FILE
SSL_DIRS = ("/etc/ssl/certs", "/etc/pki/tls/certs", "/etc/ca-certificates", "/usr/local/share/ca-certificates",
            "/usr/share/ca-certificates")
TLS_CIPHERS = ("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,"
               "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,"
               "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305,TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305")
# The etcd RKE2 ships per Kubernetes minor (rancher/hardened-etcd tags).
ETCD_IMAGE = {"1.29": "v3.5.9-k3s1", "1.30": "v3.5.13-k3s1", "1.31": "v3.5.16-k3s1", "1.32": "v3.5.16-k3s1",
              "1.33": "v3.5.21-k3s1", "1.34": "v3.6.4-k3s1", "1.35": "v3.6.5-k3s1"}
BUILD = "build20250101"


def full_version(cluster: Cluster) -> str:
    return f"{cluster.version}+rke2r1"


def unit(layout: Layout) -> Unit:
    """rke2-server.service, read at every start: its ExecStart with the program the lab's rke2 launcher;
    Type=notify (the new rke2 writes `Layout.ready_file`), Restart=always after the lab's
    `service_restart_sec` (RestartSec=5s). Its output goes to the lab's log (journald is not simulated)."""
    argv = exec_start(layout.host(UNIT_FILE).read_text(encoding="utf-8"))
    if argv and argv[0] == RKE2_BINARY:
        argv[0] = str(layout.host(RKE2_BINARY))
    return Unit(UNIT, argv, UNIT_CGROUP, layout.settings().service_restart_sec, layout.log_dir / f"{UNIT}.log")


# ---- the configuration, as rke2 reads it ----

class ConfigError(ValueError):
    """A configuration file rke2 cannot read: it exits, and its unit restarts it."""


def read_config(layout: Layout) -> DistConfig:
    """config.yaml, then config.yaml.d/*.yaml|*.yml in name order, merged by rke2's rules (k3s's
    pkg/configfilearg: cisfix's own reader, editors/distconfig.py). A missing config.yaml is no error."""
    files = [CONFIG] if layout.host(CONFIG).is_file() else []
    folder = layout.host(CONFIG_D)
    if folder.is_dir():
        files += [f"{CONFIG_D}/{name}" for name in dropin_order(p.name for p in folder.iterdir() if p.is_file())]
    try:
        return load([(path, layout.host(path).read_text(encoding="utf-8")) for path in files])
    except (OSError, UnicodeDecodeError, InputError) as exc:
        raise ConfigError(str(exc))


def component_args(config: DistConfig, component: str, defaults: Dict[str, str]) -> List[str]:
    """k3s's GetArgs, which builds every component's flags in rke2: rke2's `defaults`, each `*-arg` item
    `name=value` replacing the default of its name (`name+=`/`name-=` adding to it), sorted by name."""
    return [f"--{name}={value}" for name, value in config.args(COMPONENT_ARGS[component], defaults)]


def setting(config: DistConfig, key: str) -> str:
    value = config.value(key)
    return "" if value is None else str(value)


# ---- `profile: cis` ----

CIS_PROFILES = ("cis", "cis-1.23")
AUDIT_POLICY = "/etc/rancher/rke2/audit-policy.yaml"
AUDIT_LOG = f"{SERVER}/logs/audit.log"
# cmd/rke2/cmds validateCISReqs: what the kernel must say before rke2 starts with the profile.
KERNEL_PARAMETERS = {"vm.panic_on_oom": 0, "vm.overcommit_memory": 1, "kernel.panic": 10, "kernel.panic_on_oops": 1}


def cis_mode(config: DistConfig) -> bool:
    return setting(config, "profile") in CIS_PROFILES


def cis_problems(layout: Layout) -> List[str]:
    """Why rke2 refuses `profile: cis` on this node (validateCISReqs): no etcd user or group in the node's
    user database, a kernel parameter other than the benchmark's. The kernel is the host's (/proc/sys) unless
    the lab holds its own proc/sys, which a test writes to stand for a tuned kernel."""
    problems = []
    for database, what in (("/etc/passwd", "user"), ("/etc/group", "group")):
        try:
            names = {line.split(":", 1)[0] for line in layout.host(database).read_text().splitlines()}
        except OSError:
            names = set()
        if "etcd" not in names:
            problems.append(f"missing required: {what}: unknown {what} etcd")
    for name, wanted in KERNEL_PARAMETERS.items():
        relative = "proc/sys/" + name.replace(".", "/")
        path = layout.host("/" + relative) if layout.host("/" + relative).exists() else Path("/" + relative)
        value = int(path.read_text().split()[0])
        if value != wanted:
            problems.append(f"invalid kernel parameter value {name}={value} - expected {wanted}")
    return problems


def etcd_ids(layout: Layout) -> Tuple[int, int]:
    """The etcd user's uid and gid in the node's /etc/passwd (cis_problems has checked it exists)."""
    for line in layout.host("/etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == "etcd" and len(fields) > 3:
            return int(fields[2]), int(fields[3])
    raise ValueError("no etcd user in /etc/passwd")


def pss_config(cis: bool) -> Dict[str, Any]:
    """The pod security admission configuration rke2 writes (pkg/rke2 setPSAs): privileged by default,
    restricted with the CIS profile, system namespaces exempt."""
    level = "restricted" if cis else "privileged"
    exempt = ["kube-system", "cis-operator-system", "tigera-operator"] if cis else []
    return {"apiVersion": "apiserver.config.k8s.io/v1", "kind": "AdmissionConfiguration", "plugins": [
        {"name": "PodSecurity", "configuration": {
            "apiVersion": "pod-security.admission.config.k8s.io/v1", "kind": "PodSecurityConfiguration",
            "defaults": {"enforce": level, "enforce-version": "latest", "audit": level, "audit-version": "latest",
                         "warn": level, "warn-version": "latest"},
            "exemptions": {"usernames": [], "runtimeClasses": [], "namespaces": exempt}}}]}


AUDIT_POLICY_DEFAULT = {"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "metadata": {"creationTimestamp": None},
                        "rules": [{"level": "None"}]}


# ---- the static pods ----

def _probe(conf: Dict[str, int], port: int = 0, scheme: str = "", path: str = "",
           command: Tuple[str, ...] = ()) -> Dict[str, Any]:
    """pkg/staticpod createProbe: an exec probe (period at least 5 s) or an HTTP GET on localhost."""
    probe: Dict[str, Any] = {k: v for k, v in conf.items() if v}
    if command:
        probe["exec"] = {"command": list(command)}
        probe["periodSeconds"] = max(5, probe.get("periodSeconds", 0))
    else:
        probe["httpGet"] = {"host": "localhost", "path": path or "/healthz", "port": port, "scheme": scheme or "HTTPS"}
    return probe


# rke2's control-plane-probe-configuration defaults (pkg/rke2 parseControlPlaneProbeConfs, kubeadm's values).
LIVENESS = {"failureThreshold": 8, "initialDelaySeconds": 10, "periodSeconds": 10, "timeoutSeconds": 15}
READINESS = {"failureThreshold": 3, "initialDelaySeconds": 0, "periodSeconds": 1, "timeoutSeconds": 15}
STARTUP = {"failureThreshold": 24, "initialDelaySeconds": 10, "periodSeconds": 10, "timeoutSeconds": 5}


def _path_files(layout: Layout, args: List[str], exclude: Tuple[str, ...] = ()) -> List[str]:
    """pkg/staticpod readFiles: every `--x=/path` naming an existing file, and a kubeconfig's own files."""
    from ruamel.yaml import YAML

    found = set()
    for arg in args:
        name, eq, value = arg.partition("=")
        if not eq or not value.startswith("/") or value in exclude or not layout.host(value).is_file():
            continue
        found.add(value)
        if name == "--kubeconfig":
            doc = YAML(typ="safe", pure=True).load(layout.host(value).read_text()) or {}
            for cluster in doc.get("clusters") or ():
                found.update(v for k, v in (cluster.get("cluster") or {}).items() if k == "certificate-authority")
            for user in doc.get("users") or ():
                found.update(v for k, v in (user.get("user") or {}).items()
                             if k in ("client-key", "client-certificate"))
    return sorted(found)


def _file_hash(layout: Layout, files: List[str]) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(layout.host(path).read_bytes())
    return digest.hexdigest()


def _extra_mounts(layout: Layout, config: DistConfig, component: str) -> List[Tuple[str, str, str, str, bool]]:
    """pkg/staticpod addExtraMounts: each `<component>-extra-mount` item `host:container`, `...:ro|rw` or
    `...:ro|rw:type` as (volume name, host path, mount path, hostPath type, read-only). With a fourth part
    its type is taken and the third is not read (rke2 reads ro/rw only from three parts); without, the type
    is what the host path is (Socket, Directory, File; DirectoryOrCreate when it does not exist); an item
    of another shape, or an option other than ro/rw, is skipped (rke2 logs an error)."""
    value = config.value(f"{component}-extra-mount")
    found = []
    for i, item in enumerate(value if isinstance(value, list) else [] if value is None else [value]):
        parts = str(item).split(":")
        if len(parts) not in (2, 3, 4) or (len(parts) == 3 and parts[2].lower() not in ("ro", "rw")):
            continue
        host = layout.host(parts[0])
        if len(parts) == 4:
            kind = parts[3]
        elif not host.exists():
            kind = "DirectoryOrCreate"
        else:
            kind = "Socket" if host.is_socket() else "Directory" if host.is_dir() else "File"
        found.append((f"extra-mount-{i}", parts[0], parts[1], kind, len(parts) == 3 and parts[2].lower() == "ro"))
    return found


def _pod(layout: Layout, name: str, image: str, args: List[str], dirs: List[str], files: List[str],
         requests: Dict[str, str], probes: Dict[str, Any], config: DistConfig, annotations: Dict[str, str] = None,
         security: Dict[str, int] = None, exclude: Tuple[str, ...] = ()) -> Dict[str, Any]:
    """pkg/staticpod pod(): one container running `name` with `args`, its directories mounted read-write
    (DirectoryOrCreate), its files read-only (File), each at its own path, then the configuration's extra
    mounts for it."""
    files = list(files) + [f for f in _path_files(layout, args, exclude) if f not in files]
    volumes, mounts = [], []
    for prefix, paths, kind, read_only in (("dir", dirs, "DirectoryOrCreate", False), ("file", files, "File", True)):
        for i, path in enumerate(paths):
            volumes.append({"hostPath": {"path": path, "type": kind}, "name": f"{prefix}{i}"})
            mounts.append({"mountPath": path, "name": f"{prefix}{i}", **({"readOnly": True} if read_only else {})})
    for volume, host_path, mount_path, kind, read_only in _extra_mounts(layout, config, name):
        volumes.append({"hostPath": {"path": host_path, "type": kind}, "name": volume})
        mounts.append({"mountPath": mount_path, "name": volume, **({"readOnly": True} if read_only else {})})
    container = {"args": args, "command": [name], "env": [{"name": "FILE_HASH", "value": _file_hash(layout, files)}],
                 "image": image, "imagePullPolicy": "IfNotPresent", "name": name,
                 "resources": {"limits": {}, "requests": requests}, "securityContext": {"privileged": False},
                 "volumeMounts": mounts, **probes}
    metadata = {"creationTimestamp": None, "labels": {"component": name, "tier": "control-plane"}, "name": name,
                "namespace": "kube-system"}
    if annotations:
        metadata["annotations"] = annotations
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": metadata,
           "spec": {"containers": [container], "hostNetwork": True, "priorityClassName": "system-cluster-critical",
                    **({"securityContext": security} if security else {}), "volumes": volumes}, "status": {}}
    # Its uid: the md5 of the pod and its file, as the kubelet computes a static pod's (pkg/staticpod Run).
    metadata["uid"] = hashlib.md5(json.dumps(pod, sort_keys=True).encode() +
                                  f"file:{MANIFESTS}/{name}.yaml".encode()).hexdigest()
    return pod


def _kubernetes_image(cluster: Cluster) -> str:
    return f"index.docker.io/rancher/hardened-kubernetes:v{cluster.version}-rke2r1-{BUILD}"


def api_server_args(cluster: Cluster, config: DistConfig) -> List[str]:
    p = cluster.ports
    defaults = {
        "advertise-address": "127.0.0.1", "allow-privileged": "true", "anonymous-auth": "false",
        "api-audiences": "https://kubernetes.default.svc.cluster.local,rke2", "authorization-mode": "Node,RBAC",
        "bind-address": "0.0.0.0", "cert-dir": f"{TLS}/temporary-certs", "client-ca-file": f"{TLS}/client-ca.crt",
        "egress-selector-config-file": f"{SERVER}/etc/egress-selector-config.yaml",
        "enable-admission-plugins": "NodeRestriction", "enable-aggregator-routing": "true",
        "enable-bootstrap-token-auth": "true", "encryption-provider-config": f"{CRED}/encryption-config.json",
        "encryption-provider-config-automatic-reload": "true", "etcd-cafile": f"{TLS}/etcd/server-ca.crt",
        "etcd-certfile": f"{TLS}/etcd/client.crt", "etcd-keyfile": f"{TLS}/etcd/client.key",
        "etcd-servers": f"https://127.0.0.1:{p['etcd-client']}",
        "kubelet-certificate-authority": f"{TLS}/server-ca.crt",
        "kubelet-client-certificate": f"{TLS}/client-kube-apiserver.crt",
        "kubelet-client-key": f"{TLS}/client-kube-apiserver.key", "profiling": "false",
        "proxy-client-cert-file": f"{TLS}/client-auth-proxy.crt",
        "proxy-client-key-file": f"{TLS}/client-auth-proxy.key", "requestheader-allowed-names": "system:auth-proxy",
        "requestheader-client-ca-file": f"{TLS}/request-header-ca.crt",
        "requestheader-extra-headers-prefix": "X-Remote-Extra-", "requestheader-group-headers": "X-Remote-Group",
        "requestheader-username-headers": "X-Remote-User", "secure-port": str(p["apiserver"]),
        "service-account-issuer": "https://kubernetes.default.svc.cluster.local",
        "service-account-key-file": f"{TLS}/service.key",
        "service-account-signing-key-file": f"{TLS}/service.current.key",
        "service-cluster-ip-range": "10.43.0.0/16", "service-node-port-range": "30000-32767",
        "storage-backend": "etcd3", "tls-cert-file": f"{TLS}/serving-kube-apiserver.crt",
        "tls-cipher-suites": TLS_CIPHERS, "tls-private-key-file": f"{TLS}/serving-kube-apiserver.key",
    }
    args = component_args(config, "kube-apiserver", defaults)
    policy = audit_policy(config)
    # pkg/podexecutor APIServer: the preferred address types unless an item set them; before them the audit
    # flags when there is an audit policy (`audit-policy-file`, or the CIS profile's default); first the PSA
    # admission configuration.
    if not any(a.startswith("--kubelet-preferred-address-types=") for a in args):
        args.insert(0, "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname")
    if policy:
        audit = [f"--audit-policy-file={policy}", "--audit-log-maxage=30", "--audit-log-maxbackup=10",
                 "--audit-log-maxsize=100"]
        if not any(a.startswith("--audit-log-path=") for a in args):
            audit.append(f"--audit-log-path={AUDIT_LOG}")
        args = audit + args
    return [f"--admission-control-config-file={PSS_CONFIG}"] + args


def audit_policy(config: DistConfig) -> str:
    """The audit policy file the API server gets: `audit-policy-file`, or the CIS profile's default."""
    return setting(config, "audit-policy-file") or (AUDIT_POLICY if cis_mode(config) else "")


def api_server(layout: Layout, cluster: Cluster, config: DistConfig) -> Dict[str, Any]:
    args = api_server_args(cluster, config)
    audit = ([a.split("=", 1)[1] for a in args if a.startswith("--audit-log-path=")] or [""])[-1]
    dirs = [d for d in SSL_DIRS if layout.host(d).is_dir()]
    if audit.startswith("/"):
        dirs.append(audit.rsplit("/", 1)[0] or "/")
    kubectl = lambda path: ("kubectl", "get", f"--server=https://localhost:{cluster.ports['apiserver']}/",  # noqa: E731
                            f"--client-certificate={TLS}/client-kube-apiserver.crt",
                            f"--client-key={TLS}/client-kube-apiserver.key",
                            f"--certificate-authority={TLS}/server-ca.crt", f"--raw={path}")
    probes = {"livenessProbe": _probe(LIVENESS, command=kubectl("/livez")),
              "readinessProbe": _probe(READINESS, command=kubectl("/readyz")),
              "startupProbe": _probe(STARTUP, command=kubectl("/livez"))}
    # Its log file is not mounted as a file: the folder is (ExcludeFiles).
    return _pod(layout, "kube-apiserver", _kubernetes_image(cluster), args, dirs, [ETCD_NAME_FILE],
                {"cpu": "250m", "memory": "1024Mi"}, probes, config, exclude=(audit,))


def controller_manager(layout: Layout, cluster: Cluster, config: DistConfig) -> Dict[str, Any]:
    conf, port = f"{CRED}/controller.kubeconfig", cluster.ports["controller-manager"]
    defaults = {
        "allocate-node-cidrs": "true", "authentication-kubeconfig": conf, "authorization-kubeconfig": conf,
        "bind-address": "127.0.0.1", "cluster-cidr": "10.42.0.0/16", **cluster_signing_flags(TLS),
        "configure-cloud-routes": "false",
        "controllers": "*,tokencleaner,-service,-route,-cloud-node-lifecycle", "kubeconfig": conf,
        "profiling": "false", "root-ca-file": f"{TLS}/server-ca.crt", "secure-port": str(port),
        "service-account-private-key-file": f"{TLS}/service.current.key",
        "service-cluster-ip-range": "10.43.0.0/16",
        "tls-cert-file": f"{TLS}/kube-controller-manager/kube-controller-manager.crt",
        "tls-private-key-file": f"{TLS}/kube-controller-manager/kube-controller-manager.key",
        "use-service-account-credentials": "true",
    }
    # pkg/podexecutor ControllerManager: these before the generated flags (a later item still wins).
    args = ["--flex-volume-plugin-dir=/var/lib/kubelet/volumeplugins", "--terminated-pod-gc-threshold=1000",
            "--permit-port-sharing=true"] + component_args(config, "kube-controller-manager", defaults)
    probes = {"livenessProbe": _probe(LIVENESS, port, "HTTPS"), "startupProbe": _probe(STARTUP, port, "HTTPS")}
    return _pod(layout, "kube-controller-manager", _kubernetes_image(cluster), args,
                [d for d in SSL_DIRS if layout.host(d).is_dir()], [ETCD_NAME_FILE], {"cpu": "200m", "memory": "256Mi"},
                probes, config)


def scheduler(layout: Layout, cluster: Cluster, config: DistConfig) -> Dict[str, Any]:
    conf, port = f"{CRED}/scheduler.kubeconfig", cluster.ports["scheduler"]
    defaults = {"authentication-kubeconfig": conf, "authorization-kubeconfig": conf, "bind-address": "127.0.0.1",
                "kubeconfig": conf, "profiling": "false", "secure-port": str(port),
                "tls-cert-file": f"{TLS}/kube-scheduler/kube-scheduler.crt",
                "tls-private-key-file": f"{TLS}/kube-scheduler/kube-scheduler.key"}
    args = ["--permit-port-sharing=true"] + component_args(config, "kube-scheduler", defaults)
    probes = {"livenessProbe": _probe(LIVENESS, port, "HTTPS"), "startupProbe": _probe(STARTUP, port, "HTTPS")}
    return _pod(layout, "kube-scheduler", _kubernetes_image(cluster), args, [], [ETCD_NAME_FILE],
                {"cpu": "100m", "memory": "128Mi"}, probes, config)


def etcd(layout: Layout, cluster: Cluster, config: DistConfig) -> Dict[str, Any]:
    """etcd's only flag is its configuration file (written before, see `etcd_config`); with the CIS
    profile it runs as the etcd user."""
    p = cluster.ports
    initial = {"AdvertisePeerURL": f"https://127.0.0.1:{p['etcd-peer']}",
               "Cluster": f"{ETCD_NAME}=https://127.0.0.1:{p['etcd-peer']}", "State": "new"}
    files = [f"{TLS}/etcd/server-client.crt", f"{TLS}/etcd/server-client.key", f"{TLS}/etcd/server-ca.crt",
             f"{TLS}/etcd/peer-server-client.crt", f"{TLS}/etcd/peer-server-client.key", f"{TLS}/etcd/peer-ca.crt"]
    probes = {"livenessProbe": _probe(LIVENESS, p["etcd-metrics"], "HTTP", "/health"),
              "startupProbe": _probe(STARTUP, p["etcd-metrics"], "HTTP", "/health")}
    security = {}
    if cis_mode(config):
        uid, gid = etcd_ids(layout)
        security = {"runAsGroup": gid, "runAsUser": uid}
    return _pod(layout, "etcd", f"index.docker.io/rancher/hardened-etcd:{ETCD_IMAGE[cluster.minor]}-{BUILD}",
                [f"--config-file={ETCD_CONFIG}"], [ETCD_DATA], files, {"cpu": "200m", "memory": "512Mi"}, probes,
                config, {"etcd.k3s.io/initial": json.dumps(initial, separators=(",", ":"))}, security)


# In the order rke2 writes them, each once the one before is up.
STATIC_PODS = {"etcd": etcd, "kube-apiserver": api_server, "kube-controller-manager": controller_manager,
               "kube-scheduler": scheduler}


# ---- etcd's configuration file ----

def etcd_config(cluster: Cluster, config: DistConfig) -> Dict[str, Any]:
    """k3s's ETCDConfig as YAML, then each `etcd-arg` item `name=value` set at the top level with
    ToConfigFile's typing: an integer; a duration for a name with time, duration, interval or retention
    (as nanoseconds); a YAML list; true/false; else the string. An item without `=` is ignored, and
    `name+=X` sets the key `name+` (ToConfigFile splits at the first `=`)."""
    p = cluster.ports
    client, peer = f"https://127.0.0.1:{p['etcd-client']}", f"https://127.0.0.1:{p['etcd-peer']}"
    etcd: Dict[str, Any] = {
        "advertise-client-urls": client,
        "client-transport-security": {"cert-file": f"{TLS}/etcd/server-client.crt", "client-cert-auth": True,
                                      "key-file": f"{TLS}/etcd/server-client.key",
                                      "trusted-ca-file": f"{TLS}/etcd/server-ca.crt"},
        "data-dir": ETCD_DATA, "election-timeout": 5000, "experimental-initial-corrupt-check": True,
        "experimental-watch-progress-notify-interval": 5000000000, "heartbeat-interval": 500,
        "initial-advertise-peer-urls": peer, "initial-cluster": f"{ETCD_NAME}={peer}", "initial-cluster-state": "new",
        "listen-client-urls": client, "listen-metrics-urls": f"http://127.0.0.1:{p['etcd-metrics']}",
        "listen-peer-urls": peer, "log-outputs": ["stderr"], "logger": "zap", "name": ETCD_NAME,
        "peer-transport-security": {"cert-file": f"{TLS}/etcd/peer-server-client.crt", "client-cert-auth": True,
                                    "key-file": f"{TLS}/etcd/peer-server-client.key",
                                    "trusted-ca-file": f"{TLS}/etcd/peer-ca.crt"},
        "snapshot-count": 10000,
    }
    for entry in config.entries(COMPONENT_ARGS["etcd"]):
        if entry.value is not None:
            key = entry.flag + entry.op[:-1]
            etcd[key] = _etcd_value(key.lower(), entry.value)
    return etcd


def _etcd_value(name: str, value: str) -> Any:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    from .flags import parse_duration

    if re.fullmatch(r"[+-]?\d+", value):
        return int(value)
    if any(word in name for word in ("time", "duration", "interval", "retention")):
        try:
            return int(parse_duration(value) * 1e9)
        except ValueError:
            pass
    try:
        items = YAML(typ="safe", pure=True).load(value)
    except YAMLError:
        items = None
    if isinstance(items, list) and all(isinstance(i, str) for i in items):
        return items
    return {"true": True, "false": False}.get(value.lower(), value)


# ---- the kubelet, rke2's child ----

def kubelet_args(cluster: Cluster, config: DistConfig) -> List[str]:
    """pkg/podexecutor Kubelet: three flags of rke2's, then k3s's generated ones with `kubelet-arg`
    applied (the CIS profile sets protect-kernel-defaults: setCISFlags); the rest of its configuration is
    rke2's drop-in in kubelet.conf.d."""
    defaults = {"config-dir": KUBELET_CONF_D, "containerd": "/run/k3s/containerd/containerd.sock",
                "hostname-override": NODE_NAME, "kubeconfig": KUBELET_KUBECONFIG, "node-ip": "127.0.0.1",
                "node-labels": ""}
    if cis_mode(config):
        defaults["protect-kernel-defaults"] = "true"
    return ["--volume-plugin-dir=/var/lib/kubelet/volumeplugins", "--file-check-frequency=5s",
            "--sync-frequency=30s"] + component_args(config, "kubelet", defaults)


def kubelet_defaults(cluster: Cluster) -> Dict[str, Any]:
    """The KubeletConfiguration drop-in rke2 writes at every start (00-rke2-defaults.conf)."""
    p = cluster.ports
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration", "address": "0.0.0.0",
        "allowedUnsafeSysctls": ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"],
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"cacheTTL": "2m0s", "enabled": True},
                           "x509": {"clientCAFile": f"{AGENT}/client-ca.crt"}},
        "authorization": {"mode": "Webhook", "webhook": {"cacheAuthorizedTTL": "5m0s", "cacheUnauthorizedTTL": "30s"}},
        "cgroupDriver": "systemd", "clusterDNS": ["10.43.0.10"], "clusterDomain": "cluster.local",
        "containerRuntimeEndpoint": "unix:///run/k3s/containerd/containerd.sock",
        "evictionHard": {"imagefs.available": "5%", "nodefs.available": "5%"},
        "evictionMinimumReclaim": {"imagefs.available": "10%", "nodefs.available": "10%"}, "failSwapOn": False,
        "healthzBindAddress": "127.0.0.1", "healthzPort": p["kubelet-healthz"], "port": p["kubelet"],
        "readOnlyPort": 0, "serializeImagePulls": False, "staticPodPath": MANIFESTS,
        "tlsCertFile": f"{AGENT}/serving-kubelet.crt", "tlsPrivateKeyFile": f"{AGENT}/serving-kubelet.key",
    }


# ---- cisfix's node configuration ----

def cisfix_config(layout: Layout, cluster: Cluster) -> Dict[str, Any]:
    """The node as cisfix's RKE2 layout sees it: which programs are which component, their health
    endpoints with this lab's ports, and the service that runs them all. RKE2's file paths are the layout's
    own knowledge, not written here."""
    p = cluster.ports
    client = {"certFile": f"{TLS}/client-kube-apiserver.crt", "keyFile": f"{TLS}/client-kube-apiserver.key"}
    server_ca = {"caFile": f"{TLS}/server-ca.crt", **client}
    components: Dict[str, Dict[str, Any]] = {
        "rke2-server": {"process": str(layout.host(RKE2_BINARY)), "restart": [str(layout.restart_program(UNIT))],
                        "unit": UNIT_CGROUP},
        "etcd": {"health": {"url": f"https://127.0.0.1:{p['etcd-client']}/health",
                            "caFile": f"{TLS}/etcd/server-ca.crt", "certFile": f"{TLS}/etcd/client.crt",
                            "keyFile": f"{TLS}/etcd/client.key"}},
        "kube-apiserver": {"health": {"url": f"https://127.0.0.1:{p['apiserver']}/livez", **server_ca}},
        "kube-controller-manager": {"health": {"url": f"https://127.0.0.1:{p['controller-manager']}/healthz",
                                               **server_ca}},
        "kube-scheduler": {"health": {"url": f"https://127.0.0.1:{p['scheduler']}/healthz", **server_ca}},
        "kubelet": {"health": {"url": f"http://127.0.0.1:{p['kubelet-healthz']}/healthz"},
                    "liveConfig": {"url": f"https://127.0.0.1:{p['kubelet']}/configz", **server_ca}},
    }
    for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        components[name]["process"] = str(layout.launcher(name))
    components["kubelet"]["process"] = str(layout.host(KUBELET_BINARY))
    return {"apiVersion": "cisfix/v1", "kind": "NodeConfig", "distribution": "rke2", "version": full_version(cluster),
            "proc": "/proc", "components": components}
