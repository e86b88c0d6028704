"""The lab's `k3s server`: every control-plane component and the kubelet in one process, as k3s runs them.

At every start it reads config.yaml and its drop-ins (`k3s.config_args`), computes each component's flags
from k3s's defaults and the `*-arg` items (`k3s.get_args`), logs them as k3s does — `Running kube-apiserver
...`, `Running kube-scheduler ...`, `Running kube-controller-manager ...`, `Running cloud-controller-manager
...` (logged only: the lab runs nothing for it), then `Running kubelet ...` — in
logrus's text format on its output (/var/log/k3s.log), and runs them as threads: the API server on kine's
SQLite datastore, the controller manager and the scheduler (the stand-ins of `standin.py`, validating their
flags with `flags.py`) and the kubelet's health endpoints (`kubelet.py`'s configuration rules). A component
that rejects its flags logs its own error, then k3s logs `level=fatal msg="<component> exited: <error>"` and
exits 1 (pkg/daemons/executor/embed.go), and systemd's Restart=always crash-loops it. Once the API server
serves it logs `k3s is up and running` and tells the init it is ready (Type=notify's READY=1).
"""
from __future__ import annotations

import base64
import json
import os
import signal
import sqlite3
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from typing import Dict, List, Optional

from ..kubeyaml import dump as dump_yaml
from . import k3s
from .container import Mounts
from .flags import FlagError, parse_command_line
from .kubelet import ConfigError as KubeletConfigError
from .kubelet import Effective, Healthz, load_config, serve_authenticated
from .layout import Layout
from .standin import Files, Server, StartupError, build_server, klog


class Fatal(Exception):
    """k3s logs this at level fatal and exits 1."""


def log(level: str, message: str) -> None:
    """One logrus TextFormatter line (no TTY): time in RFC 3339, the message quoted as Go's %q."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    line = f'time="{stamp}" level={level} msg={json.dumps(message, ensure_ascii=False)}\n'
    os.write(1, line.encode("utf-8"))


class Kine:
    """k3s's default datastore: SQLite at server/db/state.db, served to the API server by kine in-process."""

    def __init__(self, path: str) -> None:
        self.path = path

    def start(self) -> None:
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        log("info", "Configuring sqlite3 database connection pooling: maxIdleConns=2, maxOpenConns=0, connMaxLifetime=0s")
        log("info", "Configuring database table schema and indexes, this may take a moment...")
        with sqlite3.connect(self.path) as db:
            db.execute("CREATE TABLE IF NOT EXISTS kine (id INTEGER PRIMARY KEY AUTOINCREMENT, name INTEGER, "
                       "created INTEGER, deleted INTEGER, create_revision INTEGER, prev_revision INTEGER, "
                       "lease INTEGER, value BLOB, old_value BLOB)")
        log("info", "Database tables and indexes are up to date")
        log("info", f"Kine available at {k3s.KINE}")

    def healthy(self) -> bool:
        try:
            with sqlite3.connect(self.path, timeout=1) as db:
                db.execute("SELECT COUNT(*) FROM kine").fetchone()
            return True
        except sqlite3.Error:
            return False


class K3sServer:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.settings = layout.settings()
        self.files = Files(Mounts([("/", str(layout.root), False)]))  # the host's files: no container
        self.stopping = threading.Event()
        self.servers: List[ThreadingHTTPServer] = []

    # ---- configuration ----
    def options(self, cli: List[str]) -> Dict[str, object]:
        try:
            from_files = k3s.config_args(self.layout)
        except k3s.ConfigError as exc:
            raise Fatal(str(exc))
        options, unknown = k3s.server_options(from_files)
        for key in unknown:
            log("warning", f"Unknown flag --{key} found in config.yaml, skipping")
        from_cli, unknown = k3s.server_options(cli)
        if unknown:
            raise Fatal(f"flag provided but not defined: -{unknown[0]}")
        for key, value in from_cli.items():  # the command line comes after the files: lists extend
            options[key] = list(options.get(key) or []) + value if key in k3s.SLICE_KEYS else value  # type: ignore
        return options

    def write_runtime_files(self, options: Dict[str, object]) -> None:
        """What k3s (re)writes at every start: the egress selector config, the encryption config (once),
        the kubelet's defaults, and the admin kubeconfig with write-kubeconfig-mode."""
        host = self.layout.host
        ports = self.settings.ports
        _write(host(k3s.EGRESS_CONFIG), dump_yaml(egress_selector_config(ports)), 0o600)
        if k3s.flag_true(options, "secrets-encryption") and not host(k3s.ENCRYPTION_CONFIG).exists():
            _write(host(k3s.ENCRYPTION_CONFIG), json.dumps(encryption_config()), 0o600)
        _write(host(k3s.KUBELET_DEFAULTS), dump_yaml(k3s.kubelet_config(ports, options)), 0o600)
        mode_text = str(options.get("write-kubeconfig-mode") or "0600")
        try:
            mode = int(mode_text, 8)
        except ValueError:
            raise Fatal(f"failed to parse write-kubeconfig-mode {mode_text}: strconv.ParseInt: parsing "
                        f"{json.dumps(mode_text)}: invalid syntax")
        admin = host(k3s.CRED + "/admin.kubeconfig").read_text()
        _write(host(k3s.KUBECONFIG), embedded_kubeconfig(self.layout, admin), mode)
        log("info", f"Wrote kubeconfig {k3s.KUBECONFIG}")

    # ---- components ----
    def component(self, name: str, args: List[str], storage: Optional[Kine] = None) -> Server:
        """Parse and validate as the component does, then bind; Fatal with its own error."""
        exit_name = k3s.EXIT_NAMES[name]
        version = self.settings.version
        try:
            values = parse_command_line(name, version, k3s.component_argv(name, args))
        except FlagError as exc:
            print(f"Error: {exc}", file=sys.stderr, flush=True)  # cobra's
            raise Fatal(f"{exit_name} exited: {exc}")
        try:
            return build_server(name, values, self.files, version, storage)
        except StartupError as exc:
            klog("E", f'"command failed" err={json.dumps(str(exc))}')
            raise Fatal(f"{exit_name} exited: {exc}")

    def kubelet(self, args: List[str]) -> None:
        version = self.settings.version
        try:
            flags = parse_command_line("kubelet", version, args)
        except FlagError as exc:
            message = f"failed to parse kubelet flag: {exc}"
            klog("E", f'"command failed" err={json.dumps(message)}')
            raise Fatal(f"kubelet exited: {message}")
        try:
            effective = Effective(flags, self.kubelet_config_dir(flags.get("config-dir", "")), version)
        except (KubeletConfigError, ValueError) as exc:
            message = f"failed to merge kubelet configs: {exc}"
            klog("E", f'"command failed" err={json.dumps(message)}')
            raise Fatal(f"kubelet exited: {message}")
        try:
            self.servers.append(serve_authenticated(self.layout, effective))
            if effective.healthz_port:
                healthz = ThreadingHTTPServer((effective.healthz_address, effective.healthz_port), Healthz)
                self.servers.append(_serve(healthz))
        except OSError as exc:
            raise Fatal(f"kubelet exited: listen tcp: {exc.strerror or exc}")

    def kubelet_config_dir(self, directory: str) -> dict:
        """The kubelet's drop-in directory: every *.conf in name order, each a KubeletConfiguration, later
        files' fields over earlier ones."""
        merged: dict = {}
        if not directory:
            return merged
        try:
            names = sorted(p.name for p in self.layout.host(directory).iterdir() if p.name.endswith(".conf"))
        except OSError as exc:
            raise KubeletConfigError(f"open {directory}: {exc.strerror.lower()}")
        for name in names:
            _overlay(merged, load_config(self.layout, f"{directory}/{name}"))
        return merged

    # ---- run ----
    def run(self, cli: List[str]) -> int:
        log("info", f"Starting k3s v{k3s.k3s_version(self.settings.version)} (lab)")
        options = self.options(cli)
        kine = Kine(str(self.layout.host(k3s.DB)))
        kine.start()
        self.write_runtime_files(options)
        ports = self.settings.ports
        args = {name: k3s.get_args(k3s.defaults(name, ports, options), list(options.get(key) or []))  # type: ignore
                for name, key in k3s.ARG_KEYS.items()}
        log("info", f"Running kube-apiserver {k3s.arg_string(args['kube-apiserver'])}")
        api = self.component("kube-apiserver", args["kube-apiserver"], kine)
        self.servers.append(api)
        log("info", f"Running kube-scheduler {k3s.arg_string(args['kube-scheduler'])}")
        log("info", f"Running kube-controller-manager {k3s.arg_string(args['kube-controller-manager'])}")
        ccm = k3s.get_args(k3s.cloud_controller_defaults(), list(options.get(k3s.CCM_ARG_KEY) or []))  # type: ignore
        log("info", f"Running cloud-controller-manager {k3s.arg_string(ccm)}")
        log("info", f"Running kubelet {k3s.arg_string(args['kubelet'])}")
        self.kubelet(args["kubelet"])
        if self.stopping.wait(self.settings.startup_delay):  # the API server takes its time to serve
            return 0
        _serve(api)
        host, port = api.server_address[:2]
        klog("I", f'"Serving securely on {host}:{port}"')
        # The scheduler and the controller manager start once the API server is ready.
        for name in ("kube-scheduler", "kube-controller-manager"):
            self.servers.append(_serve(self.component(name, args[name])))
        log("info", "k3s is up and running")
        _write(self.layout.ready_file, str(os.getpid()), 0o644)
        self.stopping.wait()
        return 0

    def shutdown(self) -> None:
        for server in self.servers:
            if server is not None:
                threading.Thread(target=server.shutdown, daemon=True).start()


def _overlay(target: dict, source: dict) -> None:
    for key, value in source.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _overlay(target[key], value)
        else:
            target[key] = value


def _serve(server: ThreadingHTTPServer) -> ThreadingHTTPServer:
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    return server


def _write(path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


# ---- files k3s writes at start ----

def egress_selector_config(ports: Dict[str, int]) -> dict:
    """Egress selector mode `agent` (k3s's default): cluster traffic through the supervisor's tunnel."""
    return {"apiVersion": "apiserver.k8s.io/v1beta1", "kind": "EgressSelectorConfiguration",
            "egressSelections": [{"name": "cluster", "connection": {
                "proxyProtocol": "HTTPConnect",
                "transport": {"tcp": {"url": f"https://127.0.0.1:{ports['apiserver']}", "tlsConfig": {
                    "caBundle": f"{k3s.TLS}/server-ca.crt", "clientCert": f"{k3s.TLS}/client-kube-apiserver.crt",
                    "clientKey": f"{k3s.TLS}/client-kube-apiserver.key"}}}}}]}


def encryption_config() -> dict:
    """`secrets-encryption: true`: an aescbc key, then identity (k3s's first encryption config)."""
    secret = base64.b64encode(os.urandom(32)).decode()
    return {"kind": "EncryptionConfiguration", "apiVersion": "apiserver.config.k8s.io/v1", "resources": [{
        "resources": ["secrets"], "providers": [
            {"aescbc": {"keys": [{"name": f"aescbckey-{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}",
                                  "secret": secret}]}},
            {"identity": {}}]}]}


def embedded_kubeconfig(layout: Layout, admin_kubeconfig: str) -> str:
    """k3s.yaml: the admin kubeconfig with its files embedded as data."""
    from ruamel.yaml import YAML

    doc = YAML(typ="safe", pure=True).load(admin_kubeconfig)
    b64 = lambda path: base64.b64encode(layout.host(path).read_bytes()).decode()  # noqa: E731
    cluster, user = doc["clusters"][0]["cluster"], doc["users"][0]["user"]
    cluster["certificate-authority-data"] = b64(cluster.pop("certificate-authority"))
    user["client-certificate-data"] = b64(user.pop("client-certificate"))
    user["client-key-data"] = b64(user.pop("client-key"))
    return dump_yaml(doc)


def main(root: str, argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] != ["server"]:
        print("lab: only `k3s server` is simulated", file=sys.stderr)
        return 1
    server = K3sServer(Layout(root))
    signal.signal(signal.SIGTERM, lambda *_: server.stopping.set())
    signal.signal(signal.SIGINT, lambda *_: server.stopping.set())
    try:
        code = server.run(argv[1:])
    except Fatal as exc:
        log("fatal", str(exc))
        code = 1
    server.shutdown()
    return code
