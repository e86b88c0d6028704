"""Health probes of a component: its authenticated health endpoints, and its pod's own probes as the
kubelet runs them. A 401 or 403 is never healthy: an endpoint that refuses us proves nothing."""
from __future__ import annotations

import base64
import http.client
import os
import socket
import ssl
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, List, Optional, Tuple
from urllib.parse import urlsplit

from .bounds import MINUTE, number_problem
from .state import NodeState

if TYPE_CHECKING:  # pragma: no cover
    from .settings import Settings

@dataclass(frozen=True)
class Answer:
    healthy: bool
    message: str
    refused: bool = False  # the component answered and said no (401/403): waiting will not help
    # A gate's verdict on a restart: when (epoch seconds) it first saw the process it judged, and when
    # that process first answered healthy — what the journal keeps to show how quickly it noticed.
    seen: Optional[float] = None
    healthy_since: Optional[float] = None


def get(url: str, state: NodeState, settings: dict, timeout: float = 5.0) -> Answer:
    """GET `url`; healthy is 200-399. TLS verification and client certificates follow `settings`:
    caFile, certFile, keyFile, kubeconfig (node paths) and insecureSkipVerify."""
    try:
        code, body = fetch(url, state, settings, timeout, limit=200)
    except (OSError, ssl.SSLError, http.client.HTTPException, ValueError) as exc:
        return Answer(False, f"{url}: {exc}")
    return _answer(url, code, body)


def fetch(url: str, state: NodeState, settings: dict, timeout: float = 5.0,
          limit: Optional[int] = None, method: str = "GET", body: Optional[bytes] = None) -> Tuple[int, bytes]:
    """`method` (GET; PUT with a JSON `body`) on `url` with the node's credentials (as `get`): the status
    and the body (its first `limit` bytes). Raises OSError, ssl.SSLError, http.client.HTTPException or
    ValueError."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        with ClientFiles(state, settings) as (cert, key):
            context = _context(state, settings, cert, key)
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                parts.hostname, parts.port or 443, timeout=timeout, context=context)
            return _request(conn, parts, limit, method, body)
    return _request(http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout), parts, limit,
                    method, body)


def _request(conn: http.client.HTTPConnection, parts, limit: Optional[int], method: str = "GET",
             body: Optional[bytes] = None) -> Tuple[int, bytes]:
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), body, headers)
        response = conn.getresponse()
        return response.status, response.read(limit) if limit else response.read()
    finally:
        conn.close()


def _answer(url: str, code: int, body: bytes) -> Answer:
    text = body.decode("utf-8", "replace").strip()
    if code in (401, 403):
        return Answer(False, f"{url}: HTTP {code} (refused: never counted as healthy)", refused=True)
    return Answer(200 <= code < 400, f"{url}: HTTP {code} {text[:80]}".rstrip())


def _unverified_context() -> ssl.SSLContext:
    """TLS without certificate checks: the kubelet's probes, and endpoints with self-signed certificates."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return context


def _context(state: NodeState, settings: dict, cert: Optional[str], key: Optional[str]) -> ssl.SSLContext:
    if settings.get("insecureSkipVerify"):
        context = _unverified_context()
    else:
        ca = settings.get("caFile")
        if ca and not state.node.host(ca).is_file():
            raise ValueError(f"CA file {ca} not found")
        context = ssl.create_default_context(cafile=str(state.node.host(ca)) if ca else None)
        context.check_hostname = False  # components serve certificates for their node names, we dial 127.0.0.1
    if cert and key:
        context.load_cert_chain(cert, key)
    return context


class ClientFiles:
    """Client certificate and key as host files: from certFile/keyFile, or written from a kubeconfig's
    embedded data to a private temp directory removed afterwards."""

    def __init__(self, state: NodeState, settings: dict) -> None:
        self.state, self.settings = state, settings
        self.tmp: Optional[tempfile.TemporaryDirectory] = None

    def __enter__(self) -> Tuple[Optional[str], Optional[str]]:
        s, host = self.settings, self.state.node.host
        if s.get("certFile") and s.get("keyFile"):
            return str(host(s["certFile"])), str(host(s["keyFile"]))
        if not s.get("kubeconfig"):
            return None, None
        user = ((self.state.yaml(s["kubeconfig"]) or {}).get("users") or [{}])[0].get("user", {})
        if user.get("client-certificate") and user.get("client-key"):
            return str(host(user["client-certificate"])), str(host(user["client-key"]))
        self.tmp = tempfile.TemporaryDirectory(prefix="cisfix-probe-")  # mode 0700
        paths = []
        for field in ("client-certificate-data", "client-key-data"):
            path = os.path.join(self.tmp.name, field)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(base64.b64decode(user.get(field, "")))
            paths.append(path)
        return paths[0], paths[1]

    def __exit__(self, *exc: object) -> None:
        if self.tmp:
            self.tmp.cleanup()


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
    answers = [get(url, state, settings) for url, settings in endpoint_settings(state, component)]
    if not answers:
        return Answer(True, f"{component}: no health endpoint known")
    failed = [a for a in answers if not a.healthy]
    return failed[0] if failed else Answer(True, "; ".join(a.message for a in answers))


def pod_probes(state: NodeState, component: str) -> Answer:
    """Run the liveness, readiness and startup probes written in the component's manifest, as the
    kubelet does: no credentials, no certificate verification, 200-399 is success."""
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
                results.append((kind, _run_probe(probe, container)))
            except BadProbe as exc:  # the kubelet would not run this pod either
                results.append((kind, Answer(False, f"{manifest}: {exc}")))
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


def _run_probe(probe: dict, container: dict) -> Answer:
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
            return _answer(url, *_request(conn, parts, 200))
        except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
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
