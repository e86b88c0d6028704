"""`cisfix persist` talks to the API server as kubectl would: over https only, to a server whose
certificate the cluster CA signed *for the name admin.conf dials* (checked before the admin client
certificate leaves), with an admin.conf only root could have written, within one deadline per request,
believing only an answer that is exactly a ConfigMap, and showing a server's text escaped and cut.

Each hostile server is a thread of the test on 127.0.0.1 that records what reached it."""
from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import pytest
from ruamel.yaml import YAML

from cisfix.lab.pki import Cert, generate_keys, sign
from hostile import mallory  # noqa: F401 (fixture)

SCHEDULER = "/etc/kubernetes/manifests/kube-scheduler.yaml"
OBJECT = "kube-system/kubeadm-config"
CONFIGMAP = {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": "kubeadm-config", "namespace": "kube-system", "resourceVersion": "41"},
             "data": {"ClusterConfiguration": "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n"}}


def cisfix(node_root: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cisfix", "--root", str(node_root), *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def fixed_node(make_lab):
    """A lab node (not running) with one committed fix that belongs in kubeadm-config."""
    lab = make_lab(version="1.31", start=False)
    result = cisfix(lab.root, "edit", SCHEDULER, "--no-health-gate", "--flag", "profiling=false")
    assert result.returncode == 0, result.stderr
    return lab


def point_admin_conf(lab, server: str) -> None:
    """admin.conf names `server`, as root writes it (0600)."""
    path = lab.root / "etc/kubernetes/admin.conf"
    yaml = YAML(typ="safe")
    doc = yaml.load(path.read_text())
    doc["clusters"][0]["cluster"]["server"] = server
    with path.open("w") as out:
        yaml.dump(doc, out)


def serving_cert(lab, tmp_path: Path, *sans: str) -> Cert:
    """A server certificate signed by the lab's cluster CA, for `sans` only."""
    pki = lab.root / "etc/kubernetes/pki"
    ca = Cert(pki / "ca.crt", pki / "ca.key", "/CN=kubernetes")
    name = "-".join(s.replace(":", "_") for s in sans)
    cert = Cert(tmp_path / f"{name}.crt", tmp_path / f"{name}.key", "/CN=kube-apiserver", ca, "serverAuth", sans)
    generate_keys([cert], "ECDSA-P256")
    sign(cert)
    return cert


Respond = Callable[[socket.socket, str, bytes], None]


def reply(status: int, body: bytes) -> Respond:
    def respond(conn: socket.socket, method: str, request_body: bytes) -> None:
        conn.sendall(f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                     f"Connection: close\r\n\r\n".encode() + body)
    return respond


class Server:
    """A server on 127.0.0.1 (TLS with `cert` and the cluster CA to ask for a client certificate, or
    plain) that records every connection, every client certificate and every request."""

    def __init__(self, respond: Respond, cert: Optional[Cert] = None, ca: Optional[Path] = None,
                 tls: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED) -> None:
        self.respond = respond
        self.context: Optional[ssl.SSLContext] = None
        self.connections = 0
        self.client_certificate_messages = 0  # TLS Certificate messages the client sent
        self.peer_certs: List[dict] = []
        self.requests: List[Tuple[str, str, bytes]] = []
        self.stop = threading.Event()
        if cert:
            self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.context.load_cert_chain(str(cert.cert), str(cert.key))
            self.context.load_verify_locations(str(ca))
            self.context.verify_mode = ssl.CERT_OPTIONAL  # ask for it, as the API server does
            self.context.maximum_version = tls
            self.context._msg_callback = self._observe  # sees handshake messages, TLS 1.3's encrypted ones too
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _observe(self, conn, direction, version, content_type, msg_type, data) -> None:
        if direction == "read" and content_type == ssl._TLSContentType.HANDSHAKE \
                and msg_type == ssl._TLSMessageType.CERTIFICATE:
            self.client_certificate_messages += 1

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            if self.context:
                conn = self.context.wrap_socket(conn, server_side=True)
                self.peer_certs.append(conn.getpeercert())
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, body = data.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            length = next((int(line.split(":", 1)[1]) for line in lines
                           if line.lower().startswith("content-length:")), 0)
            while len(body) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                body += chunk
            method, path = lines[0].split(" ")[:2]
            self.requests.append((method, path, body))
            self.respond(conn, method, body)
        except (OSError, ssl.SSLError):
            pass  # the client gave up (as it should, for most of these servers)
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.sock.close()

    def pending_connection(self) -> bool:
        """Whether a connection waits unaccepted (the accept thread never misses one already made)."""
        self.sock.setblocking(False)
        try:
            self.sock.accept()[0].close()
            return True
        except BlockingIOError:
            return False
        finally:
            self.sock.setblocking(True)


@pytest.fixture
def servers():
    started: List[Server] = []

    def start(*args, **kwargs) -> Server:
        started.append(Server(*args, **kwargs))
        return started[-1]
    yield start
    for server in started:
        server.close()


def api_server(lab, tmp_path, servers, respond: Respond, *sans: str, **options) -> Server:
    server = servers(respond, serving_cert(lab, tmp_path, *sans), lab.root / "etc/kubernetes/pki/ca.crt", **options)
    point_admin_conf(lab, f"https://127.0.0.1:{server.port}")
    return server


def object_line(result) -> str:
    """The report's line for kubeadm-config; there is exactly one, and no traceback anywhere."""
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    [line] = [line for line in result.stdout.splitlines() if line.startswith(f"{OBJECT}:")]
    return line


# ---- whom the credentials go to ----

def test_the_right_server_gets_the_admin_certificate_and_the_update(fixed_node, tmp_path, servers):
    """The control for the refusals below: the certificate names 127.0.0.1, the host admin.conf dials."""
    def respond(conn, method, body):
        answer = CONFIGMAP if method == "GET" else {**json.loads(body), "metadata": {**CONFIGMAP["metadata"],
                                                                                     "resourceVersion": "42"}}
        reply(200, json.dumps(answer).encode())(conn, method, body)

    server = api_server(fixed_node, tmp_path, servers, respond, "IP:127.0.0.1")
    result = cisfix(fixed_node.root, "persist")

    assert result.returncode == 0, result.stdout + result.stderr
    assert object_line(result) == f"{OBJECT}: updated (resourceVersion 42)"
    assert server.client_certificate_messages >= 1
    assert ("commonName", "kubernetes-admin") in [attr for rdn in server.peer_certs[0]["subject"] for attr in rdn]
    [(_, _, _), (method, path, body)] = server.requests
    sent = json.loads(body)
    assert (method, path) == ("PUT", "/api/v1/namespaces/kube-system/configmaps/kubeadm-config")
    assert sent["metadata"] == CONFIGMAP["metadata"] and "profiling" in sent["data"]["ClusterConfiguration"]


@pytest.mark.parametrize("tls", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_a_certificate_of_the_cluster_ca_for_another_name_never_sees_the_admin_certificate(
        fixed_node, tmp_path, servers, tls):
    """In TLS 1.2 as in 1.3 the client sends its certificate after checking the server's."""
    server = api_server(fixed_node, tmp_path, servers, reply(200, json.dumps(CONFIGMAP).encode()),
                        "DNS:kubernetes", "DNS:not-this-node", "IP:10.96.0.1", tls=tls)
    result = cisfix(fixed_node.root, "persist")

    assert result.returncode == 7
    line = object_line(result)
    assert line.startswith(f"{OBJECT}: elsewhere: the API server cannot be reached:") and "mismatch" in line
    assert server.connections == 1  # it was dialled, and refused during the handshake:
    assert server.client_certificate_messages == 0 and not server.peer_certs and not server.requests


def test_an_http_server_in_admin_conf_is_refused_before_any_request(fixed_node, servers):
    server = servers(reply(200, json.dumps(CONFIGMAP).encode()))
    point_admin_conf(fixed_node, f"http://127.0.0.1:{server.port}")
    result = cisfix(fixed_node.root, "persist")

    assert result.returncode == 7
    assert object_line(result) == (f"{OBJECT}: elsewhere: {fixed_node.root}/etc/kubernetes/admin.conf: names the "
                                   f"API server 'http://127.0.0.1:{server.port}', not an https:// URL of a host; "
                                   "its admin credentials go to a verified https server only")
    assert server.connections == 0 and not server.pending_connection() and not server.requests


def test_an_admin_conf_linked_to_a_file_of_another_user_is_refused(fixed_node, tmp_path, servers, mallory):
    server = api_server(fixed_node, tmp_path, servers, reply(200, json.dumps(CONFIGMAP).encode()), "IP:127.0.0.1")
    kubernetes = fixed_node.root / "etc/kubernetes"
    hers = kubernetes / "mallory.conf"  # she wrote it (her server, her choice of CA and credentials)
    shutil.copy(kubernetes / "admin.conf", hers)
    os.chown(hers, *mallory)
    (kubernetes / "admin.conf").unlink()
    (kubernetes / "admin.conf").symlink_to("mallory.conf")
    result = cisfix(fixed_node.root, "persist")

    assert result.returncode == 7
    assert object_line(result) == (f"{OBJECT}: elsewhere: {hers}: owned by uid {mallory[0]}, not root; its admin "
                                   "credentials are not used")
    assert server.connections == 0 and not server.pending_connection()
    assert (fixed_node.root / "var/lib/cisfix/persist/kube-system_kubeadm-config.yaml").is_file()  # to merge elsewhere


def test_an_admin_conf_she_may_rewrite_is_refused(fixed_node, tmp_path, servers, mallory):
    """Root's file, in a folder of hers: she could swap it at any time."""
    server = api_server(fixed_node, tmp_path, servers, reply(200, json.dumps(CONFIGMAP).encode()), "IP:127.0.0.1")
    kubernetes = fixed_node.root / "etc/kubernetes"
    folder = fixed_node.root / "home/mallory"
    folder.mkdir(parents=True)
    os.chown(folder, *mallory)
    shutil.move(kubernetes / "admin.conf", folder / "admin.conf")
    (kubernetes / "admin.conf").symlink_to("/home/mallory/admin.conf")  # inside the node: re-rooted
    result = cisfix(fixed_node.root, "persist")

    assert result.returncode == 7
    assert object_line(result) == (f"{OBJECT}: elsewhere: {folder}: owned by uid {mallory[0]}, not root; its admin "
                                   "credentials are not used")
    assert server.connections == 0 and not server.pending_connection()


def test_no_request_carrying_credentials_goes_over_http(fixed_node, servers):
    """The rule lives in the one HTTP client: a layout or a node configuration that names an http://
    endpoint with credentials gets no request sent (probes without credentials, like the kubelet's
    healthz, may stay on http)."""
    from cisfix.health import fetch, get
    from cisfix.node import Node
    from cisfix.state import NodeState
    from cisfix.types import NodeInfo

    server = servers(reply(200, b"ok"))
    state = NodeState(Node(str(fixed_node.root)), NodeInfo())
    url = f"http://127.0.0.1:{server.port}/healthz"
    for credentials in ({"kubeconfig": "/etc/kubernetes/admin.conf"},
                        {"certFile": "/etc/kubernetes/pki/apiserver-kubelet-client.crt",
                         "keyFile": "/etc/kubernetes/pki/apiserver-kubelet-client.key"}):
        with pytest.raises(ValueError, match="credentials are sent over https only"):
            fetch(url, state, credentials)
    assert server.connections == 0 and not server.pending_connection()
    assert get(url, state, {}).healthy and len(server.requests) == 1


@pytest.mark.parametrize("credential", ["pki/ca.crt", "pki"])
def test_a_ca_file_another_user_could_write_is_not_used(fixed_node, tmp_path, servers, mallory, credential):
    server = api_server(fixed_node, tmp_path, servers, reply(200, json.dumps(CONFIGMAP).encode()), "IP:127.0.0.1")
    hers = fixed_node.root / "etc/kubernetes" / credential
    os.chown(hers, *mallory)
    result = cisfix(fixed_node.root, "persist")

    assert result.returncode == 7
    assert object_line(result) == (f"{OBJECT}: elsewhere: the node's admin credentials are refused: {hers}: owned by "
                                   f"uid {mallory[0]}, not root; not used as the CA file")
    assert server.connections == 0 and not server.pending_connection()


# ---- what is believed of an answer ----

@pytest.mark.parametrize("body, reason", [
    (b"not JSON", "not JSON: not JSON"),
    (b"[]", "a list, not a ConfigMap"),
    (b'{"data": []}', "apiVersion None kind None, not a v1 ConfigMap"),
    (json.dumps({**CONFIGMAP, "data": ["profiling"]}).encode(), "its data is not a map of strings to strings"),
    (json.dumps({**CONFIGMAP, "data": {"ClusterConfiguration": 1}}).encode(),
     "its data is not a map of strings to strings"),
    (json.dumps({k: v for k, v in CONFIGMAP.items() if k != "metadata"}).encode(),
     "a ConfigMap without metadata.resourceVersion"),
    (json.dumps({**CONFIGMAP, "metadata": {"name": "kubeadm-config", "namespace": "kube-system",
                                           "resourceVersion": ""}}).encode(),
     "a ConfigMap without metadata.resourceVersion"),
    (json.dumps({**CONFIGMAP, "metadata": {**CONFIGMAP["metadata"], "name": "other"}}).encode(),
     "the ConfigMap kube-system/other, not kube-system/kubeadm-config"),
    (b"[" * 50000 + b"]" * 50000, "JSON nested deeper than any object the API server holds"),
    (json.dumps({**CONFIGMAP, "extra": json.loads("[" * 200 + "]" * 200)}).encode(), "nested more than 64 levels"),
    (json.dumps({**CONFIGMAP, "data": {"ClusterConfiguration": "a: " + "[" * 50000}}).encode(),
     "ClusterConfiguration: invalid YAML: nested too deeply"),
], ids=["not-json", "list", "data-list", "data-list-in-configmap", "data-number", "no-metadata",
        "empty-resource-version", "another-object", "50k-deep", "200-deep", "50k-deep-yaml-inside"])
def test_an_answer_that_is_not_exactly_the_configmap_is_refused_and_nothing_is_written(
        fixed_node, tmp_path, servers, body, reason):
    server = api_server(fixed_node, tmp_path, servers, reply(200, body), "IP:127.0.0.1")
    result = cisfix(fixed_node.root, "persist")

    assert result.returncode == 7, result.stdout + result.stderr
    line = object_line(result)
    assert line.startswith(f"{OBJECT}: elsewhere: the API server's answer is refused: ") and reason in line, line
    assert "updated" not in result.stdout and len(line) < 400
    assert [method for method, _, _ in server.requests] == ["GET"]  # nothing PUT
    assert "the YAML to merge there is in" in result.stdout


def test_an_update_answered_by_something_not_a_configmap_is_not_reported_updated(fixed_node, tmp_path, servers):
    def respond(conn, method, body):
        reply(200, json.dumps(CONFIGMAP).encode() if method == "GET" else b"OK")(conn, method, body)

    server = api_server(fixed_node, tmp_path, servers, respond, "IP:127.0.0.1")
    result = cisfix(fixed_node.root, "persist")

    assert result.returncode == 7
    assert object_line(result) == f"{OBJECT}: elsewhere: the API server's answer to the update is refused: not JSON: OK"
    [(_, _, _), (method, _, body)] = server.requests
    assert method == "PUT" and json.loads(body)["metadata"]["resourceVersion"] == "41"


@pytest.mark.parametrize("body", [
    json.dumps({"kind": "Status", "message": "\x1b[31mforbidden\x1b]0;pwned\x07" + "A" * 5000}).encode(),
    b"\x1b[31mforbidden\x1b]0;pwned\x07" + b"A" * 5000 + b"\xff",
], ids=["status-message", "raw-text"])
def test_a_server_error_is_shown_escaped_and_cut(fixed_node, tmp_path, servers, body):
    api_server(fixed_node, tmp_path, servers, reply(403, body), "IP:127.0.0.1")
    result = cisfix(fixed_node.root, "persist")

    assert result.returncode == 7
    line = object_line(result)
    assert line.startswith(f"{OBJECT}: elsewhere: the API server answered HTTP 403: "
                           "\\x1b[31mforbidden\\x1b]0;pwned\\x07AAA")
    assert line.endswith("A...") and len(line) < 400
    assert "\x1b" not in result.stdout + result.stderr and "\x07" not in result.stdout


def test_a_server_that_trickles_its_answer_is_cut_off_at_the_deadline(fixed_node, tmp_path, servers):
    def trickle(conn, method, body):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
        while not server.stop.wait(5):  # a byte every 5 s: each read succeeds, the answer never ends
            conn.sendall(b" ")

    server = api_server(fixed_node, tmp_path, servers, trickle, "IP:127.0.0.1")
    started = time.monotonic()
    result = cisfix(fixed_node.root, "persist", timeout=120)

    assert result.returncode == 7
    assert object_line(result) == (f"{OBJECT}: elsewhere: the API server cannot be reached: no complete answer "
                                   "within 10 s")
    assert time.monotonic() - started < 60  # one 10 s deadline for the request, not 10 s per byte
