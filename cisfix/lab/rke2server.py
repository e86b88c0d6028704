"""`rke2 server` in the lab: what RKE2's server process does to its node at every start, then runs the
kubelet as its child.

At start it reads the configuration (config.yaml and its drop-ins) and rewrites what it generates from it
— etcd's configuration file, the kubelet's drop-in, the admin kubeconfig, the four static pod manifests
in rke2's order (`Generator`) — writing a file only when its content changes (pkg/staticpod writeFile: a
temporary file one level up, renamed into place, so the kubelet never reads half a manifest). It starts
the kubelet, restarting it when it exits after the unit's RestartSec (as rke2's kubelet loop does). Pods
whose manifest is unchanged keep running through a restart of rke2 (the new kubelet adopts them), except
the API server, which rke2 restarts every time. SIGTERM stops the kubelet and exits.
A configuration it cannot read makes it exit 1, and systemd's Restart=always (the lab's init) retries.
"""
from __future__ import annotations

import base64
import ctypes
import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import List, Optional
from urllib.parse import urlsplit

from ..commands import CommandRefused
from ..editors.distconfig import DistConfig
from ..kubeyaml import dump as dump_yaml
from . import rke2
from .kubeadm import Cluster, kubeconfig
from .layout import Layout, Settings, trusted_program
from .pods import exit_code, start_ticks

PR_SET_PDEATHSIG = 1
STOP_GRACE = 5.0
TICK = 0.05
READY_POLL = 0.2  # seconds between rke2's looks at etcd's and the API server's health


def log(level: str, message: str) -> None:
    """logrus's text format, as rke2 writes to the journal."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(f'time="{stamp}" level={level} msg={json.dumps(message)}', file=sys.stderr, flush=True)


def write_if_changed(path: Path, content: bytes, mode: int) -> bool:
    """Write through a temporary folder beside the file's folder and rename into place, unless the file
    holds `content` already. True when written. The mode is applied either way (rke2 does for rke2.yaml)."""
    try:
        if path.read_bytes() == content:
            os.chmod(path, mode)
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent.parent, prefix=path.stem) as tmp:
        staged = Path(tmp) / path.name
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        os.chmod(staged, mode)
        os.replace(staged, path)
    return True


class Generator(threading.Thread):
    """What rke2 writes from its configuration at start, in its order: etcd's configuration and manifest;
    the API server's manifest, removed before the kubelet starts (pkg/podexecutor APIServer:
    staticpod.Remove) and written again once etcd answers and the kubelet has dropped the old API server
    — so every start of rke2 restarts the API server, changed or not; the controller manager's and
    scheduler's once the new API server is ready, then READY. Stops waiting when rke2 stops."""

    def __init__(self, layout: Layout, cluster: Cluster, config: DistConfig) -> None:
        super().__init__(name="generator", daemon=True)
        self.layout, self.cluster, self.config = layout, cluster, config
        self.stopping = threading.Event()
        self.mode = 0o600 if rke2.cis_mode(config) else 0o644  # pkg/staticpod Run: CISMode

    def before_kubelet(self) -> None:
        layout, cluster, config = self.layout, self.cluster, self.config
        write_if_changed(layout.host(rke2.ETCD_CONFIG),
                         dump_yaml(rke2.etcd_config(cluster, config)).encode(), 0o600)
        write_if_changed(layout.host(rke2.KUBELET_DEFAULTS), dump_yaml(rke2.kubelet_defaults(cluster)).encode(), 0o600)
        write_if_changed(layout.host(rke2.PSS_CONFIG), dump_yaml(rke2.pss_config(rke2.cis_mode(config))).encode(),
                         0o600)
        policy = rke2.audit_policy(config)
        if policy and not layout.host(policy).exists():  # writeDefaultPolicyFile: only when missing
            write_if_changed(layout.host(policy), dump_yaml(rke2.AUDIT_POLICY_DEFAULT).encode(), 0o600)
        _write_admin_kubeconfig(layout, cluster, config)
        self._manifest("etcd")
        layout.host(f"{rke2.MANIFESTS}/kube-apiserver.yaml").unlink(missing_ok=True)
        log("info", "Removed kube-apiserver static pod manifest")

    def run(self) -> None:
        p = self.cluster.ports
        if not self._wait(f"https://127.0.0.1:{p['etcd-client']}/health", f"{rke2.TLS}/etcd/server-ca.crt",
                          f"{rke2.TLS}/etcd/client"):
            return
        # The old API server's container is gone once the kubelet has synced the removal (the lab's
        # runtime state, where rke2 asks the CRI).
        while self._container_runs("kube-apiserver"):
            if self.stopping.wait(READY_POLL):
                return
        self._manifest("kube-apiserver")
        if not self._wait(f"https://127.0.0.1:{p['apiserver']}/readyz", f"{rke2.TLS}/server-ca.crt",
                          f"{rke2.TLS}/client-kube-apiserver"):
            return
        self._manifest("kube-controller-manager")
        self._manifest("kube-scheduler")
        # k3s's server: READY=1 once etcd and the API server are up; `systemctl restart` returns then.
        log("info", "rke2 is up and running")
        ready = self.layout.ready_file
        tmp = ready.with_name(f".{ready.name}.tmp")
        tmp.write_text(str(os.getpid()))
        os.replace(tmp, ready)

    def _container_runs(self, component: str) -> bool:
        try:
            state = json.loads(self.layout.pods_dir.joinpath(f"{component}.json").read_text())
        except (OSError, ValueError):
            return False
        return start_ticks(state["pid"]) == state["ticks"]

    def _manifest(self, name: str) -> None:
        pod = rke2.STATIC_PODS[name](self.layout, self.cluster, self.config)
        log("info", f"Running {name} {' '.join(pod['spec']['containers'][0]['args'])}")
        if write_if_changed(self.layout.host(f"{rke2.MANIFESTS}/{name}.yaml"), dump_yaml(pod).encode(), self.mode):
            log("info", f"Wrote {name} static pod manifest")

    def _wait(self, url: str, ca: str, client: str) -> bool:
        """Until `url` answers 200 with this client certificate (rke2's etcdReady, apiReady)."""
        host = self.layout.host
        context = ssl.create_default_context(cafile=str(host(ca)))
        context.check_hostname = False
        context.load_cert_chain(str(host(client + ".crt")), str(host(client + ".key")))
        parts = urlsplit(url)
        while not self.stopping.is_set():
            conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=1.0, context=context)
            try:
                conn.request("GET", parts.path)
                if conn.getresponse().status == 200:
                    return True
            except (OSError, ssl.SSLError, http.client.HTTPException):
                pass
            finally:
                conn.close()
            self.stopping.wait(READY_POLL)
        return False


def _write_admin_kubeconfig(layout: Layout, cluster: Cluster, config: DistConfig) -> None:
    """/etc/rancher/rke2/rke2.yaml with the admin's credentials, mode `write-kubeconfig-mode` (0600)."""
    b64 = lambda path: base64.b64encode(layout.host(path).read_bytes()).decode()  # noqa: E731
    doc = kubeconfig(cluster, "default", layout.host(f"{rke2.TLS}/server-ca.crt").read_bytes(),
                     {"client-certificate-data": b64(f"{rke2.TLS}/client-admin.crt"),
                      "client-key-data": b64(f"{rke2.TLS}/client-admin.key")})
    doc["clusters"][0]["name"] = doc["contexts"][0]["name"] = doc["current-context"] = "default"
    doc["contexts"][0]["context"]["cluster"] = "default"
    try:
        mode = int(rke2.setting(config, "write-kubeconfig-mode") or "0600", 8)
    except ValueError:
        mode = 0o600
    write_if_changed(layout.host(rke2.KUBECONFIG), dump_yaml(doc).encode(), mode)


class Server:
    """The running `rke2 server`: the kubelet's parent."""

    def __init__(self, layout: Layout, settings: Settings, cluster: Cluster, config: DistConfig) -> None:
        self.layout, self.settings = layout, settings
        self.generator = Generator(layout, cluster, config)
        self.argv = [str(layout.host(rke2.KUBELET_BINARY))] + rke2.kubelet_args(cluster, config)
        self.kubelet: Optional[subprocess.Popen] = None
        self.starts = 0
        self.restart_at: Optional[float] = None
        self.stopping = False

    def _save(self) -> None:
        state = self.layout.run_dir / "kubelet.json"
        tmp = state.with_name(".kubelet.json.tmp")
        tmp.write_text(json.dumps({"pid": self.kubelet.pid if self.kubelet else None, "starts": self.starts}))
        os.replace(tmp, state)

    def start_kubelet(self) -> None:
        log("info", f"Running kubelet {' '.join(self.argv[1:])}")
        log_path = self.layout.host(rke2.KUBELET_LOG)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.restart_at = None
        try:
            argv = trusted_program(self.settings.python, self.argv, "the lab's kubelet")
        except CommandRefused as exc:
            log("error", f"Kubelet not started: {exc}")
            return
        libc = ctypes.CDLL(None, use_errno=True)
        with open(log_path, "ab") as out:
            # addDeathSig: the kubelet dies with rke2, whatever kills rke2.
            self.kubelet = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                            cwd=str(self.layout.root),
                                            preexec_fn=lambda: libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0))
        self.starts += 1
        self._save()

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        self.generator.before_kubelet()
        self.start_kubelet()
        self.generator.start()
        while not self.stopping:
            if self.kubelet is not None and self.kubelet.poll() is not None:
                log("error", f"Kubelet exited: exit status {exit_code(self.kubelet.returncode)}")
                self.kubelet = None
                self._save()
                self.restart_at = time.monotonic() + self.settings.service_restart_sec
            if self.kubelet is None and self.restart_at is not None and time.monotonic() >= self.restart_at:
                self.start_kubelet()
            time.sleep(TICK)
        self.generator.stopping.set()
        self.stop_kubelet()
        return 0

    def _on_term(self, *_: object) -> None:
        self.stopping = True

    def stop_kubelet(self) -> None:
        if self.kubelet is None:
            return
        self.kubelet.send_signal(signal.SIGTERM)
        try:
            self.kubelet.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            self.kubelet.kill()
            self.kubelet.wait()
        self.kubelet = None
        self._save()


def main(root: str, argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv != ["server"]:
        log("fatal", f"the lab's rke2 runs only as `rke2 server`, not {' '.join(argv) or 'without a command'}")
        return 1
    layout = Layout(root)
    settings = layout.settings()
    cluster = Cluster(settings.version, settings.ports)
    try:
        config = rke2.read_config(layout)
    except rke2.ConfigError as exc:
        log("fatal", str(exc))
        return 1
    if rke2.cis_mode(config):
        problems = rke2.cis_problems(layout)
        if problems:
            log("fatal", ", ".join(problems))
            return 1
    log("info", f"Starting rke2 v{rke2.full_version(cluster)}")
    return Server(layout, settings, cluster, config).run()
