"""`lab create --distribution k3s`: write a k3s server node's tree under a directory.

The files a fresh `curl -sfL https://get.k3s.io | sh -` server has after its first start: the k3s binary
(the lab's launcher of `k3s_server.py`) and its systemd unit, `/etc/rancher/k3s/config.yaml` as an
installer writes it (not hardened), an empty `config.yaml.d/`, the server's PKI and kubeconfigs under
`/var/lib/rancher/k3s/server/{tls,cred}` and the agent's under `/var/lib/rancher/k3s/agent`, the
datastore folder (SQLite through kine: no etcd), the restart program (`systemctl restart k3s`), and
`/etc/cisfix/config.yaml` describing the node to cisfix. Paths and certificate names follow k3s's
`pkg/daemons/control/deps/deps.go` and the `Running ...` lines of real nodes (data/SOURCES.md).
"""
from __future__ import annotations

import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any, Dict

from ..kubeyaml import dump as dump_yaml
from . import k3s
from .k3s import AGENT, CRED, TLS
from .layout import CISFIX_CONFIG, Layout, Settings
from .pki import Cert, issue_all
from .tree import free_ports, import_path, launcher_script, make_dir, new_layout, write

# Fresh install: what `INSTALL_K3S_EXEC="--write-kubeconfig-mode 0644"`-style installs commonly leave.
FRESH_CONFIG = 'write-kubeconfig-mode: "0644"\n'


def _certs(layout: Layout) -> Dict[str, Cert]:
    """k3s's certificates (deps.go genClientCerts, genServerCerts, genRequestHeaderCerts, genETCDCerts) and
    the agent's."""
    tls, agent = layout.host(TLS), layout.host(AGENT)
    stamp = int(time.time())
    ca = lambda name, cn: Cert(tls / f"{name}.crt", tls / f"{name}.key", f"/CN={cn}@{stamp}")  # noqa: E731
    client_ca, server_ca = ca("client-ca", "k3s-client-ca"), ca("server-ca", "k3s-server-ca")
    request_ca = ca("request-header-ca", "k3s-request-header-ca")
    etcd_server_ca = ca("etcd/server-ca", "etcd-server-ca")
    etcd_peer_ca = ca("etcd/peer-ca", "etcd-peer-ca")
    local = ("DNS:localhost", "IP:127.0.0.1")

    def leaf(folder: Path, name: str, subject: str, issuer: Cert, usage: str = "clientAuth", sans=()) -> Cert:
        return Cert(folder / f"{name}.crt", folder / f"{name}.key", subject, issuer, usage, tuple(sans))

    certs = {
        "client-ca": client_ca, "server-ca": server_ca, "request-header-ca": request_ca,
        "etcd/server-ca": etcd_server_ca, "etcd/peer-ca": etcd_peer_ca,
        "client-admin": leaf(tls, "client-admin", "/O=system:masters/CN=system:admin", client_ca),
        "client-supervisor": leaf(tls, "client-supervisor", "/O=system:masters/CN=system:k3s-supervisor", client_ca),
        "client-controller": leaf(tls, "client-controller", "/CN=system:kube-controller-manager", client_ca),
        "client-scheduler": leaf(tls, "client-scheduler", "/CN=system:kube-scheduler", client_ca),
        "client-kube-apiserver": leaf(tls, "client-kube-apiserver", "/O=system:masters/CN=system:apiserver", client_ca),
        "client-kube-proxy": leaf(tls, "client-kube-proxy", "/CN=system:kube-proxy", client_ca),
        "client-k3s-controller": leaf(tls, "client-k3s-controller", "/CN=system:k3s-controller", client_ca),
        "client-k3s-cloud-controller": leaf(tls, "client-k3s-cloud-controller", "/CN=k3s-cloud-controller-manager",
                                            client_ca),
        "client-auth-proxy": leaf(tls, "client-auth-proxy", "/CN=system:auth-proxy", request_ca),
        "serving-kube-apiserver": leaf(tls, "serving-kube-apiserver", "/CN=kube-apiserver", server_ca, "serverAuth", (
            "DNS:kubernetes", "DNS:kubernetes.default", "DNS:kubernetes.default.svc",
            f"DNS:kubernetes.default.svc.{k3s.DOMAIN}", f"DNS:{k3s.NODE_NAME}", "IP:10.43.0.1", *local)),
        "kube-controller-manager": leaf(tls / "kube-controller-manager", "kube-controller-manager",
                                        "/CN=kube-controller-manager", server_ca, "serverAuth", local),
        "kube-scheduler": leaf(tls / "kube-scheduler", "kube-scheduler", "/CN=kube-scheduler", server_ca, "serverAuth",
                               local),
        "etcd/client": leaf(tls / "etcd", "client", "/CN=etcd-client", etcd_server_ca),
        "etcd/server-client": leaf(tls / "etcd", "server-client", "/CN=etcd-server", etcd_server_ca,
                                   "serverAuth,clientAuth", local),
        "etcd/peer-server-client": leaf(tls / "etcd", "peer-server-client", "/CN=etcd-peer", etcd_peer_ca,
                                        "serverAuth,clientAuth", local),
        "service": Cert(tls / "service.pub", tls / "service.key", key_only=True),
        # The agent's: the kubelet's client and serving certificates (k3s signs them for the node).
        "client-kubelet": leaf(agent, "client-kubelet", f"/O=system:nodes/CN=system:node:{k3s.NODE_NAME}",
                               client_ca),
        "serving-kubelet": leaf(agent, "serving-kubelet", f"/CN={k3s.NODE_NAME}", server_ca, "serverAuth",
                                (f"DNS:{k3s.NODE_NAME}", *local)),
        "agent-client-kube-proxy": leaf(agent, "client-kube-proxy", "/CN=system:kube-proxy", client_ca),
        "agent-client-k3s-controller": leaf(agent, "client-k3s-controller", "/CN=system:k3s-controller", client_ca),
    }
    return certs


def kubeconfig(url: str, ca: str, cert: str, key: str) -> Dict[str, Any]:
    """deps.go's kubeconfig template: files by path."""
    return {"apiVersion": "v1", "clusters": [{"cluster": {"server": url, "certificate-authority": ca}, "name": "local"}],
            "contexts": [{"context": {"cluster": "local", "namespace": "default", "user": "user"}, "name": "Default"}],
            "current-context": "Default", "kind": "Config", "preferences": {},
            "users": [{"name": "user", "user": {"client-certificate": cert, "client-key": key}}]}


def _write_credentials(layout: Layout, url: str) -> None:
    tls_kubeconfigs = {"admin": "client-admin", "supervisor": "client-supervisor", "controller": "client-controller",
                       "scheduler": "client-scheduler", "api-server": "client-kube-apiserver",
                       "cloud-controller": "client-k3s-cloud-controller"}
    for name, client in tls_kubeconfigs.items():
        doc = kubeconfig(url, f"{TLS}/server-ca.crt", f"{TLS}/{client}.crt", f"{TLS}/{client}.key")
        write(layout.host(f"{CRED}/{name}.kubeconfig"), dump_yaml(doc), 0o600)
    agent_kubeconfigs = {"kubelet": "client-kubelet", "kubeproxy": "client-kube-proxy",
                         "k3scontroller": "client-k3s-controller"}
    for name, client in agent_kubeconfigs.items():
        doc = kubeconfig(url, f"{AGENT}/server-ca.crt", f"{AGENT}/{client}.crt", f"{AGENT}/{client}.key")
        write(layout.host(f"{AGENT}/{name}.kubeconfig"), dump_yaml(doc), 0o600)
    token = secrets.token_hex(16)
    write(layout.host(f"{CRED}/passwd"), f"{token},server,server,k3s:server\n{token},node,node,k3s:agent\n", 0o600)
    write(layout.host(f"{CRED}/ipsec.psk"), secrets.token_hex(24) + "\n", 0o600)
    write(layout.host(f"{k3s.SERVER}/token"), f"K10{secrets.token_hex(32)}::server:{token}\n", 0o600)
    layout.host(f"{k3s.SERVER}/node-token").symlink_to("token")


def _copy(layout: Layout, source: str, target: str, mode: int) -> None:
    write(layout.host(target), layout.host(source).read_bytes(), mode)


def _write_pki(layout: Layout, key_algorithm: str) -> None:
    for folder, mode in ((k3s.SERVER, 0o700), (TLS, 0o700), (f"{TLS}/temporary-certs", 0o700), (CRED, 0o700),
                         (f"{TLS}/etcd", 0o700), (f"{k3s.SERVER}/db", 0o700), (AGENT, 0o755),
                         (k3s.KUBELET_CONF_DIR, 0o700), (f"{AGENT}/pod-manifests", 0o755)):
        make_dir(layout.host(folder), mode)
    issue_all(list(_certs(layout).values()), key_algorithm)
    layout.host(f"{TLS}/service.pub").unlink()
    _copy(layout, f"{TLS}/service.key", f"{TLS}/service.current.key", 0o600)
    for ca in ("client-ca", "server-ca"):  # the signing CAs without their chain (the controller manager signs with them)
        _copy(layout, f"{TLS}/{ca}.crt", f"{TLS}/{ca}.nochain.crt", 0o644)
        _copy(layout, f"{TLS}/{ca}.crt", f"{AGENT}/{ca}.crt", 0o644)


def _write_launchers(layout: Layout, settings: Settings) -> None:
    root, py, path = str(layout.root), settings.python, settings.import_path
    programs = {
        layout.host(k3s.BINARY): launcher_script(py, path, "the lab's k3s", "k3s_server", repr(root)),
        layout.init_program: launcher_script(py, path, "the lab's init (systemd's part)", "supervisor", repr(root)),
        layout.restart_program("k3s"): launcher_script(py, path, "`systemctl restart k3s` for this lab", "cli",
                                                       repr(["restart", root])),
    }
    for program, text in programs.items():
        write(program, text, 0o755)


def cisfix_config(layout: Layout, settings: Settings) -> Dict[str, Any]:
    """The node configuration: where the k3s process, its unit, its log and each embedded component's
    health endpoint are. The config.yaml paths are k3s's own, which cisfix's k3s layout knows."""
    p = settings.ports
    # The controller manager's and the scheduler's serving certificates are signed by the server CA.
    tls = {"caFile": f"{TLS}/server-ca.crt", "certFile": f"{TLS}/client-admin.crt", "keyFile": f"{TLS}/client-admin.key"}
    components = {
        "k3s": {"process": str(layout.host(k3s.BINARY)), "restart": [str(layout.restart_program("k3s"))],
                "unit": k3s.CGROUP, "log": k3s.LOG},
        "kube-apiserver": {"health": {"url": f"https://127.0.0.1:{p['apiserver']}/livez", **tls}},
        "kube-controller-manager": {"health": {"url": f"https://127.0.0.1:{p['controller-manager']}/healthz", **tls}},
        "kube-scheduler": {"health": {"url": f"https://127.0.0.1:{p['scheduler']}/healthz", **tls}},
        "kubelet": {"health": {"url": f"http://127.0.0.1:{p['kubelet-healthz']}/healthz"}},
    }
    return {"apiVersion": "cisfix/v1", "kind": "NodeConfig", "distribution": "k3s",
            "version": k3s.k3s_version(settings.version), "proc": "/proc", "components": components}


def create(root: "str | os.PathLike[str]", version: str, key_algorithm: str = "ECDSA-P256",
           startup_delay: float = 15.0, restart_sec: float = 5.0) -> Layout:
    """Write a k3s server node. k3s makes ECDSA P-256 keys; it serves some 10-20 s after it starts
    (`startup_delay`); its unit restarts it 5 s after it exits (`restart_sec`)."""
    from .kubeadm import parse_version

    full = parse_version(version)
    if ".".join(full.split(".")[:2]) not in k3s.SUPPORTED:
        raise ValueError(f"unsupported k3s Kubernetes version {version!r} (supported: {', '.join(k3s.SUPPORTED)})")
    if startup_delay < 0 or restart_sec < 0:
        raise ValueError("the startup delay and the restart delay must not be negative")
    layout = new_layout(root)
    settings = Settings(version=full, ports=free_ports(k3s.PORT_NAMES), distribution="k3s",
                        startup_delay=startup_delay, service_restart_sec=restart_sec,
                        python=sys.executable, import_path=import_path())
    _write_pki(layout, key_algorithm)
    _write_credentials(layout, f"https://127.0.0.1:{settings.ports['apiserver']}")
    write(layout.host(k3s.CONFIG), FRESH_CONFIG, 0o600)
    make_dir(layout.host(k3s.DROPINS), 0o755)
    write(layout.host(k3s.UNIT_FILE), k3s.UNIT_TEXT, 0o644)
    write(layout.host(k3s.UNIT_FILE + ".env"), "", 0o600)
    write(layout.host(CISFIX_CONFIG), dump_yaml(cisfix_config(layout, settings)), 0o644)
    layout.save_settings(settings)
    _write_launchers(layout, settings)
    for directory in (layout.run_dir, layout.log_dir):
        directory.mkdir(parents=True, exist_ok=True)
    return layout

