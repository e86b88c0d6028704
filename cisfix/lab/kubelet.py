"""The simulated kubelet: its flags and config file, `/healthz`, and the static pod sync loop.

Like the real kubelet it refuses to start on an unknown flag or an invalid config file, watches the
static pod directory and re-lists it every `fileCheckFrequency`, reading every regular file whose name does not start with a
dot (no extension filter: `kube-apiserver.yaml.bak` is a pod too), and restarts a pod when its decoded
content or its source file changes (a comment-only edit restarts nothing). Two files defining the same pod:
the later file in sorted order wins, and a duplicate-pod event names both.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from . import cgroups
from .flags import FlagError, flag_table, known_names, parse_command_line, parse_duration, parse_int
from .layout import Layout, emit
from .pods import ContainerWorker, PodSpec, Running, start_ticks
from .standin import klog

DEFAULT_FILE_CHECK = 20.0
WATCH_POLL = 0.2  # seconds between looks standing in for inotify events
CONFIG_KIND = ("kubelet.config.k8s.io/v1beta1", "KubeletConfiguration")


class ConfigError(Exception):
    pass


# ---- configuration ----

def _check(config: dict, path: str, check, what: str) -> None:
    value: object = config
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return
        value = value[key]
    try:
        check(value)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: {what}: {exc}")


def _duration(value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(f"json: cannot unmarshal {type(value).__name__} into Go value of type time.Duration")
    parse_duration(value)


def _boolean(value: object) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"json: cannot unmarshal {type(value).__name__} into Go value of type bool")


def _port(value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 65535:
        raise ValueError(f"Invalid value: {value!r}: must be between 0 and 65535, inclusive")


def _one_of(*choices: str):
    def check(value: object) -> None:
        if value not in choices:
            raise ValueError(f"Unsupported value: {json.dumps(value)}: supported values: "
                             + ", ".join(json.dumps(c) for c in choices))
    return check


def validate_config(config: object) -> None:
    """What the kubelet's decoder and ValidateKubeletConfiguration reject, for the fields that matter here."""
    if not isinstance(config, dict):
        raise ConfigError("not a KubeletConfiguration")
    if (config.get("apiVersion"), config.get("kind")) != CONFIG_KIND:
        raise ConfigError(f'no kind "{config.get("kind")}" is registered for version "{config.get("apiVersion")}"')
    for key, value in config.items():
        if key.endswith(("Frequency", "Period", "Timeout", "TTL", "Age")) and key != "shutdownGracePeriodByPodPriority":
            _check(config, key, _duration, "invalid duration")
    for path in ("authentication.anonymous.enabled", "authentication.webhook.enabled", "rotateCertificates",
                 "serverTLSBootstrap", "protectKernelDefaults", "makeIPTablesUtilChains", "failSwapOn"):
        _check(config, path, _boolean, "invalid value")
    for path in ("healthzPort", "readOnlyPort", "port"):
        _check(config, path, _port, "invalid port")
    _check(config, "authorization.mode", _one_of("AlwaysAllow", "Webhook"), "invalid authorization mode")
    _check(config, "tlsMinVersion", _one_of("VersionTLS10", "VersionTLS11", "VersionTLS12", "VersionTLS13"),
           "invalid TLS version")
    ciphers = known_names("tls-cipher-suites.txt")
    for suite in config.get("tlsCipherSuites") or ():
        if suite not in ciphers:
            raise ConfigError(f"tlsCipherSuites: Invalid value: {json.dumps(suite)}: unsupported cipher suite")
    if config.get("eventRecordQPS", 0) < 0:
        raise ConfigError("eventRecordQPS: Invalid value: must not be negative")


def load_config(layout: Layout, node_path: str) -> dict:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        text = layout.host(node_path).read_text(encoding="utf-8")
        config = YAML(typ="safe", pure=True).load(text)
    except OSError as exc:
        raise ConfigError(f"open {node_path}: {exc.strerror.lower()}")
    except YAMLError as exc:
        raise ConfigError(f"error converting YAML to JSON: {str(exc).splitlines()[0]}")
    validate_config(config)
    return config


def merge_dropins(layout: Layout, directory: str, config: dict) -> dict:
    """`--config-dir`: every `*.conf` KubeletConfiguration in it, in name order, merged over the config
    file (a map merges key by key, anything else replaces), as the kubelet's drop-in support does (beta
    from 1.30); RKE2 writes its defaults there."""
    if not directory:
        return config
    try:
        names = sorted(p.name for p in layout.host(directory).iterdir() if p.name.endswith(".conf") and p.is_file())
    except OSError as exc:
        raise ConfigError(f"open {directory}: {exc.strerror.lower()}")
    merged = json.loads(json.dumps(config))
    for name in names:
        merged = _merge(merged, load_config(layout, f"{directory.rstrip('/')}/{name}"))
    return merged


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


# Flags that set a config field whose name is not the flag's in camelCase.
FLAG_PATHS = {"anonymous-auth": "authentication.anonymous.enabled", "client-ca-file": "authentication.x509.clientCAFile",
              "authorization-mode": "authorization.mode", "event-qps": "eventRecordQPS",
              "make-iptables-util-chains": "makeIPTablesUtilChains", "pod-manifest-path": "staticPodPath",
              "tls-cert-file": "tlsCertFile", "tls-private-key-file": "tlsPrivateKeyFile",
              "registry-qps": "registryPullQPS", "pod-max-pids": "podPidsLimit", "cluster-dns": "clusterDNS",
              "authentication-token-webhook": "authentication.webhook.enabled", "cgroups-per-qos": "cgroupsPerQOS",
              "image-gc-high-threshold": "imageGCHighThresholdPercent",
              "image-gc-low-threshold": "imageGCLowThresholdPercent"}
# Flags that are no configuration at all.
NOT_CONFIG = frozenset({"config", "config-dir", "containerd", "kubeconfig", "bootstrap-kubeconfig",
                        "container-runtime-endpoint", "v", "cloud-provider", "cloud-config", "cert-dir",
                        "image-credential-provider-config", "image-credential-provider-bin-dir",
                        "experimental-mounter-path", "runtime-cgroups",
                        "pod-infra-container-image", "hostname-override", "node-ip", "node-labels"})
# KubeletConfiguration v1beta1 defaults for the fields the benchmark reads.
DEFAULTS = {"apiVersion": CONFIG_KIND[0], "kind": CONFIG_KIND[1], "port": 10250, "readOnlyPort": 0, "healthzPort": 10248, "healthzBindAddress": "127.0.0.1",
            "eventRecordQPS": 50, "makeIPTablesUtilChains": True, "rotateCertificates": False,
            "streamingConnectionIdleTimeout": "4h0m0s", "protectKernelDefaults": False,
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True}},
            "authorization": {"mode": "Webhook"}}


def _camel(flag: str) -> str:
    head, *rest = flag.split("-")
    return head + "".join(word.upper() if word in ("qps", "tls", "ip") else word.capitalize() for word in rest)


LIST_FLAGS = frozenset({"tls-cipher-suites", "cluster-dns"})  # `string` in the table, lists in the config
# `strings` in the table, maps in the config: name -> the separator of a key and its value.
MAP_FLAGS = {"eviction-hard": "<", "eviction-soft": "<", "kube-reserved": "=", "system-reserved": "="}


def _typed(name: str, value: str, kind: str) -> object:
    if kind == "bool":
        return value.lower() in ("1", "t", "true")
    if kind == "mapStringBool":
        return {k.strip(): v.strip().lower() in ("1", "t", "true") for k, _, v in
                (item.partition("=") for item in value.split(",") if item)}
    if name in MAP_FLAGS:
        return {k: v for k, _, v in (item.partition(MAP_FLAGS[name]) for item in value.split(",") if item)}
    if kind.startswith("int"):
        return parse_int(value)
    if kind == "strings" or name in LIST_FLAGS:
        return [v for v in value.split(",") if v]
    return value


def effective_config(flags: Dict[str, str], config: dict, version: str) -> dict:
    """The configuration the kubelet of Kubernetes `version` runs with, as its /configz serves it:
    defaults, then the config file, then the (deprecated) flags that still override it."""
    merged = json.loads(json.dumps(DEFAULTS))

    def put(path: str, value: object) -> None:
        keys = path.split(".")
        target = merged
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        if path == "featureGates" and isinstance(target.get(path), dict):  # the flag's gates join the file's
            value = {**target[path], **value}
        target[keys[-1]] = value

    def overlay(data: dict, prefix: str = "") -> None:
        for key, value in data.items():
            if isinstance(value, dict) and value:
                overlay(value, f"{prefix}{key}.")
            else:
                put(prefix + key, value)
    overlay(config)
    table = flag_table("kubelet", version)
    for name, value in flags.items():
        if name not in NOT_CONFIG:
            put(FLAG_PATHS.get(name, _camel(name)), _typed(name, value, table[name].type))
    return merged


class Effective:
    """The effective configuration, and the values the simulator itself uses."""

    def __init__(self, flags: Dict[str, str], config: dict, version: str) -> None:
        self.config = effective_config(flags, config, version)
        validate_config(self.config)  # a flag the kubelet rejects, e.g. an unknown cipher suite
        self.static_pod_path = self.config.get("staticPodPath") or ""
        frequency = flags.get("file-check-frequency") or config.get("fileCheckFrequency") or "0s"
        self.file_check = parse_duration(frequency) or DEFAULT_FILE_CHECK  # 0s means the default
        self.healthz_address = self.config["healthzBindAddress"]
        self.healthz_port = self.config["healthzPort"]
        self.port = self.config["port"]


# ---- static pods ----

def read_manifests(layout: Layout, directory: str) -> Tuple[Dict[str, Tuple[str, dict]], List[Tuple[str, str]]]:
    """(pod full name -> (source file, pod), problems). Sorted by name; dotfiles and non-files skipped; a
    later file defining the same pod replaces the earlier one; unreadable files are problems."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    pods: Dict[str, Tuple[str, dict]] = {}
    problems: List[Tuple[str, str]] = []
    if not directory:  # no staticPodPath: a worker that runs no static pods
        return pods, problems
    host_dir = layout.host(directory)
    try:
        names = sorted(p.name for p in host_dir.iterdir() if not p.name.startswith(".") and p.is_file())
    except OSError:
        return pods, problems
    for name in names:
        source = f"{directory.rstrip('/')}/{name}"
        try:
            pod = YAML(typ="safe", pure=True).load((host_dir / name).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, YAMLError) as exc:
            problems.append((source, f"could not process manifest file {source}: {str(exc).splitlines()[0]}"))
            continue
        error = _pod_error(pod)
        if error:
            problems.append((source, f"could not process manifest file {source}: {error}"))
            continue
        meta = pod["metadata"]
        full_name = f"{meta['name']}_{meta.get('namespace') or 'default'}"
        if full_name in pods:
            problems.append((source, f"duplicate-pod:{full_name}:{pods[full_name][0]}"))
        pods[full_name] = (source, pod)
    return pods, problems


def _pod_error(pod: object) -> Optional[str]:
    if not isinstance(pod, dict) or pod.get("kind") != "Pod":
        return "invalid pod: not a Pod"
    if not (pod.get("metadata") or {}).get("name"):
        return "invalid pod: metadata.name: Required value"
    containers = (pod.get("spec") or {}).get("containers")
    if not containers or not all(isinstance(c, dict) and c.get("name") and c.get("image") for c in containers):
        return "invalid pod: spec.containers: Required value"
    return _duplicate(pod["spec"], containers)


def _duplicate(spec: dict, containers: list) -> Optional[str]:
    """ValidatePodCreate, which the kubelet runs on a static pod: volume names and each container's mount
    paths must be unique."""
    names = [v.get("name") for v in spec.get("volumes") or () if isinstance(v, dict)]
    for i, name in enumerate(names):
        if name in names[:i]:
            return f'invalid pod: spec.volumes[{i}].name: Duplicate value: "{name}"'
    for c, container in enumerate(containers):
        paths = [m.get("mountPath") for m in container.get("volumeMounts") or () if isinstance(m, dict)]
        for i, path in enumerate(paths):
            if path in paths[:i]:
                return (f'invalid pod: spec.containers[{c}].volumeMounts[{i}].mountPath: Invalid value: "{path}": '
                        f'must be unique')
    return None


def config_hash(pod: dict, source: str) -> str:
    """Like the kubelet's pod UID: the decoded pod plus its source file."""
    return hashlib.md5(json.dumps(pod, sort_keys=True, default=str).encode() + f"file:{source}".encode()).hexdigest()


def pod_specs(source: str, pod: dict, node: str) -> List[PodSpec]:
    meta = pod["metadata"]
    component = (meta.get("labels") or {}).get("component") or meta["name"]
    digest = config_hash(pod, source)
    containers = pod["spec"]["containers"]
    # The kubelet names a static pod after its manifest and the node.
    return [PodSpec(component if len(containers) == 1 else f"{component}/{c['name']}", f"{meta['name']}-{node}",
                    meta.get("namespace") or "default", source, digest, pod["spec"], c) for c in containers]


class Kubelet:
    def __init__(self, layout: Layout, effective: Effective) -> None:
        self.layout, self.effective = layout, effective
        self.settings = layout.settings()
        self.workers: Dict[str, ContainerWorker] = {}  # by component (container) name
        self.reported: set = set()  # problems already logged, so a re-list does not repeat them
        self.stopping = threading.Event()

    def adoptable(self) -> Dict[str, dict]:
        """Containers a previous kubelet left running, by component."""
        states = {}
        for path in self.layout.pods_dir.glob("*.json"):
            try:
                state = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if start_ticks(state["pid"]) == state["ticks"]:
                states[state["component"]] = state
        return states

    def sync(self, adopt: Optional[Dict[str, dict]] = None) -> None:
        pods, problems = read_manifests(self.layout, self.effective.static_pod_path)
        self._report(problems)
        node = self.settings.node_name
        wanted = {spec.component: spec for source, pod in pods.values() for spec in pod_specs(source, pod, node)}
        for component, worker in list(self.workers.items()):
            if component not in wanted or wanted[component].config_hash != worker.pod.config_hash:
                klog("I", f'"Killing container" component="{component}" reason="pod changed or removed"')
                worker.remove()
                del self.workers[component]
        for component, spec in wanted.items():
            if component in self.workers:
                continue
            state = (adopt or {}).get(component)
            if state and state["hash"] != spec.config_hash:
                self._discard(state)  # the manifest changed while no kubelet ran
                state = None
            worker = ContainerWorker(self.layout, self.settings, spec, state)
            self.workers[component] = worker
            worker.start()
        for component, state in (adopt or {}).items():
            if component not in wanted:  # its pod was removed while no kubelet ran
                self._discard(state)

    def _listing(self) -> Tuple[Tuple[str, int, int, int], ...]:
        """What an inotify watch on the static pod directory would report a change of."""
        try:
            entries = list(os.scandir(self.layout.host(self.effective.static_pod_path))) \
                if self.effective.static_pod_path else []
        except OSError:
            return ()
        stats = []
        for entry in entries:
            try:
                stat = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            stats.append((entry.name, stat.st_ino, stat.st_size, stat.st_mtime_ns))
        return tuple(sorted(stats))

    def _discard(self, state: dict) -> None:
        Running(state["pid"], None, self.layout.exits_dir).stop()
        cgroups.remove(state.get("cgroup"), pod_too=True)
        (self.layout.pods_dir / f"{state['component']}.json").unlink(missing_ok=True)

    def _report(self, problems: List[Tuple[str, str]]) -> None:
        current = set(problems)
        for source, message in current - self.reported:
            if message.startswith("duplicate-pod:"):
                _, full_name, first = message.split(":", 2)
                emit(self.layout, "duplicate-pod", full_name.split("_")[0],
                     f"{source} defines pod {full_name} again (also in {first}); the later file in sorted order "
                     f"replaces the earlier one")
            else:
                emit(self.layout, "config-invalid", Path(source).name.split(".")[0], message)
            klog("E", message)
        self.reported = current

    def run(self) -> None:
        """Sync at every re-list and, with the watch on, whenever the directory's listing changes: the
        real kubelet's inotify watch (a rename onto a name counts as a create) sees an edit at once."""
        watching = self.settings.file_watch
        # The listing the watch compares against is taken before the first sync, as a watch is set up
        # before the first read: a manifest written between the two (rke2 writes the API server's right
        # after it starts its kubelet) is seen at once, not at the next re-list.
        seen = self._listing() if watching else None
        self.sync(self.adoptable())
        relist_at = time.monotonic() + self.effective.file_check
        while not self.stopping.wait(WATCH_POLL if watching else self.effective.file_check):
            listing = self._listing() if watching else None
            if time.monotonic() >= relist_at or listing != seen:
                self.sync()
                relist_at, seen = time.monotonic() + self.effective.file_check, listing
        for worker in self.workers.values():
            worker.detach()
        for worker in self.workers.values():
            worker.join()


class Healthz(BaseHTTPRequestHandler):
    """The healthz port: plain HTTP, no authentication, only /healthz."""

    protocol_version = "HTTP/1.1"  # as Go's servers: the connection stays open until the client closes it

    def do_GET(self) -> None:
        if self.path.split("?")[0] == "/healthz":
            self.answer(200, b"ok")
        else:
            self.answer(404, b"404 page not found\n")

    def answer(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        pass


class Authenticated(Healthz):
    """The kubelet's authenticated port: a client certificate signed by the client CA is required
    (anonymous requests are refused with 401, as with `authentication.anonymous.enabled: false`), and
    /configz serves the effective configuration."""

    effective: Optional["Effective"] = None

    def do_GET(self) -> None:
        if not self.connection.getpeercert():
            self.answer(401, b"Unauthorized\n")
        elif self.path.split("?")[0] == "/configz":
            body = json.dumps({"kubeletconfig": self.effective.config if self.effective else {}}).encode()
            self.answer(200, body, "application/json")
        else:
            super().do_GET()


def _serve(server: ThreadingHTTPServer) -> ThreadingHTTPServer:
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    return server


def serve_authenticated(layout: Layout, effective: Effective) -> Optional[ThreadingHTTPServer]:
    """HTTPS on `port` with the kubelet's serving certificate, when it has one and a client CA."""
    import ssl

    config = effective.config
    # serverTLSBootstrap: the certificate the cluster signed for the kubelet's CSR, key in the same file.
    bootstrapped = "/var/lib/kubelet/pki/kubelet-server-current.pem" if config.get("serverTLSBootstrap") else None
    cert = config.get("tlsCertFile") or bootstrapped or "/var/lib/kubelet/pki/kubelet.crt"
    key = config.get("tlsPrivateKeyFile") or bootstrapped or "/var/lib/kubelet/pki/kubelet.key"
    client_ca = ((config.get("authentication") or {}).get("x509") or {}).get("clientCAFile")
    if not effective.port or not client_ca or not layout.host(cert).is_file():
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(layout.host(cert)), str(layout.host(key)))
    context.load_verify_locations(str(layout.host(client_ca)))
    context.verify_mode = ssl.CERT_OPTIONAL
    handler = type("KubeletServer", (Authenticated,), {"effective": effective})
    server = ThreadingHTTPServer(("127.0.0.1", published(layout, effective.port)), handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    return _serve(server)


def published(layout: Layout, port: int) -> int:
    """The host port the lab publishes the node's `port` at (a worker's), else `port` itself."""
    return layout.settings().published.get(str(port), port)


def load_effective(layout: Layout, flags: Dict[str, str], version: str) -> Effective:
    """The configuration the kubelet starts with: --config, then --config-dir's drop-ins, then flags."""
    config_path = flags.get("config", "")
    config = load_config(layout, config_path) if config_path else {}
    return Effective(flags, merge_dropins(layout, flags.get("config-dir", ""), config), version)


def main(root: str, argv: Optional[List[str]] = None) -> int:
    layout = Layout(root)
    argv = sys.argv[1:] if argv is None else argv
    settings = layout.settings()
    version = settings.version  # the node's, which the kubelet package matches
    try:
        flags = parse_command_line("kubelet", version, argv)
    except FlagError as exc:
        klog("E", f'"command failed" err="failed to parse kubelet flag: {exc}"')
        return 1
    if flags.get("version", "false") != "false":  # verflag: print and exit, before any configuration
        print(settings.kubelet_version or f"Kubernetes v{version}")
        return 0
    try:
        effective = load_effective(layout, flags, version)
    except (ConfigError, ValueError) as exc:
        message = (f"failed to load kubelet config file, path: {flags.get('config') or flags.get('config-dir')}, "
                   f"error: {exc}")
        emit(layout, "config-invalid", "kubelet", message)
        klog("E", f'"command failed" err={json.dumps(message)}')
        return 1
    servers = [serve_authenticated(layout, effective)]
    if effective.healthz_port:
        servers.append(_serve(ThreadingHTTPServer((effective.healthz_address, published(layout, effective.healthz_port)),
                                                  Healthz)))
    kubelet = Kubelet(layout, effective)
    signal.signal(signal.SIGTERM, lambda *_: kubelet.stopping.set())
    signal.signal(signal.SIGINT, lambda *_: kubelet.stopping.set())
    klog("I", f'"Kubelet started" staticPodPath="{effective.static_pod_path}" fileCheckFrequency="{effective.file_check}s"')
    kubelet.run()
    for server in servers:
        if server:
            server.shutdown()
    return 0
