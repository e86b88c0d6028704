"""`lab create --distribution rke2`: write an RKE2 server node's tree under a directory, as it is after
the install script and a first `rke2 server` run.

The configuration a fresh install has (no `profile: cis`: the CIS fixes are still to be made), RKE2's PKI
under server/tls, the kubeconfigs under server/cred, the secrets-encryption and egress-selector
configurations, the unit file, and the lab's launchers: `rke2` (rke2server.py), the kubelet at RKE2's
place, the control plane's "images" and the restart program. The generated files (manifests, etcd's
configuration, the kubelet drop-in, the pod security configuration, rke2.yaml) are written by
`rke2 server` when the lab starts.
"""
from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Dict, Tuple

from ..kubeyaml import dump as dump_yaml
from . import rke2
from .kubeadm import NODE_NAME, Cluster
from .layout import CISFIX_CONFIG, Layout, Settings
from .pki import Cert, issue_all
from .tree import launcher_script, make_dir, new_layout, node_programs, static_pod_node, write, write_programs

TLS, AGENT, CRED = rke2.TLS, rke2.AGENT, rke2.CRED

# rke2's systemd unit (bundle/lib/systemd/system/rke2-server.service), installed under /usr/local by the
# tarball install.
UNIT_FILE = """\
[Unit]
Description=Rancher Kubernetes Engine v2 (server)
Documentation=https://github.com/rancher/rke2#readme
Wants=network-online.target
After=network-online.target
Conflicts=rke2-agent.service

[Install]
WantedBy=multi-user.target

[Service]
Type=notify
EnvironmentFile=-/etc/default/%N
EnvironmentFile=-/etc/sysconfig/%N
EnvironmentFile=-/usr/local/lib/systemd/system/%N.env
KillMode=process
Delegate=yes
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
TimeoutStartSec=0
Restart=always
RestartSec=5s
ExecStartPre=/bin/sh -xc '! /usr/bin/systemctl is-enabled --quiet nm-cloud-setup.service'
ExecStartPre=-/sbin/modprobe br_netfilter
ExecStartPre=-/sbin/modprobe overlay
ExecStart=/usr/local/bin/rke2 server
ExecStopPost=-/bin/sh -c "systemd-cgls /system.slice/%n | grep -Eo '[0-9]+ (containerd|kubelet)' | awk '{print $1}' | xargs -r kill"
"""


def _certs(layout: Layout, scratch: Path) -> Dict[str, Cert]:
    tls = layout.host(TLS)
    local = ("DNS:localhost", f"DNS:{NODE_NAME}", "IP:127.0.0.1", "IP:0:0:0:0:0:0:0:1")

    def ca(name: str, cn: str) -> Cert:
        return Cert(tls / f"{name}.crt", tls / f"{name}.key", f"/CN={cn}@1700000000")

    def leaf(path: Path, subject: str, issuer: Cert, usage: str, sans=()) -> Cert:
        return Cert(path.with_suffix(".crt"), path.with_suffix(".key"), subject, issuer, usage, tuple(sans))

    server_ca, client_ca = ca("server-ca", "rke2-server-ca"), ca("client-ca", "rke2-client-ca")
    proxy_ca = ca("request-header-ca", "rke2-request-header-ca")
    etcd_ca, peer_ca = ca("etcd/server-ca", "etcd-server-ca"), ca("etcd/peer-ca", "etcd-peer-ca")
    client = lambda name, subject: leaf(tls / name, subject, client_ca, "clientAuth")  # noqa: E731
    return {
        "server-ca": server_ca, "client-ca": client_ca, "request-header-ca": proxy_ca, "etcd/server-ca": etcd_ca,
        "etcd/peer-ca": peer_ca,
        "serving-kube-apiserver": leaf(tls / "serving-kube-apiserver", "/CN=kube-apiserver", server_ca, "serverAuth", (
            "DNS:kubernetes", "DNS:kubernetes.default", "DNS:kubernetes.default.svc",
            "DNS:kubernetes.default.svc.cluster.local", "IP:10.43.0.1") + local),
        "client-kube-apiserver": client("client-kube-apiserver", "/O=system:masters/CN=system:apiserver"),
        "client-admin": client("client-admin", "/O=system:masters/CN=system:admin"),
        "client-controller": client("client-controller", "/CN=system:kube-controller-manager"),
        "client-scheduler": client("client-scheduler", "/CN=system:kube-scheduler"),
        "client-kubelet": leaf(layout.host(f"{AGENT}/client-kubelet"), f"/O=system:nodes/CN=system:node:{NODE_NAME}",
                               client_ca, "clientAuth"),
        "client-auth-proxy": leaf(tls / "client-auth-proxy", "/CN=system:auth-proxy", proxy_ca, "clientAuth"),
        "etcd/server-client": leaf(tls / "etcd/server-client", "/CN=etcd-server", etcd_ca, "serverAuth,clientAuth",
                                   local),
        "etcd/client": leaf(tls / "etcd/client", "/CN=etcd-client", etcd_ca, "clientAuth"),
        "etcd/peer-server-client": leaf(tls / "etcd/peer-server-client", "/CN=etcd-peer", peer_ca,
                                        "serverAuth,clientAuth", local),
        "kube-controller-manager": leaf(tls / "kube-controller-manager/kube-controller-manager",
                                        "/CN=kube-controller-manager", server_ca, "serverAuth", local),
        "kube-scheduler": leaf(tls / "kube-scheduler/kube-scheduler", "/CN=kube-scheduler", server_ca, "serverAuth",
                               local),
        "serving-kubelet": leaf(layout.host(f"{AGENT}/serving-kubelet"), f"/CN={NODE_NAME}", server_ca, "serverAuth",
                                local),
        "service": Cert(scratch / "service.pub", tls / "service.key", key_only=True),
    }


def _kubeconfig(cluster: Cluster, ca: str, cert: str, key: str) -> str:
    """A kubeconfig naming its files, as rke2 writes those under server/cred and agent/."""
    return dump_yaml({"apiVersion": "v1", "kind": "Config", "clusters": [
        {"cluster": {"certificate-authority": ca, "server": cluster.api_server_url}, "name": "local"}],
        "contexts": [{"context": {"cluster": "local", "namespace": "default", "user": "user"}, "name": "Default"}],
        "current-context": "Default", "preferences": {},
        "users": [{"name": "user", "user": {"client-certificate": cert, "client-key": key}}]})


def _write_pki(layout: Layout, cluster: Cluster, key_algorithm: str) -> None:
    scratch = layout.run_dir / "pki-scratch"
    issue_all(list(_certs(layout, scratch).values()), key_algorithm)
    shutil.rmtree(scratch)
    for src, dst, mode in ((f"{TLS}/service.key", f"{TLS}/service.current.key", 0o600),
                           (f"{TLS}/client-ca.crt", f"{TLS}/client-ca.nochain.crt", 0o644),
                           (f"{TLS}/server-ca.crt", f"{TLS}/server-ca.nochain.crt", 0o644),
                           (f"{TLS}/client-ca.crt", f"{AGENT}/client-ca.crt", 0o644),
                           (f"{TLS}/server-ca.crt", f"{AGENT}/server-ca.crt", 0o644)):
        write(layout.host(dst), layout.host(src).read_bytes(), mode)
    for name, user in (("admin", "client-admin"), ("controller", "client-controller"),
                       ("scheduler", "client-scheduler"), ("api-server", "client-kube-apiserver")):
        write(layout.host(f"{CRED}/{name}.kubeconfig"),
              _kubeconfig(cluster, f"{TLS}/server-ca.crt", f"{TLS}/{user}.crt", f"{TLS}/{user}.key"), 0o600)
    write(layout.host(rke2.KUBELET_KUBECONFIG), _kubeconfig(cluster, f"{AGENT}/server-ca.crt",
                                                            f"{AGENT}/client-kubelet.crt",
                                                            f"{AGENT}/client-kubelet.key"), 0o600)


def _server_files(layout: Layout, token: str) -> None:
    """What the API server's flags name besides the PKI (pkg/rke2, k3s pkg/daemons/control/deps)."""
    secret = base64.b64encode(secrets.token_bytes(32)).decode()
    encryption = {"kind": "EncryptionConfiguration", "apiVersion": "apiserver.config.k8s.io/v1", "resources": [
        {"resources": ["secrets"], "providers": [{"aescbc": {"keys": [{"name": "aescbckey", "secret": secret}]}},
                                                 {"identity": {}}]}]}
    write(layout.host(f"{CRED}/encryption-config.json"), json.dumps(encryption), 0o600)
    egress = {"apiVersion": "apiserver.k8s.io/v1beta1", "kind": "EgressSelectorConfiguration",
              "egressSelections": [{"name": "cluster", "connection": {"proxyProtocol": "Direct"}}]}
    write(layout.host(f"{rke2.SERVER}/etc/egress-selector-config.yaml"), dump_yaml(egress), 0o600)
    write(layout.host(rke2.ETCD_NAME_FILE), rke2.ETCD_NAME, 0o600)
    for name in ("token", "node-token", "agent-token"):
        write(layout.host(f"{rke2.SERVER}/{name}"), f"K10{secrets.token_hex(32)}::server:{token}\n", 0o600)


def _write_launchers(layout: Layout, settings: Settings) -> None:
    programs = node_programs(layout, settings, layout.host(rke2.KUBELET_BINARY))
    py, path, root = settings.python, settings.import_path, str(layout.root)
    programs[layout.host(rke2.RKE2_BINARY)] = launcher_script(py, path, "the lab's rke2", "rke2server", repr(root))
    programs[layout.restart_program(rke2.UNIT)] = launcher_script(
        py, path, "`systemctl restart rke2-server` for this lab", "cli", repr(["restart", root]))
    write_programs(programs)


def create(root: "str | os.PathLike[str]", version: str = "1.32", key_algorithm: str = "ECDSA-P256",
           probe_time_scale: float = 1.0, startup_delay: float = 15.0,
           backoff: Tuple[float, float] = (10.0, 300.0), restart_sec: float = 5.0) -> Layout:
    """Write an RKE2 server node. The defaults are a real node's: ECDSA P-256 keys (as RKE2 makes them),
    an API server, controller manager and scheduler that take `startup_delay` seconds to serve (a real API
    server 10-30 s), `restart_sec` as rke2-server.service's RestartSec and rke2's wait before it restarts an
    exited kubelet (5 s), and the kubelet's CrashLoopBackOff."""
    if not 0 < backoff[0] <= backoff[1] or restart_sec < 0:
        raise ValueError("back-off must be 0 < initial <= max, and the restart delay not negative")
    layout = new_layout(root)
    cluster, settings = static_pod_node(version, backoff, probe_time_scale=probe_time_scale,
                                        startup_delay=startup_delay, service_restart_sec=restart_sec,
                                        distribution="rke2")
    for path, mode in (("/etc/rancher/rke2", 0o755), (rke2.CONFIG_D, 0o755), (rke2.DATA, 0o755),
                       (rke2.SERVER, 0o700), (TLS, 0o700), (f"{TLS}/etcd", 0o700), (CRED, 0o700),
                       (f"{rke2.SERVER}/db", 0o700), (rke2.ETCD_DATA, 0o700), (AGENT, 0o755),
                       (rke2.MANIFESTS, 0o700), (rke2.KUBELET_CONF_D, 0o755), (f"{AGENT}/logs", 0o755)):
        make_dir(layout.host(path), mode)
    token = secrets.token_hex(16)
    # A fresh install's configuration: what the install docs' first example sets, and no `profile`.
    write(layout.host(rke2.CONFIG), f'write-kubeconfig-mode: "0644"\ntoken: {token}\n', 0o600)
    _write_pki(layout, cluster, key_algorithm)
    _server_files(layout, token)
    write(layout.host(rke2.UNIT_FILE), UNIT_FILE, 0o644)
    write(layout.host(CISFIX_CONFIG), dump_yaml(rke2.cisfix_config(layout, cluster)), 0o644)
    layout.save_settings(settings)
    _write_launchers(layout, settings)
    for directory in (layout.pods_dir, layout.exits_dir, layout.log_dir):
        directory.mkdir(parents=True, exist_ok=True)
    return layout
