"""`lab create`: write a kubeadm control-plane node's tree under a directory.

Manifests, PKI, kubeconfigs and kubelet files with kubeadm's contents and modes; the lab's launchers (the
"images" the simulated kubelet runs); the lab's settings; and `/etc/cisfix/config.yaml`, the same node
configuration a user writes for a real node, telling cisfix where this node's processes and health
endpoints are.
"""
from __future__ import annotations

import base64
import os
import shutil
import socket
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

from ..kubeyaml import dump as dump_yaml
from ..layouts.kubeadm.flagsenv import INSTANCE_CONFIG
from . import kubeadm
from .configmaps import STORE, ConfigMapStore
from .flags import parse_duration
from .kubeadm import KUBEADM_CONFIG, KUBECONFIGS, KUBELET_CONFIGMAP, PKI, Cluster
from .layout import (CISFIX_CONFIG, KUBEADM_FLAGS, KUBELET_CONFIG, KUBELET_DEFAULTS, KUBELET_DROPIN, MANIFESTS,
                     LabError, Layout, Settings, trusted_root)
from .pki import Cert, issue_all

PORT_NAMES = ("apiserver", "controller-manager", "scheduler", "etcd-client", "etcd-peer", "etcd-metrics",
              "kubelet-healthz", "kubelet")


def free_ports(names=PORT_NAMES) -> Dict[str, int]:
    """Distinct free loopback ports, all held open until every one is chosen."""
    sockets = []
    try:
        for _ in names:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return {name: s.getsockname()[1] for name, s in zip(names, sockets)}
    finally:
        for s in sockets:
            s.close()


def load_yaml(text: str) -> Any:
    from ruamel.yaml import YAML

    return YAML(typ="safe", pure=True).load(text)


def write(path: Path, content: "str | bytes", mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = content.encode("utf-8") if isinstance(content, str) else content
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def make_dir(path: Path, mode: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)


# ---- PKI ----

# The cluster-wide keys `kubeadm join --control-plane` receives (upload-certs' kubeadm-certs Secret); a
# joining node makes every other certificate itself, naming itself.
CLUSTER_CAS = ("ca", "etcd/ca", "front-proxy-ca", "sa")


def _pki_certs(layout: Layout, scratch: Path, node: str) -> Dict[str, Cert]:
    """kubeadm's certificates (`kubeadm certs list`), the kubelet's, and the kubeconfigs' client certs
    (made in `scratch`, then embedded), of the node named `node`."""
    pki = layout.host(PKI)
    addr = kubeadm.ADDRESS
    ca = Cert(pki / "ca.crt", pki / "ca.key", "/CN=kubernetes")
    etcd_ca = Cert(pki / "etcd/ca.crt", pki / "etcd/ca.key", "/CN=etcd-ca")
    proxy_ca = Cert(pki / "front-proxy-ca.crt", pki / "front-proxy-ca.key", "/CN=front-proxy-ca")
    etcd_sans = (f"DNS:{node}", "DNS:localhost", f"IP:{addr}", "IP:127.0.0.1", "IP:0:0:0:0:0:0:0:1")

    def leaf(dir_: Path, name: str, subject: str, issuer: Cert, usage: str, sans=()) -> Cert:
        return Cert(dir_ / f"{name}.crt", dir_ / f"{name}.key", subject, issuer, usage, tuple(sans))

    certs = {
        "ca": ca, "etcd/ca": etcd_ca, "front-proxy-ca": proxy_ca,
        "apiserver": leaf(pki, "apiserver", "/CN=kube-apiserver", ca, "serverAuth", (
            "DNS:kubernetes", "DNS:kubernetes.default", "DNS:kubernetes.default.svc",
            "DNS:kubernetes.default.svc.cluster.local", f"DNS:{node}", "IP:10.96.0.1", f"IP:{addr}")),
        "apiserver-kubelet-client": leaf(pki, "apiserver-kubelet-client",
                                         "/O=kubeadm:cluster-admins/CN=kube-apiserver-kubelet-client", ca, "clientAuth"),
        "apiserver-etcd-client": leaf(pki, "apiserver-etcd-client", "/CN=kube-apiserver-etcd-client", etcd_ca,
                                      "clientAuth"),
        "front-proxy-client": leaf(pki, "front-proxy-client", "/CN=front-proxy-client", proxy_ca, "clientAuth"),
        "etcd/server": leaf(pki / "etcd", "server", f"/CN={node}", etcd_ca, "serverAuth,clientAuth", etcd_sans),
        "etcd/peer": leaf(pki / "etcd", "peer", f"/CN={node}", etcd_ca, "serverAuth,clientAuth", etcd_sans),
        "etcd/healthcheck-client": leaf(pki / "etcd", "healthcheck-client", "/CN=kube-etcd-healthcheck-client",
                                        etcd_ca, "clientAuth"),
        "sa": Cert(pki / "sa.pub", pki / "sa.key", key_only=True),
        # The kubelet's self-signed serving certificate, as a kubelet without serverTLSBootstrap makes it.
        "kubelet": Cert(layout.host("/var/lib/kubelet/pki/kubelet.crt"), layout.host("/var/lib/kubelet/pki/kubelet.key"),
                        f"/CN={node}-ca"),
        "kubelet-client": leaf(scratch, "kubelet-client", kubeadm.kubelet_client_subject(node), ca, "clientAuth"),
    }
    for conf, (_, subject) in KUBECONFIGS.items():
        certs[conf] = leaf(scratch, conf, subject, ca, "clientAuth")
    return certs


def _write_kubeconfigs(layout: Layout, cluster: Cluster, certs: Dict[str, Cert]) -> None:
    ca_pem = certs["ca"].cert.read_bytes()
    b64 = lambda path: base64.b64encode(path.read_bytes()).decode()  # noqa: E731
    for conf, (user, _) in KUBECONFIGS.items():
        cert = certs.get(conf)
        if cert is None:  # super-admin.conf: `kubeadm init` writes it, `kubeadm join` does not
            continue
        doc = kubeadm.kubeconfig(cluster, user, ca_pem, {"client-certificate-data": b64(cert.cert),
                                                          "client-key-data": b64(cert.key)})
        write(layout.host(f"/etc/kubernetes/{conf}"), dump_yaml(doc), 0o600)
    # The kubelet's client certificate is rotated on disk; kubelet.conf points at the current one.
    client = certs["kubelet-client"]
    dated = layout.host("/var/lib/kubelet/pki/kubelet-client-2000-01-01-00-00-00.pem")
    write(dated, client.cert.read_bytes() + client.key.read_bytes(), 0o600)
    current = layout.host(kubeadm.KUBELET_CLIENT_PEM)
    current.symlink_to(dated.name)  # relative: the same file seen from the host and from the node
    doc = kubeadm.kubeconfig(cluster, "default-auth", ca_pem, {"client-certificate": kubeadm.KUBELET_CLIENT_PEM,
                                                              "client-key": kubeadm.KUBELET_CLIENT_PEM})
    doc["contexts"][0]["name"] = doc["current-context"] = "default-auth@kubernetes"
    write(layout.host("/etc/kubernetes/kubelet.conf"), dump_yaml(doc), 0o600)


# ---- the lab's launchers ----

def import_path() -> List[str]:
    """sys.path entries that hold cisfix and its dependencies, so that the launchers import the very cisfix
    that made the lab, from a venv, a zipapp's extraction or a source checkout alike."""
    import cisfix
    import ruamel.yaml

    entries = []
    for module in (cisfix, ruamel.yaml):
        path = Path(module.__file__).parent
        for _ in module.__name__.split(".")[1:]:
            path = path.parent
        if str(path.parent) not in entries:
            entries.append(str(path.parent))
    return entries


def launcher_script(python: str, entries: List[str], purpose: str, module: str, call: str) -> str:
    return (f"#!{python}\n# Written by `cisfix lab create`: {purpose}.\n"
            f"import sys\nsys.path[:0] = {entries!r}\n"
            f"from cisfix.lab.{module} import main\nsys.exit(main({call}))\n")


def node_programs(layout: Layout, settings: Settings, kubelet: Path) -> Dict[Path, str]:
    """The launchers a lab with static pods has: the control plane's "images", the kubelet at `kubelet`,
    the init."""
    root = str(layout.root)
    py, path = settings.python, settings.import_path
    programs = {
        layout.launcher(name): launcher_script(py, path, f"the lab's {name} stand-in", "standin", repr(name))
        for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler")}
    programs[kubelet] = launcher_script(py, path, "the lab's simulated kubelet", "kubelet", repr(root))
    programs[layout.init_program] = launcher_script(py, path, "the lab's init (systemd's part)", "supervisor",
                                                    repr(root))
    etcd = shutil.which("etcd") or "/usr/bin/etcd"
    if not os.access(etcd, os.X_OK):
        raise LabError("etcd is not installed: `apt-get install -y etcd-server` (the lab runs the real etcd)")
    programs[layout.launcher("etcd")] = launcher_script(py, path, "the real etcd, run as in its container", "realbin",
                                                        f"'etcd', {etcd!r}, {root!r}")
    return programs


def write_programs(programs: Dict[Path, str]) -> None:
    for program, text in programs.items():
        write(program, text, 0o755)


def _write_launchers(layout: Layout, settings: Settings) -> None:
    programs = node_programs(layout, settings, layout.launcher("kubelet"))
    programs[layout.restart_kubelet_program] = launcher_script(
        settings.python, settings.import_path, "`systemctl restart kubelet` for this lab", "cli",
        repr(["restart-kubelet", str(layout.root)]))
    programs[layout.daemon_reload_program] = launcher_script(
        settings.python, settings.import_path, "`systemctl daemon-reload` for this lab", "cli",
        repr(["daemon-reload", str(layout.root)]))
    write_programs(programs)


def write_static_pods(layout: Layout, pods: Dict[str, Dict[str, Any]]) -> None:
    for name, pod in pods.items():
        write(layout.host(f"{MANIFESTS}/{name}.yaml"), dump_yaml(pod), 0o600)


# ---- cisfix's node configuration ----

def cisfix_config(layout: Layout, cluster: Cluster) -> Dict[str, Any]:
    p = cluster.ports
    manifest = lambda name: f"{MANIFESTS}/{name}.yaml"  # noqa: E731
    client = {"certFile": f"{PKI}/apiserver-kubelet-client.crt", "keyFile": f"{PKI}/apiserver-kubelet-client.key"}
    # The controller manager and the scheduler serve a self-signed certificate made at start (kubeadm gives
    # them none), so there is no CA to verify it with.
    self_signed = {"insecureSkipVerify": True, **client}
    components = {
        "etcd": {"manifest": manifest("etcd"), "health": {
            "url": f"https://127.0.0.1:{p['etcd-client']}/health", "caFile": f"{PKI}/etcd/ca.crt",
            "certFile": f"{PKI}/etcd/healthcheck-client.crt", "keyFile": f"{PKI}/etcd/healthcheck-client.key"}},
        "kube-apiserver": {"manifest": manifest("kube-apiserver"), "health": {
            "url": f"https://127.0.0.1:{p['apiserver']}/livez", "caFile": f"{PKI}/ca.crt", **client}},
        "kube-controller-manager": {"manifest": manifest("kube-controller-manager"), "health": {
            "url": f"https://127.0.0.1:{p['controller-manager']}/healthz", **self_signed}},
        "kube-scheduler": {"manifest": manifest("kube-scheduler"), "health": {
            "url": f"https://127.0.0.1:{p['scheduler']}/healthz", **self_signed}},
        "kubelet": {"config": KUBELET_CONFIG, "flagFiles": [KUBEADM_FLAGS, KUBELET_DROPIN],
                    "restart": [str(layout.restart_kubelet_program)], "reload": [str(layout.daemon_reload_program)],
                    "health": {"url": f"http://127.0.0.1:{p['kubelet-healthz']}/healthz"},
                    # Its effective configuration, on its authenticated port, as a real kubelet serves it.
                    "liveConfig": {"url": f"https://127.0.0.1:{p['kubelet']}/configz", "insecureSkipVerify": True,
                                   **client}},
    }
    for name, settings in components.items():
        settings["process"] = str(layout.launcher(name))
    return {"apiVersion": "cisfix/v1", "kind": "NodeConfig", "proc": "/proc", "version": cluster.version,
            "components": components}


# ---- create ----

def new_layout(root: "str | os.PathLike[str]") -> Layout:
    """The layout of a lab about to be written at `root` (any distribution's): a folder cisfix trusts,
    absent or empty."""
    trusted_root(root, creating=True)
    layout = Layout(root)
    if layout.root.exists() and any(layout.root.iterdir()):
        raise LabError(f"{layout.root} is not empty")
    return layout


def static_pod_node(version: str, backoff: Tuple[float, float], node: str = kubeadm.NODE_NAME,
                    **settings: Any) -> Tuple[Cluster, Settings]:
    """The cluster (the version, free ports, the node's name) and settings of a lab whose kubelet runs static
    pods with a CrashLoopBackOff of `backoff` (initial, max) s, run by this Python; `settings`: the other
    fields."""
    cluster = Cluster(kubeadm.parse_version(version), free_ports(), node)
    return cluster, Settings(version=cluster.version, ports=cluster.ports, node_name=node, backoff_initial=backoff[0],
                             backoff_max=backoff[1], python=sys.executable, import_path=import_path(), **settings)


def create(root: "str | os.PathLike[str]", version: str = "1.32", file_check_frequency: str = "20s",
           key_algorithm: str = "RSA-2048", probe_time_scale: float = 1.0, startup_delay: float = 0.0,
           backoff: Tuple[float, float] = (10.0, 300.0), kubelet_restart_sec: float = 10.0,
           file_watch: bool = True) -> Layout:
    """Write a lab node. The defaults are a real node's timings; see `Settings` for each knob."""
    parse_duration(file_check_frequency)  # a bad value would make a kubelet that never starts
    check_timing(backoff, kubelet_restart_sec)
    layout = new_layout(root)
    cluster, settings = static_pod_node(version, backoff, probe_time_scale=probe_time_scale,
                                        startup_delay=startup_delay, kubelet_restart_sec=kubelet_restart_sec,
                                        file_watch=file_watch)
    config = kubeadm.cluster_configuration(cluster)
    kubelet_config = kubeadm.kubelet_config(cluster, file_check_frequency)
    write_node(layout, cluster, settings, kubelet_config, key_algorithm)
    write_static_pods(layout, kubeadm.static_pods(cluster, config))
    store = ConfigMapStore(layout.host(STORE))
    store.create(KUBEADM_CONFIG, {"ClusterConfiguration": dump_yaml(config)})
    store.create(KUBELET_CONFIGMAP, {"kubelet": dump_yaml(kubelet_config)})
    store.add_node(cluster.node, {kubeadm.CONTROL_PLANE_LABEL: ""})
    return layout


def check_timing(backoff: Tuple[float, float], kubelet_restart_sec: float) -> None:
    if not 0 < backoff[0] <= backoff[1] or kubelet_restart_sec < 0:
        raise ValueError("back-off must be 0 < initial <= max, and the kubelet's restart delay not negative")


def write_node(layout: Layout, cluster: Cluster, settings: Settings, kubelet_config: Dict[str, Any],
               key_algorithm: str, cluster_pki: "Layout | None" = None) -> None:
    """Everything of a control-plane node but its static pods: PKI (with `cluster_pki`'s authorities and
    service-account key, as `kubeadm join --control-plane` gets them, else new ones as `kubeadm init`
    makes them), kubeconfigs, the kubelet's files, cisfix's node configuration, the lab's settings and
    launchers."""
    make_dir(layout.host("/etc/kubernetes"), 0o755)
    make_dir(layout.host(MANIFESTS), 0o700)
    make_dir(layout.host(PKI), 0o755)
    make_dir(layout.host(f"{PKI}/etcd"), 0o755)
    make_dir(layout.host("/var/lib/etcd"), 0o700)
    make_dir(layout.host("/var/lib/kubelet/pki"), 0o755)
    scratch = layout.run_dir / "pki-scratch"
    certs = _pki_certs(layout, scratch, cluster.node)
    if cluster_pki is None:
        issue_all(list(certs.values()), key_algorithm)
    else:
        for name in CLUSTER_CAS:
            for path in (certs[name].cert, certs[name].key):
                source = cluster_pki.host(f"/{path.relative_to(layout.root)}")
                write(path, source.read_bytes(), source.stat().st_mode & 0o777)
        del certs["super-admin.conf"]
        issue_all([cert for name, cert in certs.items() if name not in CLUSTER_CAS], key_algorithm)
    _write_kubeconfigs(layout, cluster, certs)
    shutil.rmtree(scratch)

    instance = kubeadm.instance_config(cluster)
    if instance:  # kubeadm applies it over the ConfigMap's configuration in the node's config.yaml
        write(layout.host(INSTANCE_CONFIG), instance, 0o644)
    node_config = {**kubelet_config, "containerRuntimeEndpoint": kubeadm.CRI_SOCKET} if instance else kubelet_config
    write(layout.host(KUBELET_CONFIG), dump_yaml(node_config), 0o644)
    write(layout.host(KUBEADM_FLAGS), kubeadm.kubeadm_flags_env(cluster), 0o644)
    write(layout.host(KUBELET_DROPIN), kubeadm.KUBELET_DROPIN, 0o644)
    write(layout.host("/usr/lib/systemd/system/kubelet.service"), kubeadm.KUBELET_UNIT, 0o644)
    write(layout.host(KUBELET_DEFAULTS), "KUBELET_EXTRA_ARGS=\n", 0o644)
    for path, text in kubeadm.cni_files().items():
        write(layout.host(path), text, 0o644)
    write(layout.host(CISFIX_CONFIG), dump_yaml(cisfix_config(layout, cluster)), 0o644)

    layout.save_settings(settings)
    _write_launchers(layout, settings)
    for directory in (layout.pods_dir, layout.exits_dir, layout.log_dir):
        directory.mkdir(parents=True, exist_ok=True)
