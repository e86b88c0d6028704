"""`lab create --distribution eks-al2|eks-al2023|gke|aks`: a managed worker node's tree under a directory.

The provider's files at its paths with its modes (workerdata.py: what is real, what is seeded): the kubelet
unit and its drop-ins or EnvironmentFile, the kubelet configuration, the kubelet's kubeconfig, the client
CA, the serving certificate (the cluster CA's key never lies on a worker: it is made in a scratch folder and
thrown away), AKS's azure.json; the kubelet launcher at the provider's binary path (the lab's init runs it
from the unit, systemd.py); `/etc/cisfix/config.yaml` with the distribution and where the kubelet's health
and live configuration are; `/etc/cisfix/kubelet-api.kubeconfig`, the credential an operator gives cisfix
to read /configz (a client certificate the kubelet's client CA signed). AL2023's kubelet files are
nodeadm's, written at create and at every `lab reboot` from the boot input (nodeadm.py).

A worker's kubelet serves on its node's ports 10250 and 10248; the lab publishes them at free host ports
(Settings.published) so that several labs run at once, and names those in config.yaml.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import sys
from typing import Any, Callable, Dict, Iterable, List, Optional

from ..kubeyaml import dump as dump_yaml
from . import nodeadm
from .flags import flag_table
from .kubeadm import parse_version
from .layout import CISFIX_CONFIG, Layout, Settings
from .pki import Cert, issue_all
from .systemd import load_service
from .tree import free_ports, import_path, launcher_script, make_dir, new_layout, write
from .workerdata import PROVIDERS, Provider
from . import workerdata as data

KUBELET_API_KUBECONFIG = "/etc/cisfix/kubelet-api.kubeconfig"
PORT, HEALTHZ_PORT = 10250, 10248  # the kubelet's defaults, which every provider keeps
DEFAULT_PATCH = "3"  # `--k8s-version 1.32` on a worker: a released patch, as providers ship no .0


def known_flags(flags: Iterable[str], version: str) -> List[str]:
    """The flags the kubelet of `version` accepts (a provider's script drops the ones a version removed)."""
    table = flag_table("kubelet", version)
    return [f for f in flags if f[2:].split("=", 1)[0] in table]


def version_of(provider: Provider, text: str) -> str:
    parts = text.lstrip("v").split(".")
    full = parse_version(text if len(parts) == 3 else f"{text.lstrip('v')}.{DEFAULT_PATCH}")
    if ".".join(full.split(".")[:2]) not in provider.minors:
        raise ValueError(f"{provider.name} nodes run Kubernetes {', '.join(provider.minors)}, not {text}")
    return full


# ---- PKI ----

def _pki(layout: Layout, provider: Provider, key_algorithm: str) -> None:
    """The cluster CA (its certificate only kept, at the provider's client CA path), the kubelet's serving
    certificate and the operator's kubelet API client certificate, both signed by it."""
    scratch = layout.run_dir / "pki-scratch"
    ca = Cert(scratch / "ca.crt", scratch / "ca.key", "/CN=kubernetes")
    serving = Cert(scratch / "serving.crt", scratch / "serving.key", f"/O=system:nodes/CN=system:node:{provider.node_name}",
                   ca, "serverAuth", (f"DNS:{provider.node_name}", f"IP:{data.NODE_IP}", "IP:127.0.0.1"))
    client = Cert(scratch / "client.crt", scratch / "client.key", "/O=cisfix:node-auditors/CN=cisfix", ca, "clientAuth")
    issue_all([ca, serving, client], key_algorithm)
    write(layout.host(provider.client_ca), ca.cert.read_bytes(), 0o644)
    cert_path, key_path = provider.serving
    if cert_path == key_path:  # a bootstrapped certificate: rotated files, `-current` a symlink to the newest
        dated = layout.host(cert_path.replace("current", "2000-01-01-00-00-00"))
        write(dated, serving.cert.read_bytes() + serving.key.read_bytes(), 0o600)
        layout.host(cert_path).symlink_to(dated.name)
    else:
        write(layout.host(cert_path), serving.cert.read_bytes(), 0o644)
        write(layout.host(key_path), serving.key.read_bytes(), 0o600)
    b64 = lambda path: base64.b64encode(path.read_bytes()).decode()  # noqa: E731
    kubeconfig = {"apiVersion": "v1", "kind": "Config",
                  "clusters": [{"name": "kubelet", "cluster": {"server": f"https://127.0.0.1:{PORT}",
                                                                "insecure-skip-tls-verify": True}}],
                  "users": [{"name": "cisfix", "user": {"client-certificate-data": b64(client.cert),
                                                         "client-key-data": b64(client.key)}}],
                  "contexts": [{"name": "cisfix", "context": {"cluster": "kubelet", "user": "cisfix"}}],
                  "current-context": "cisfix"}
    write(layout.host(KUBELET_API_KUBECONFIG), dump_yaml(kubeconfig), 0o600)
    shutil.rmtree(scratch)


# ---- each provider's files ----

def _eks_al2(layout: Layout, version: str) -> None:
    config = dict(data.AL2_CONFIG_TEMPLATE)
    config.update(data.AL2_BOOTSTRAP_EDITS)
    write(layout.host("/etc/kubernetes/kubelet/kubelet-config.json"), json.dumps(config, indent=2) + "\n", 0o644)
    write(layout.host("/etc/systemd/system/kubelet.service"), data.AL2_UNIT, 0o644)
    dropins = "/etc/systemd/system/kubelet.service.d"
    args = " ".join(known_flags(data.AL2_KUBELET_ARGS.split(), version))
    write(layout.host(f"{dropins}/10-kubelet-args.conf"), f"[Service]\nEnvironment='KUBELET_ARGS={args}'\n", 0o644)
    write(layout.host(f"{dropins}/30-kubelet-extra-args.conf"),
          f"[Service]\nEnvironment='KUBELET_EXTRA_ARGS={data.AL2_KUBELET_EXTRA_ARGS}'\n", 0o644)
    write(layout.host("/var/lib/kubelet/kubeconfig"), data.EKS_KUBECONFIG, 0o644)


def _eks_al2023(layout: Layout, version: str) -> None:
    write(layout.host("/etc/systemd/system/kubelet.service"), data.AL2023_UNIT, 0o644)
    write(layout.host(nodeadm.USER_DATA), data.AL2023_USER_DATA, 0o600)
    nodeadm.boot(layout)


GKE_BOOT_FILES = ("/home/kubernetes/kubelet-config.yaml", "/etc/default/kubelet", "/etc/systemd/system/kubelet.service")


def _gke_boot(layout: Layout, version: str) -> None:
    """What GKE's startup scripts write at every boot from the instance metadata (configure.sh
    download-kubelet-config under umask 077; configure-helper.sh start-kubelet)."""
    config, flags, unit = GKE_BOOT_FILES
    write(layout.host(config), data.GKE_CONFIG, 0o600)
    opts = " ".join(known_flags(data.GKE_KUBELET_OPTS.split(), version))
    opts += f" --config {config}"  # KUBELET_CONFIG_FILE_ARG, after KUBELET_ARGS
    write(layout.host(flags), f'KUBELET_OPTS="{opts} {data.GKE_CGROUP_DRIVER}"\n'
          'KUBE_COVERAGE_FILE="/var/log/kubelet.cov"\n', 0o644)
    write(layout.host(unit), data.GKE_UNIT, 0o644)


def _gke(layout: Layout, version: str) -> None:
    _gke_boot(layout, version)
    make_dir(layout.host("/etc/kubernetes/manifests"), 0o755)
    write(layout.host("/var/lib/kubelet/kubeconfig"), data.GKE_KUBECONFIG, 0o644)


def _aks(layout: Layout, version: str) -> None:
    write(layout.host("/etc/systemd/system/kubelet.service"), data.AKS_UNIT, 0o644)
    for name, text, mode in data.AKS_DROPINS:
        write(layout.host(f"/etc/systemd/system/kubelet.service.d/{name}"), text, mode)
    flags = " ".join(known_flags(data.AKS_KUBELET_FLAGS, version))
    write(layout.host("/etc/default/kubelet"), f"KUBELET_FLAGS={flags}\n{data.AKS_DEFAULTS_REST}", 0o600)
    write(layout.host("/etc/kubernetes/azure.json"), data.AKS_AZURE_JSON, 0o600)
    make_dir(layout.host("/etc/kubernetes/manifests"), 0o755)
    write(layout.host("/var/lib/kubelet/kubeconfig"), data.AKS_KUBECONFIG, 0o600)


WRITERS = {"eks-al2": _eks_al2, "eks-al2023": _eks_al2023, "gke": _gke, "aks": _aks}


# ---- cisfix's node configuration and the lab's programs ----

def cisfix_config(layout: Layout, provider: Provider, settings: Settings) -> Dict[str, Any]:
    """No `version`: the layout asks the kubelet binary, as on a real node."""
    p = settings.ports
    kubelet = {"process": str(layout.host(provider.binary)), "restart": [str(layout.restart_kubelet_program)],
               "reload": [str(layout.daemon_reload_program)],
               "health": {"url": f"http://127.0.0.1:{p['kubelet-healthz']}/healthz"},
               "liveConfig": {"url": f"https://127.0.0.1:{p['kubelet']}/configz", "insecureSkipVerify": True,
                              "kubeconfig": KUBELET_API_KUBECONFIG}}
    return {"apiVersion": "cisfix/v1", "kind": "NodeConfig", "distribution": provider.distribution, "proc": "/proc",
            "components": {"kubelet": kubelet}}


def _write_launchers(layout: Layout, provider: Provider, settings: Settings) -> None:
    root, py, path = str(layout.root), settings.python, settings.import_path
    programs = {
        layout.host(provider.binary): launcher_script(py, path, f"the lab's simulated {provider.name} kubelet",
                                                      "kubelet", repr(root)),
        layout.init_program: launcher_script(py, path, "the lab's init (systemd's part)", "supervisor", repr(root)),
        layout.restart_kubelet_program: launcher_script(py, path, "`systemctl restart kubelet` for this lab", "cli",
                                                        repr(["restart-kubelet", root])),
        layout.daemon_reload_program: launcher_script(py, path, "`systemctl daemon-reload` for this lab", "cli",
                                                      repr(["daemon-reload", root])),
    }
    for program, text in programs.items():
        write(program, text, 0o755)


def create(root: "str | os.PathLike[str]", distribution: str, version: str = "1.32",
           key_algorithm: str = "ECDSA-P256", kubelet_restart_sec: Optional[float] = None) -> Layout:
    """Write a managed worker node of `distribution` (a PROVIDERS key); the kubelet restarts
    `kubelet_restart_sec` after it exits, by default its unit's RestartSec."""
    provider = PROVIDERS.get(distribution)
    if provider is None:
        raise ValueError(f"--distribution {distribution}: no such worker lab ({', '.join(PROVIDERS)})")
    full = version_of(provider, version)
    if kubelet_restart_sec is not None and kubelet_restart_sec < 0:
        raise ValueError("the kubelet's restart delay must not be negative")
    layout = new_layout(root)
    ports = free_ports(("kubelet", "kubelet-healthz"))
    settings = Settings(version=full, ports=ports, distribution=distribution,
                        node_name=provider.node_name, python=sys.executable, import_path=import_path(),
                        kubelet_version=provider.version_format.format(v=full),
                        published={str(PORT): ports["kubelet"], str(HEALTHZ_PORT): ports["kubelet-healthz"]})
    for directory in (layout.run_dir, layout.log_dir, layout.pods_dir, layout.exits_dir):
        directory.mkdir(parents=True, exist_ok=True)
    make_dir(layout.host("/var/lib/kubelet/pki"), 0o755)
    layout.save_settings(settings)
    _pki(layout, provider, key_algorithm)
    WRITERS[distribution](layout, full)
    write(layout.host("/etc/hostname"), provider.node_name + "\n", 0o644)
    settings.kubelet_restart_sec = load_service(layout, "kubelet.service").restart_sec \
        if kubelet_restart_sec is None else kubelet_restart_sec
    layout.save_settings(settings)
    write(layout.host(CISFIX_CONFIG), dump_yaml(cisfix_config(layout, provider, settings)), 0o644)
    _write_launchers(layout, provider, settings)
    return layout


def boot_step(layout: Layout) -> Callable[[], str]:
    """What the node's boot runs before the kubelet starts, its input read (and refused if bad) now, before
    the node is stopped: AL2023's nodeadm; GKE's startup scripts (the lab's instance metadata is what it was
    made with); nothing on the others. Calling it runs it and says what it rewrote."""
    distribution = layout.settings().distribution
    if distribution == "gke":
        version = layout.settings().version

        def startup_scripts() -> str:
            _gke_boot(layout, version)
            return f"the startup scripts rewrote {', '.join(GKE_BOOT_FILES)} from the instance metadata"
        return startup_scripts
    if distribution != "eks-al2023":
        return lambda: "nothing rewritten (the node's files last across a reboot)"
    spec = nodeadm.read_spec(layout)
    return lambda: f"nodeadm rewrote {', '.join(nodeadm.boot(layout, spec))} from {nodeadm.USER_DATA}"
