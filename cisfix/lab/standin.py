"""Stand-ins for kube-apiserver, kube-controller-manager and kube-scheduler.

Each parses its command line like the real binary (the flag tables of `flags.py`), validates what the real
server validates before it serves (enumerations, files that must exist inside the container, admission
plugins that need a configuration), and on success serves HTTPS on its secure port with the lab's PKI:
`/livez`, `/readyz` and `/healthz` with the real authentication rules, which is what health probes and a
remediation tool's health gate see. The API server also serves the kube-system ConfigMaps kubeadm keeps
(GET and PUT with resourceVersion, `configmaps.py`), to clients with a certificate of a group RBAC lets
read or write them. It opens files only through the container's mounts (`container.py`).
Failures print what the real binary prints and exit 1.
"""
from __future__ import annotations

import http.client
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Dict, List, Optional, Tuple
from urllib.parse import parse_qs

from .configmaps import NAMESPACE, ConfigMapStore, Conflict
from .container import ENV_CONFIGMAPS, ENV_IMAGE, ENV_STARTUP_DELAY, Mounts
from .flags import FlagError, flag_bool, flag_table, known_names, parse_command_line, split_list

HEALTH_PATHS = ("/healthz", "/livez", "/readyz")
PUBLIC_PATHS = HEALTH_PATHS + ("/version",)  # system:public-info-viewer: allowed for everyone authenticated
DEFAULT_PORTS = {"kube-apiserver": 6443, "kube-controller-manager": 10257, "kube-scheduler": 10259}
TLS_VERSIONS = {"VersionTLS10": ssl.TLSVersion.TLSv1, "VersionTLS11": ssl.TLSVersion.TLSv1_1,
                "VersionTLS12": ssl.TLSVersion.TLSv1_2, "VersionTLS13": ssl.TLSVersion.TLSv1_3}
# Flags naming files the server reads at start; what it says when one cannot be opened.
NOT_FILES = frozenset({"tls-sni-cert-key"})
FILE_SUFFIXES = ("file", "cafile", "certfile", "keyfile", "kubeconfig", "certificate", "-key", "config", "authority")
OPEN_ERROR_CONTEXT = {
    "audit-policy-file": 'loading audit policy file: failed to read file path "{path}": {error}',
    "encryption-provider-config": 'error while parsing file: error reading encryption provider configuration '
                                  'file "{path}": {error}',
    "admission-control-config-file": "failed to read plugin config: {error}",
    "client-ca-file": 'unable to load client CA provider: {error}',
}
EVENT_RATE_LIMIT_TYPES = ("Server", "Namespace", "User", "SourceAndObject")


class StartupError(Exception):
    """The server refuses to start; printed as klog's `"command failed" err="..."`."""


def klog(severity: str, message: str) -> None:
    now = time.time()
    stamp = time.strftime("%m%d %H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1e6):06d}"
    print(f"{severity}{stamp} {os.getpid():>7} standin.go:1] {message}", file=sys.stderr, flush=True)


def go_error(message: str) -> str:
    return json.dumps(message)


# ---- the container's files ----

class Files:
    """Open files as the container would: through its mounts."""

    def __init__(self, mounts: Optional[Mounts]) -> None:
        self.mounts = mounts

    def host(self, path: str) -> Optional[str]:
        if self.mounts is None:
            return path
        return self.mounts.host(path) if path.startswith("/") else None

    def read(self, path: str) -> bytes:
        """The file's bytes; raises StartupError with Go's os error text otherwise."""
        host = self.host(path)
        if host is None or not os.path.exists(host):
            raise StartupError(f"open {path}: no such file or directory")
        if os.path.isdir(host):
            raise StartupError(f"read {path}: is a directory")
        with open(host, "rb") as f:
            return f.read()

    def yaml(self, path: str) -> dict:
        from ruamel.yaml import YAML
        from ruamel.yaml.error import YAMLError

        try:
            doc = YAML(typ="safe", pure=True).load(self.read(path).decode("utf-8"))
        except YAMLError as exc:
            raise StartupError(f"error converting YAML to JSON: {str(exc).splitlines()[0]}")
        return doc if isinstance(doc, dict) else {}


def file_flags(component: str, version: str) -> List[str]:
    return [f.name for f in flag_table(component, version).values()
            if f.type in ("string", "strings") and f.name.endswith(FILE_SUFFIXES) and f.name not in NOT_FILES]


def check_files(component: str, version: str, values: Dict[str, str], files: Files) -> None:
    for name in file_flags(component, version):
        for path in split_list(values.get(name, "")) if name in values else ():
            try:
                files.read(path)
            except StartupError as exc:
                context = OPEN_ERROR_CONTEXT.get(name, "{error}")
                raise StartupError(context.format(path=path, error=exc)) from None


# ---- validation the real servers do before serving ----

def check_tls(values: Dict[str, str]) -> None:
    ciphers = known_names("tls-cipher-suites.txt")
    for suite in split_list(values.get("tls-cipher-suites", "")):
        if suite not in ciphers:
            raise StartupError(f"Cipher suite {suite} not supported or doesn't exist")
    version = values.get("tls-min-version")
    if version and version not in TLS_VERSIONS:
        raise StartupError(f"unknown tls version {json.dumps(version)}")


def check_api_server(values: Dict[str, str], files: Files, version: str) -> None:
    errors = []
    for mode in split_list(values.get("authorization-mode", "")):
        if mode not in known_names("authorization-modes.txt"):
            errors.append(f"authorization-mode {json.dumps(mode)} is not a valid mode")
    plugins = known_names("admission-plugins.txt")
    for flag in ("enable-admission-plugins", "disable-admission-plugins", "admission-control"):
        for plugin in split_list(values.get(flag, "")):
            if plugin not in plugins:
                errors.append(f"{flag} plugin {json.dumps(plugin)} is unknown")
    if errors:
        raise StartupError("[" + ", ".join(errors) + "]")
    check_tls(values)
    check_files("kube-apiserver", version, values, files)
    if "EventRateLimit" in split_list(values.get("enable-admission-plugins", "")):
        check_event_rate_limit(values, files)


def _admission_plugin_config(values: Dict[str, str], files: Files, plugin: str) -> Optional[dict]:
    path = values.get("admission-control-config-file")
    if not path:
        return None
    doc = files.yaml(path)
    if doc.get("kind") != "AdmissionConfiguration":
        raise StartupError(f"failed to read plugin config: unexpected kind {json.dumps(doc.get('kind'))}")
    for entry in doc.get("plugins") or ():
        if entry.get("name") == plugin:
            if "configuration" in entry:
                return entry["configuration"] or {}
            if "path" in entry:
                relative = entry["path"]
                full = relative if relative.startswith("/") else os.path.join(os.path.dirname(path), relative)
                return files.yaml(full)
    return None


def check_event_rate_limit(values: Dict[str, str], files: Files) -> None:
    """EventRateLimit refuses to start without a configuration with limits (kubernetes#62861)."""
    fail = 'failed to initialize admission: couldn\'t init admission plugin "EventRateLimit": {}'
    config = _admission_plugin_config(values, files, "EventRateLimit")
    if config is None:
        raise StartupError(fail.format("limits: Invalid value: \"null\": must not be empty"))
    if config.get("kind") != "Configuration" or not str(config.get("apiVersion", "")).startswith(
            "eventratelimit.admission.k8s.io/"):
        raise StartupError(fail.format(f"no kind \"{config.get('kind')}\" is registered for version "
                                       f"\"{config.get('apiVersion')}\""))
    limits = config.get("limits") or []
    if not limits:
        raise StartupError(fail.format("limits: Invalid value: \"null\": must not be empty"))
    for i, limit in enumerate(limits):
        if limit.get("type") not in EVENT_RATE_LIMIT_TYPES:
            raise StartupError(fail.format(f"limits[{i}].type: Unsupported value: {json.dumps(limit.get('type'))}"))
        for key in ("qps", "burst"):
            if not isinstance(limit.get(key), int) or limit[key] <= 0:
                raise StartupError(fail.format(f"limits[{i}].{key}: Invalid value: {limit.get(key)}: must be positive"))


def anonymous_paths(values: Dict[str, str], files: Files, version: Tuple[int, int]) -> Optional[Tuple[str, ...]]:
    """Paths anonymous requests may reach: None for all, () for none. `--anonymous-auth` or, since 1.31,
    an AuthenticationConfiguration's `anonymous` with conditions (KEP-4633: alpha 1.31, beta 1.32, GA
    1.34, where its feature gate is locked on)."""
    gate = re.search(r"AnonymousAuthConfigurableEndpoints=(\w+)", values.get("feature-gates", ""))
    if gate and version >= (1, 34) and gate.group(1).lower() != "true":
        raise StartupError("cannot set feature gate AnonymousAuthConfigurableEndpoints to false, feature is "
                           "locked to true")
    path = values.get("authentication-config")
    anonymous = files.yaml(path).get("anonymous") if path else None
    if anonymous is not None:
        if version < (1, 31):
            raise StartupError('strict decoding error: unknown field "anonymous"')
        enabled = gate.group(1).lower() == "true" if gate else version >= (1, 32)
        if not enabled:
            raise StartupError("anonymous is not supported when AnonymousAuthConfigurableEnpoints feature gate "
                               "is disabled")
        if "anonymous-auth" in values:
            raise StartupError("anonymous is not supported when anonymous-auth flag is also set")
        if not anonymous.get("enabled"):
            return ()
        conditions = anonymous.get("conditions") or []
        return tuple(c.get("path", "") for c in conditions) if conditions else None
    return None if flag_bool(values, "anonymous-auth", True) else ()


# ---- serving ----

class EtcdCheck:
    """The API server's etcd health check, cached for a second and bounded by 2 s
    (--etcd-healthcheck-timeout's default) as the real one is."""

    def __init__(self, values: Dict[str, str], files: Files) -> None:
        self.url = split_list(values.get("etcd-servers", ""))[:1]
        self.context = None
        if self.url and self.url[0].startswith("https://"):
            self.context = ssl.create_default_context(cafile=files.host(values.get("etcd-cafile", "")))
            self.context.check_hostname = False
            if values.get("etcd-certfile"):
                self.context.load_cert_chain(files.host(values["etcd-certfile"]), files.host(values["etcd-keyfile"]))
        self.lock, self.checked, self.ok = threading.Lock(), 0.0, False

    def healthy(self) -> bool:
        if not self.url:
            return False
        with self.lock:
            if time.monotonic() - self.checked > 1.0:
                self.ok, self.checked = self._check(), time.monotonic()
            return self.ok

    def _check(self) -> bool:
        host_port = self.url[0].split("://", 1)[1].rstrip("/")
        host, _, port = host_port.rpartition(":")
        conn = (http.client.HTTPSConnection(host, int(port), context=self.context, timeout=2) if self.context
                else http.client.HTTPConnection(host, int(port), timeout=2))
        try:
            conn.request("GET", "/health")
            return conn.getresponse().status == 200
        except (OSError, ssl.SSLError, http.client.HTTPException):
            return False
        finally:
            conn.close()


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, handler, context: ssl.SSLContext, authorize: Callable, checks: Callable,
                 configmaps: Optional[ConfigMapStore] = None) -> None:
        super().__init__(address, handler)
        self.context, self.authorize, self.checks, self.configmaps = context, authorize, checks, configmaps

    def finish_request(self, request, client_address) -> None:
        # The TLS handshake happens in the request's thread, so a slow client never blocks accept().
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        super().finish_request(tls, client_address)


class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:  # quiet, like the real servers at -v=0
        pass

    def _subject(self) -> Tuple[Optional[str], Tuple[str, ...]]:
        """The client certificate's user (CN) and groups (O), as the API server's x509 authenticator."""
        cert = self.connection.getpeercert() if hasattr(self.connection, "getpeercert") else None
        return (_subject_field(cert, "commonName")[:1] or (None,))[0], _subject_field(cert, "organizationName")

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        user, groups = self._subject()
        if self.server.configmaps is not None and CONFIGMAP_PATH.match(path):
            self._reply(*configmap_request(self.server.configmaps, "GET", path, user, groups, b""))
            return
        if self.server.configmaps is not None and path == NODES_PATH:
            query = parse_qs(self.path.split("?", 1)[1] if "?" in self.path else "")
            self._reply(*nodes_request(self.server.configmaps, (query.get("labelSelector") or [""])[0], user, groups))
            return
        status, body = self.server.authorize(path, user)
        if status == 200:
            status, body = self.server.checks(path)
        self._reply(status, body)

    def do_PUT(self) -> None:
        self._write("PUT", CONFIGMAP_PATH)

    def do_POST(self) -> None:
        self._write("POST", CONFIGMAPS_PATH)

    def _write(self, method: str, route: "re.Pattern[str]") -> None:
        path = self.path.split("?", 1)[0]
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.close_connection = True
            self._reply(*_status(413, "RequestEntityTooLarge", "the request body is too large"))
            return
        body = self.rfile.read(length)
        if self.server.configmaps is None or not route.match(path):
            self._reply(*_status(405, "MethodNotAllowed", "the server does not allow this method"))
            return
        self._reply(*configmap_request(self.server.configmaps, method, path, *self._subject(), body))

    def _reply(self, status: int, body: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if body.startswith("{") else "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _subject_field(cert: Optional[dict], key: str) -> Tuple[str, ...]:
    return tuple(value for rdn in (cert or {}).get("subject", ()) for k, value in rdn if k == key)


def _status(code: int, reason: str, message: str) -> Tuple[int, str]:
    return code, json.dumps({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                             "message": message, "reason": reason, "code": code})


UNAUTHORIZED = _status(401, "Unauthorized", "Unauthorized")


def _forbidden(user: str, path: str) -> Tuple[int, str]:
    return _status(403, "Forbidden", f'forbidden: User "{user}" cannot get path "{path}"')


# ---- the kube-system ConfigMaps kubeadm keeps ----

CONFIGMAP_PATH = re.compile(r"^/api/v1/namespaces/([^/]+)/configmaps/([^/]+)$")
CONFIGMAPS_PATH = re.compile(r"^/api/v1/namespaces/([^/]+)/configmaps$")  # POST: create
NODES_PATH = "/api/v1/nodes"
MAX_BODY = 3 * 1024 * 1024  # the API server's request size limit
# RBAC as kubeadm sets it up: admins read and write; nodes read kubeadm-config and kubelet-config
# (kubeadm:nodes-kubeadm-config, kubeadm:kubelet-config).
READERS = frozenset({"system:masters", "kubeadm:cluster-admins", "system:nodes"})
WRITERS = frozenset({"system:masters", "kubeadm:cluster-admins"})


def configmap_request(store: ConfigMapStore, method: str, path: str, user: Optional[str], groups: Tuple[str, ...],
                      body: bytes) -> Tuple[int, str]:
    if method == "POST":
        namespace, name = CONFIGMAPS_PATH.match(path).group(1), ""
    else:
        namespace, name = CONFIGMAP_PATH.match(path).groups()
    if user is None:
        return UNAUTHORIZED
    allowed = READERS if method == "GET" else WRITERS
    if not allowed.intersection(groups):
        verb = {"GET": "get", "PUT": "update", "POST": "create"}[method]
        return _status(403, "Forbidden", f'configmaps "{name}" is forbidden: User "{user}" cannot {verb} resource '
                                         f'"configmaps" in API group "" in the namespace "{namespace}"')
    if method != "POST":
        current = store.get(name) if namespace == NAMESPACE else None
        if current is None:
            return _status(404, "NotFound", f'configmaps "{name}" not found')
        if method == "GET":
            return 200, json.dumps(current)
    try:
        sent = json.loads(body.decode("utf-8"))
        metadata, data = sent.get("metadata") or {}, sent.get("data") or {}
    except (ValueError, UnicodeDecodeError, AttributeError):
        return _status(400, "BadRequest", "the body of the request was in an unknown format")
    if method == "POST":
        name = metadata.get("name")
        if not isinstance(name, str) or not re.match(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$", name) or \
                not all(isinstance(v, str) for v in data.values()) or namespace != NAMESPACE:
            return _status(422, "Invalid", "ConfigMap is invalid: a DNS subdomain name in kube-system and string "
                                           "data values are required")
        created = store.create_new(name, data)
        if created is None:
            return _status(409, "AlreadyExists", f'configmaps "{name}" already exists')
        return 201, json.dumps(created)
    if metadata.get("name") != name or not all(isinstance(v, str) for v in data.values()):
        return _status(422, "Invalid", f'ConfigMap "{name}" is invalid: the name must match the URL and '
                                       'every data value must be a string')
    try:
        return 200, json.dumps(store.put(name, data, metadata.get("resourceVersion")))
    except Conflict:
        return _status(409, "Conflict", f'Operation cannot be fulfilled on configmaps "{name}": the object has been '
                                        'modified; please apply your changes to the latest version and try again')


def nodes_request(store: ConfigMapStore, selector: str, user: Optional[str], groups: Tuple[str, ...]) -> Tuple[int, str]:
    """GET /api/v1/nodes?labelSelector=...: equality (`key=value`) and existence (`key`) terms, ANDed."""
    if user is None:
        return UNAUTHORIZED
    if not READERS.intersection(groups):
        return _status(403, "Forbidden", f'nodes is forbidden: User "{user}" cannot list resource "nodes" in API '
                                         'group "" at the cluster scope')
    terms = []
    for term in filter(None, selector.split(",")):
        key, equals, value = term.partition("=")
        if not re.match(r"^[A-Za-z0-9./_-]+$", key) or "=" in value or "!" in key:
            return _status(400, "BadRequest", f"unable to parse requirement: {term!r}")
        terms.append((key, value if equals else None))
    items = [n for n in store.nodes().values()
             if all(k in n["metadata"]["labels"] and v in (None, n["metadata"]["labels"][k]) for k, v in terms)]
    return 200, json.dumps({"apiVersion": "v1", "kind": "NodeList", "metadata": {}, "items": items})


def _is_health(path: str, paths) -> bool:
    return any(path == p or path.startswith(p + "/") for p in paths)


def api_server_authorizer(anonymous: Optional[Tuple[str, ...]]) -> Callable:
    def authorize(path: str, user: Optional[str]) -> Tuple[int, str]:
        if user is None:
            if anonymous is not None and not any(path == p for p in anonymous):
                return UNAUTHORIZED
            user = "system:anonymous"
        if _is_health(path, PUBLIC_PATHS) or user != "system:anonymous":
            return 200, ""
        return _forbidden(user, path)
    return authorize


def delegated_authorizer(values: Dict[str, str]) -> Callable:
    """The controller manager's and scheduler's: always-allowed paths skip authorization; anything else
    would need a SubjectAccessReview, which the lab answers with 403."""
    allowed = tuple(split_list(values.get("authorization-always-allow-paths", "/healthz,/readyz,/livez")))

    def authorize(path: str, user: Optional[str]) -> Tuple[int, str]:
        if any(path == p or (p.endswith("*") and path.startswith(p[:-1])) for p in allowed):
            return 200, ""
        return _forbidden(user or "system:anonymous", path)
    return authorize


def api_server_checks(etcd: EtcdCheck, version: str) -> Callable:
    def checks(path: str) -> Tuple[int, str]:
        if path == "/version":
            return 200, json.dumps({"major": version.split(".")[0], "minor": version.split(".")[1],
                                    "gitVersion": f"v{version}"})
        if _is_health(path, HEALTH_PATHS):
            if etcd.healthy():
                return 200, "ok"
            return 500, f"[+]ping ok\n[-]etcd failed: reason withheld\n{path.strip('/')} check failed\n"
        return 404, json.dumps({"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404})
    return checks


def simple_checks(path: str) -> Tuple[int, str]:
    return (200, "ok") if _is_health(path, HEALTH_PATHS) else (404, "404 page not found\n")


def self_signed(component: str) -> Tuple[str, str, tempfile.TemporaryDirectory]:
    """Without --tls-cert-file the real servers make a self-signed certificate in memory."""
    tmp = tempfile.TemporaryDirectory(prefix=f"{component}-")
    cert, key = os.path.join(tmp.name, "tls.crt"), os.path.join(tmp.name, "tls.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "365", "-subj", f"/CN=localhost@{int(time.time())}",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key, tmp


def tls_context(component: str, values: Dict[str, str], files: Files) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if values.get("tls-min-version"):
        context.minimum_version = TLS_VERSIONS[values["tls-min-version"]]
    if values.get("tls-cert-file"):
        cert, key = files.host(values["tls-cert-file"]), files.host(values.get("tls-private-key-file", ""))
        try:
            context.load_cert_chain(cert, key)
        except (ssl.SSLError, OSError, TypeError):
            raise StartupError("failed to load serving certificate: tls: failed to find any PEM data in "
                               "certificate input") from None
    else:
        cert, key, tmp = self_signed(component)
        context.load_cert_chain(cert, key)
        tmp.cleanup()
    if values.get("client-ca-file"):
        context.verify_mode = ssl.CERT_OPTIONAL
        context.load_verify_locations(files.host(values["client-ca-file"]))
    return context


def image_version() -> str:
    match = re.search(r":v(\d+\.\d+\.\d+)", os.environ.get(ENV_IMAGE, ""))
    return match.group(1) if match else "1.32.0"


def build_server(component: str, values: Dict[str, str], files: Files, version: str, storage=None) -> Server:
    """The component's server, validated and bound, not yet serving. `storage` (an object with
    `healthy()`) is the API server's datastore check when it is not `--etcd-servers` over the network
    (k3s's kine, in its own process)."""
    numbers = tuple(int(p) for p in version.split(".")[:2])
    if component == "kube-apiserver":
        check_api_server(values, files, version)
        anonymous = anonymous_paths(values, files, numbers)
        storage = storage or EtcdCheck(values, files)
        authorize, checks = api_server_authorizer(anonymous), api_server_checks(storage, version)
        audit_log(values, files)
        store = os.environ.get(ENV_CONFIGMAPS)
        configmaps = ConfigMapStore(store) if store else None
    else:
        check_tls(values)
        check_files(component, version, values, files)
        authorize, checks, configmaps = delegated_authorizer(values), simple_checks, None
    bind = values.get("bind-address", "0.0.0.0")
    # The lab binds only the loopback interface, whatever the manifest asks for.
    host = "127.0.0.1" if bind in ("0.0.0.0", "::", "") else bind
    port = int(values.get("secure-port", DEFAULT_PORTS[component]), 0)
    context = tls_context(component, values, files)
    try:
        return Server((host, port), Handler, context, authorize, checks, configmaps)
    except OSError as exc:
        raise StartupError(f"failed to create listener: failed to listen on {host}:{port}: listen tcp "
                           f"{host}:{port}: bind: {os.strerror(exc.errno) if exc.errno else exc}".lower()) from None


def audit_log(values: Dict[str, str], files: Files) -> None:
    """The API server creates its audit log at start; in an unmounted directory it lands in the container's
    own file system, which is lost with the container."""
    path = values.get("audit-log-path")
    host = files.host(path) if path and path != "-" else None
    if host and os.path.isdir(os.path.dirname(host)):
        open(host, "a").close()


def main(component: str, argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    version = image_version()  # the binary's version: which flags it knows
    try:
        values = parse_command_line(component, version, argv)
    except FlagError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        print(f"Usage:\n  {component} [flags]\n\nRun '{component} --help' for the flags.", file=sys.stderr)
        return 1
    if flag_bool(values, "help", False):
        print(f"Usage:\n  {component} [flags]")
        return 0
    if values.get("version", "false") not in ("false",):
        print(f"Kubernetes v{version}")
        return 0
    try:
        server = build_server(component, values, Files(Mounts.from_env()), version)
    except StartupError as exc:
        klog("E", f'"command failed" err={go_error(str(exc))}')
        return 1
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    time.sleep(float(os.environ.get(ENV_STARTUP_DELAY, "0")))  # a real API server takes its time to start
    host, port = server.server_address[:2]
    klog("I", f'"Serving securely on {host}:{port}"')
    server.serve_forever(poll_interval=0.2)
    return 0
