"""Health probes of a component: its authenticated health endpoints, and its pod's own probes as the
kubelet runs them. A 401 or 403 is never healthy: an endpoint that refuses us proves nothing, and an
answer that another process sent on the component's port is not the component's (`cisfix.peer`)."""
from __future__ import annotations

import base64
import os
import socket
import tempfile
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, List, Optional, Tuple
from urllib.parse import urlsplit

from .bounds import MINUTE, number_problem
from .errors import InputError
from .nodefile import decode_text, parse_yaml
from .peer import NotTheComponent, Owner
from .shown import shown as server_text
from .trust import read_node_trusted

# http.client and ssl are imported by the functions that speak HTTP: a run that probes nothing (a drift
# with nothing to correct) does not pay for them.

if TYPE_CHECKING:  # pragma: no cover (probes take a node's state; they never build one)
    import http.client
    import ssl

    from .settings import Settings
    from .state import NodeState


@dataclass(frozen=True)
class Answer:
    healthy: bool
    message: str
    refused: bool = False  # the component answered and said no (401/403): waiting will not help
    # A gate's verdict on a restart: when (epoch seconds) it first saw the process it judged, and when
    # that process first answered healthy — what the journal keeps to show how quickly it noticed.
    seen: Optional[float] = None
    healthy_since: Optional[float] = None


CREDENTIALS = ("certFile", "keyFile", "kubeconfig")  # settings that send a client certificate


def get(url: str, state: NodeState, settings: dict, timeout: float = 5.0, component: Optional[str] = None) -> Answer:
    """GET `url`; healthy is 200-399. TLS verification and client certificates follow `settings`:
    caFile, certFile, keyFile, kubeconfig (node paths), insecureSkipVerify and verifyServerName. With a
    `component`, only its own process's answer counts (see `fetch`)."""
    import http.client
    import ssl

    try:
        code, body = fetch(url, state, settings, timeout, limit=200, component=component)
    except (OSError, ssl.SSLError, http.client.HTTPException, ValueError) as exc:
        return Answer(False, f"{url}: {server_text(str(exc))}")
    return _answer(url, code, body)


def fetch(url: str, state: NodeState, settings: dict, timeout: float = 5.0,
          limit: Optional[int] = None, method: str = "GET", body: Optional[bytes] = None,
          component: Optional[str] = None) -> Tuple[int, bytes]:
    """`method` (GET; PUT with a JSON `body`) on `url` with the node's credentials (as `get`): the status
    and the body (its first `limit` bytes). `timeout` bounds the whole exchange, not each read. Credentials
    go over https only; with `verifyServerName` the server's certificate must also name the URL's host,
    checked during the handshake, before the client certificate is sent (as kubectl does). Credential
    files are read through the trust rule. With a `component` of this node, the answer counts only when its
    own process holds the server side of the connection (`cisfix.peer`; NotTheComponent, a ValueError,
    otherwise). Raises OSError, ssl.SSLError, http.client.HTTPException or ValueError."""
    import http.client

    owner = Owner(state, component) if component else None
    parts = urlsplit(url)
    if parts.scheme == "https":
        with ClientFiles(state, settings) as (cert, key):
            context = _context(state, settings, cert, key)
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                parts.hostname, parts.port or 443, timeout=timeout, context=context)
            return _request(conn, parts, limit, method, body, owner)
    if parts.scheme != "http":
        raise ValueError(f"{parts.scheme or 'no'} scheme: only http and https are spoken")
    if any(settings.get(name) for name in CREDENTIALS):
        raise ValueError("credentials are sent over https only, never in clear over http")
    return _request(http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout), parts, limit,
                    method, body, owner)


def _request(conn: http.client.HTTPConnection, parts, limit: Optional[int], method: str = "GET",
             body: Optional[bytes] = None, owner: Optional[Owner] = None) -> Tuple[int, bytes]:
    """The exchange, within `conn.timeout` in all: a socket timeout bounds each read only, so a server
    trickling a byte at a time would hold the run for ever; at the deadline the socket is shut down,
    whatever the exchange is waiting for. With an `owner`, the answer is traced, while the connection is
    still open, to the process that sent it: NotTheComponent when that is not the owner's."""
    if not 0 < conn.timeout <= threading.TIMEOUT_MAX:  # NaN too; an OSError, as every caller expects of it
        raise TimeoutError(f"a timeout of {conn.timeout!r} s is no deadline an answer can meet")
    import http.client

    expired = threading.Event()

    def cut_off() -> None:
        expired.set()
        sock = conn.sock
        if sock is not None:
            try:  # the plain socket's shutdown: it wakes a read blocked in another thread, TLS or not
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass

    timer = threading.Timer(conn.timeout, cut_off)
    timer.daemon = True
    timer.start()
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), body, headers)
        response = conn.getresponse()
        answer = response.status, response.read(limit) if limit else response.read()
        if owner:
            owner.vouch(conn.sock)
    except (OSError, http.client.HTTPException):
        if expired.is_set():
            raise TimeoutError(f"no complete answer within {conn.timeout:g} s") from None
        raise
    finally:
        timer.cancel()
        timer.join()  # before close: never shut down a descriptor number already reused
        conn.close()
    if expired.is_set():  # a read cut short returns what it had
        raise TimeoutError(f"no complete answer within {conn.timeout:g} s")
    return answer


def _answer(url: str, code: int, body: bytes) -> Answer:
    if code in (401, 403):
        return Answer(False, f"{url}: HTTP {code} (refused: never counted as healthy)", refused=True)
    return Answer(200 <= code < 400, f"{url}: HTTP {code} {server_text(body.strip(), 80)}".rstrip())


def _unverified_context() -> ssl.SSLContext:
    """TLS without certificate checks: the kubelet's probes, and endpoints with self-signed certificates."""
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return context


def _context(state: NodeState, settings: dict, cert: Optional[str], key: Optional[str]) -> ssl.SSLContext:
    import ssl

    if settings.get("insecureSkipVerify"):
        context = _unverified_context()
    else:
        ca = settings.get("caFile")
        context = ssl.create_default_context(cadata=_credential(state, ca, "CA file").decode("ascii") if ca else None)
        # Components serve certificates for their node names while their probes dial 127.0.0.1; a client
        # that must know whom it gives its credentials to (persist) asks for the name as well.
        context.check_hostname = bool(settings.get("verifyServerName"))
    if cert and key:
        context.load_cert_chain(cert, key)
    return context


class CredentialRefused(ValueError):
    """A credential file that is missing, unreadable, or writable by someone else: nothing was sent."""


def _credential(state: NodeState, path: str, what: str) -> bytes:
    """A credential file (CA, client certificate or key, kubeconfig) of the node: root's own, in root's
    folders, links followed inside the node only; CredentialRefused naming it otherwise."""
    try:
        return read_node_trusted(state.node, path, why=f"; not used as the {what}")
    except FileNotFoundError:
        raise CredentialRefused(f"{what} {state.node.display(path)} not found") from None
    except InputError as exc:  # untrusted, or a path the node cannot resolve
        raise CredentialRefused(str(exc)) from None


class ClientFiles:
    """Client certificate and key as host files in a private temp directory removed afterwards, written
    from what was read through the trust rule (certFile/keyFile, or a kubeconfig's first user: its
    files or its embedded data), so that the file OpenSSL loads is the file that was checked."""

    def __init__(self, state: NodeState, settings: dict) -> None:
        self.state, self.settings = state, settings
        self.tmp: Optional[tempfile.TemporaryDirectory] = None

    def __enter__(self) -> Tuple[Optional[str], Optional[str]]:
        pems = self._pems()
        if pems is None:
            return None, None
        self.tmp = tempfile.TemporaryDirectory(prefix="cisfix-probe-")  # mode 0700
        paths = []
        for name, data in zip(("client.crt", "client.key"), pems):
            path = os.path.join(self.tmp.name, name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            paths.append(path)
        return paths[0], paths[1]

    def _pems(self) -> Optional[Tuple[bytes, bytes]]:
        s = self.settings
        if s.get("certFile") and s.get("keyFile"):
            return (_credential(self.state, s["certFile"], "client certificate"),
                    _credential(self.state, s["keyFile"], "client key"))
        if not s.get("kubeconfig"):
            return None
        user = _kubeconfig_user(self.state, s["kubeconfig"])
        if user.get("client-certificate") and user.get("client-key"):
            return (_credential(self.state, str(user["client-certificate"]), "client certificate"),
                    _credential(self.state, str(user["client-key"]), "client key"))
        return (base64.b64decode(str(user.get("client-certificate-data", ""))),  # binascii.Error: a ValueError
                base64.b64decode(str(user.get("client-key-data", ""))))

    def __exit__(self, *exc: object) -> None:
        if self.tmp:
            self.tmp.cleanup()


def _kubeconfig_user(state: NodeState, path: str) -> dict:
    """The credentials of a kubeconfig's first user; CredentialRefused when it has no such thing."""
    shown = state.node.display(path)
    try:
        doc = parse_yaml(decode_text(_credential(state, path, "kubeconfig"), shown), shown)
    except InputError as exc:
        raise CredentialRefused(str(exc)) from None
    users = doc.get("users") if isinstance(doc, dict) else None
    first = users[0] if isinstance(users, list) and users else None
    user = first.get("user") if isinstance(first, dict) else None
    if not isinstance(user, dict):
        raise CredentialRefused(f"{shown}: names no user (users[0].user)")
    return user


def endpoint_settings(state: NodeState, component: str, which: str = "health",
                      current: "Optional[Settings]" = None) -> List[Tuple[str, dict]]:
    """(url, settings) pairs of the component's `health` endpoints (or its `live_config`), as its layout
    gives them; `portFlag`/`portPath` name the setting (of `current`, else of the component's effective
    settings) whose value, when set, replaces the URL's port."""
    spec = state.component(component)
    settings = dict((spec.health if which == "health" else spec.live_config) or {})
    if not settings:
        return []
    urls = settings.pop("url")
    port_flag, port_path = settings.pop("portFlag", None), settings.pop("portPath", None)
    port = None
    if port_flag or port_path:
        present, value, _ = (current or state.settings(component)).setting(port_flag, port_path)
        port = value if present and value not in (None, "", 0, "0") else None
    return [(_with_port(url, port), settings) for url in ([urls] if isinstance(urls, str) else urls)]


def _with_port(url: str, port: object) -> str:
    if port is None:
        return url
    parts = urlsplit(url)
    return parts._replace(netloc=f"{parts.hostname}:{port}").geturl()


def probe_endpoints(state: NodeState, component: str) -> Answer:
    answers = [get(url, state, settings, component=component) for url, settings in endpoint_settings(state, component)]
    if not answers:
        return Answer(True, f"{component}: no health endpoint known")
    failed = [a for a in answers if not a.healthy]
    return failed[0] if failed else Answer(True, "; ".join(a.message for a in answers))


def pod_probes(state: NodeState, component: str) -> Answer:
    """Run the liveness, readiness and startup probes written in the component's manifest, as the
    kubelet does: no credentials, no certificate verification, 200-399 is success — from the component's
    own process only."""
    manifest = state.component(component).manifest
    pod = state.yaml(manifest) if manifest else None
    if not isinstance(pod, dict):
        return Answer(True, f"{component}: no static pod probes")
    containers = (pod.get("spec") or {}).get("containers") or []
    container = next((c for c in containers if c.get("name") == component), containers[0] if containers else {})
    results = []
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        probe = container.get(kind)
        if isinstance(probe, dict):
            try:
                results.append((kind, _run_probe(probe, container, Owner(state, component))))
            except BadProbe as exc:  # the kubelet would not run this pod either
                results.append((kind, Answer(False, f"{state.node.display(manifest)}: {exc}")))
    failed = [(kind, a) for kind, a in results if not a.healthy]
    if failed:
        kind, answer = failed[0]
        return Answer(False, f"{component} {kind}: {answer.message}", answer.refused)
    return Answer(True, f"{component}: {len(results)} pod probe(s) pass")


class BadProbe(ValueError):
    """A probe the manifest describes in a way no kubelet would run."""


def _port(port: object, container: dict) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, str) and not port.isdigit():
        named = {p.get("name"): p.get("containerPort") for p in container.get("ports") or [] if isinstance(p, dict)}
        if port not in named:
            raise BadProbe(f"probe port {port!r} is not a port of the container")
        port = named[port]
    number = int(port) if isinstance(port, str) or (isinstance(port, int) and not isinstance(port, bool)) else 0
    if not 1 <= number <= 65535:
        raise BadProbe(f"probe port {port!r} is not a port number (1-65535)")
    return number


def _timeout(probe: dict) -> float:
    """A probe's timeoutSeconds (the kubelet's default 1): more than 0 and, so that one probe cannot hold
    a gate for long, at most a minute."""
    value = probe.get("timeoutSeconds", 1)
    problem = ("is not a number" if not isinstance(value, (int, float)) or isinstance(value, bool)
               else number_problem(value, 0.0, MINUTE, low_allowed=False))
    if problem:
        raise BadProbe(f"probe timeoutSeconds {value!r} {problem}")
    return float(value)


def _action(probe: dict, kind: str) -> dict:
    action = probe[kind]
    if not isinstance(action, dict):
        raise BadProbe(f"probe {kind} is not a mapping")
    return action


def _run_probe(probe: dict, container: dict, owner: Owner) -> Answer:
    import http.client
    import ssl

    if "httpGet" in probe:
        action = _action(probe, "httpGet")
        scheme = str(action.get("scheme", "HTTP")).lower()
        host = action.get("host") or "127.0.0.1"  # static pods run on the host network
        url = f"{scheme}://{host}:{_port(action.get('port'), container)}{action.get('path', '/')}"
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 (raises ValueError for a host no URL can carry)
        except ValueError as exc:
            raise BadProbe(f"probe URL {url!r}: {exc}")
        timeout = _timeout(probe)
        if scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                parts.hostname, parts.port, timeout=timeout, context=_unverified_context())
        else:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        try:
            return _answer(url, *_request(conn, parts, 200, owner=owner))
        except (OSError, ssl.SSLError, http.client.HTTPException, NotTheComponent) as exc:
            return Answer(False, f"{url}: {exc}")
    if "tcpSocket" in probe:
        action = _action(probe, "tcpSocket")
        address = (action.get("host") or "127.0.0.1", _port(action.get("port"), container))
        try:
            socket.create_connection(address, timeout=_timeout(probe)).close()
            return Answer(True, f"tcp {address[0]}:{address[1]} open")
        except OSError as exc:
            return Answer(False, f"tcp {address[0]}:{address[1]}: {exc}")
    return Answer(True, "exec probes run inside the container; not checked from the host")
