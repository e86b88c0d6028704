"""An answer counts only when the component's own process sent it: while a component is away from its
port (restarting, or moved), another local user who binds that port and answers "ok" — or serves the
kubelet's /configz — is not taken for it, by `health`, by the gate, or by live verification."""
from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cisfix.lab.control import find_process
from cisfix.peer import connections, endpoint, holds, server_inode
from hostile import as_mallory, her_dir, mallory, shared_dir  # noqa: F401 (fixtures)

GATE = ("--timeout", "120", "--stability-window", "1")
SCHEDULER = "/etc/kubernetes/manifests/kube-scheduler.yaml"
KUBELET_CONFIG = "/var/lib/kubelet/config.yaml"
# What she serves: "ok" on every path, and on /configz a kubelet configuration of her choosing.
IMPOSTOR = r"""
import http.server, ssl, sys
port, cert, key, configz = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4].encode()
class Answer(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = configz if self.path.startswith("/configz") else b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Answer)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"""


def cisfix(lab, *args):
    return subprocess.run([sys.executable, "-m", "cisfix", "--root", str(lab.root), *args],
                          capture_output=True, text=True, timeout=600)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers_on(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture
def impostor(mallory, her_dir):
    """impostor(port, configz="{}"): her https server on `port`, started as her and running once it
    accepts connections; stopped afterwards."""
    started = []

    def start(port: int, configz: str = "{}"):
        cert, key = her_dir / "tls.crt", her_dir / "tls.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-days", "1", "-subj", "/CN=mallory", "-keyout", str(key), "-out", str(cert)],
                       check=True, capture_output=True)
        for path in (cert, key):
            os.chown(path, *mallory)
        her = as_mallory(mallory, IMPOSTOR, str(port), str(cert), str(key), configz, background=True)
        started.append(her)
        deadline = time.monotonic() + 30
        while not answers_on(port):
            assert her.poll() is None, her.stderr.read().decode()
            assert time.monotonic() < deadline, f"her server never listened on {port}"
            time.sleep(0.1)
        return her

    yield start
    for her in started:
        her.kill()
        her.wait()


def move_scheduler(lab) -> int:
    """The scheduler restarted on another port; its probed port (the node configuration's) is free."""
    url = lab.node_config()["components"]["kube-scheduler"]["health"]["url"]
    port = int(url.split(":")[2].split("/")[0])
    launcher = str(lab.layout.launcher("kube-scheduler"))
    old = find_process(launcher)
    lab.edit_manifest("kube-scheduler", f"--secure-port={port}", f"--secure-port={free_port()}")
    lab.wait_for(lambda: find_process(launcher) not in (None, old) and not answers_on(port), 120,
                 "the scheduler started again on another port")
    return port


def test_a_scheduler_port_answered_by_another_user_is_unhealthy_naming_the_real_scheduler(lab, impostor):
    port = move_scheduler(lab)
    impostor(port)
    pid = find_process(str(lab.layout.launcher("kube-scheduler")))
    result = cisfix(lab, "health", "--component", "kube-scheduler")
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout.strip() == (f"kube-scheduler: UNHEALTHY: https://127.0.0.1:{port}/healthz: answered by a "
                                     f"process that is not kube-scheduler (pid {pid}) on port {port}")


def test_her_ok_while_the_scheduler_is_stopped_is_no_scheduler(lab, impostor):
    url = lab.node_config()["components"]["kube-scheduler"]["health"]["url"]
    port = int(url.split(":")[2].split("/")[0])
    lab.manifest("kube-scheduler").rename(lab.root / "etc/kubernetes/kube-scheduler.parked")  # the pod stops
    launcher = str(lab.layout.launcher("kube-scheduler"))
    lab.wait_for(lambda: find_process(launcher) is None and not answers_on(port), 60, "the scheduler to stop")
    impostor(port)
    result = cisfix(lab, "health", "--component", "kube-scheduler")
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout.strip() == (f"kube-scheduler: UNHEALTHY: {url}: answered on port {port}, but "
                                     f"kube-scheduler is not running")


def test_the_gate_does_not_take_her_ok_for_the_scheduler_and_changes_nothing(lab, impostor):
    port = move_scheduler(lab)
    impostor(port)
    manifest = lab.layout.host(SCHEDULER)
    before = manifest.read_bytes()
    result = cisfix(lab, "-p", "no:cisfix_cis", "edit", SCHEDULER, "--flag", "profiling=false", *GATE)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "kube-scheduler is not healthy before any change, so nothing was changed" in result.stderr
    assert "answered by a process that is not kube-scheduler (pid " in result.stderr
    assert manifest.read_bytes() == before
    assert not (lab.root / "var/lib/cisfix/journal.jsonl").exists()


def test_a_forged_configz_is_never_what_a_kubelet_fix_is_verified_against(lab, impostor):
    """She serves /configz on the kubelet's port while the real kubelet listens elsewhere: the fix may
    not be reported verified from her configuration."""
    config = lab.layout.host(KUBELET_CONFIG)
    url = lab.node_config()["components"]["kubelet"]["liveConfig"]["url"]
    port = int(url.split(":")[2].split("/")[0])
    text = config.read_text()
    assert f"\nport: {port}\n" in text
    config.write_text(text.replace(f"\nport: {port}\n", f"\nport: {free_port()}\n"))
    lab.restart_kubelet()
    lab.wait_for(lambda: not answers_on(port), 60, "the kubelet's old port to be free")
    forged = {"kubeletconfig": {"tlsCipherSuites": ["TLS_AES_128_GCM_SHA256"], "readOnlyPort": 0}}
    impostor(port, json.dumps(forged))

    result = cisfix(lab, "fix", "--check", "4.2.12", "--format", "json", *GATE)
    assert result.returncode == 3, result.stdout + result.stderr
    (outcome,) = json.loads(result.stdout)["results"]
    assert outcome["fix"] == "REMEDIATION_FAILED_ROLLED_BACK"
    journal = lab.root / "var/lib/cisfix/journal.jsonl"
    records = [json.loads(line) for line in journal.read_text().splitlines() if outcome["txid"] in line]
    (verified,) = [r for r in records if r["type"] == "verified"]
    (check,) = verified["checks"]
    assert check["status"] == "ERROR"
    her_answer = rf"answered by a process that is not kubelet \(pid \d+\) on port {port}\b"
    assert re.search(her_answer, check["reason"]), check
    assert outcome["reason"].startswith("healthy, but the live kubelet does not verify: 4.2.12 (")
    assert re.search(her_answer, outcome["reason"]) and "rolled back, kubelet healthy again" in outcome["reason"]


def test_an_audit_container_without_capabilities_cannot_vouch_for_an_answer(lab):
    """Root without capabilities may not read a full-root process's descriptors: the answer cannot be
    traced to the scheduler, so it is not counted, and the line says why."""
    url = lab.node_config()["components"]["kube-scheduler"]["health"]["url"]
    result = subprocess.run(["setpriv", "--bounding-set", "-all", "--inh-caps", "-all", "--ambient-caps", "-all",
                             sys.executable, "-m", "cisfix", "--root", str(lab.root), "health",
                             "--component", "kube-scheduler"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"kube-scheduler: UNHEALTHY: {url}: cannot tell whether kube-scheduler (pid " in result.stdout
    assert "Permission denied reading /proc/" in result.stdout


# ---- the connection tables, read from this machine ----

@pytest.mark.parametrize("listen, connect", [("127.0.0.1", "127.0.0.1"), ("::1", "::1"), ("::", "127.0.0.1")])
def test_the_server_side_of_a_real_connection_is_found_and_held_by_this_process(listen, connect):
    """A socket pair opened here: the accepted socket is found by the probed port and our client's
    address (an IPv4 client of a dual-stack listener is written as ::ffff:a.b.c.d in tcp6)."""
    family = socket.AF_INET6 if ":" in listen else socket.AF_INET
    with socket.socket(family) as listener:
        listener.bind((listen, 0))
        listener.listen()
        port = listener.getsockname()[1]
        with socket.create_connection((connect, port)) as client:
            accepted, _ = listener.accept()
            with accepted:
                net = Path(f"/proc/{os.getpid()}/net")
                inode = server_inode(net, port, endpoint(client.getsockname()))
                assert inode == os.fstat(accepted.fileno()).st_ino
                assert holds(Path(f"/proc/{os.getpid()}/fd"), inode)
                # The client's own end (its local port is not the probed one) is not taken for the server's.
                assert server_inode(net, client.getsockname()[1], endpoint(accepted.getsockname())) == \
                    os.fstat(client.fileno()).st_ino
                assert server_inode(net, port, endpoint(("127.0.0.2", client.getsockname()[1]))) is None


def test_only_the_kernels_numbers_are_read_from_a_table():
    rest = "00000000:00000000 00:00000000 00000000     0        0"
    lines = ["  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
             f"   0: 0100007F:2823 0100007F:C350 01 {rest} 4711 1",
             f"   1: 0x00007F:2823 0100007F:C351 01 {rest} 4712 1",  # int(x, 16) would take 0x
             f"   2: 0100007F:2823 0100007F:C352 0A {rest} 4713 1",  # listening, not a connection
             f"   3: 0100007F:2823 0100007F:C353 01 {rest} -1 1",
             "   4: 0100007F:2823 01_0007F:C354 01 0 0 0 0 0 4715",  # int(x, 16) would take 01_0007F
             "garbage", "x" * 100_000]
    table = io.BytesIO("\n".join(lines).encode() + b"\n")
    loopback = socket.inet_aton("127.0.0.1")
    assert list(connections(table)) == [((loopback, 0x2823), (loopback, 0xC350), 4711)]



# She answers /configz with an endless body, and says on stderr how much of it was taken. (A connection
# that sends no request, as `answers_on`'s, is let go.)
FLOOD = r"""
import socket, sys
server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
while True:
    conn, _ = server.accept()
    if conn.recv(65536):
        break
    conn.close()
conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000000\r\n\r\n")
sent, chunk = 0, b"{" * 65536
try:
    while True:
        conn.sendall(chunk)
        sent += len(chunk)
except OSError:
    pass
sys.stderr.write(str(sent))
"""


def test_a_configz_answer_is_read_to_a_bound_before_it_is_traced(tmp_path, mallory):
    """Her server on the kubelet's port while it restarts: an answer is read before it can be traced to
    its process, so an endless one must not be buffered (gigabytes in the 5 s the exchange may take)."""
    from managed_nodes import make

    from cisfix.audit import node_state
    from cisfix.node import Node
    from cisfix.plugins import Plugins
    from cisfix.settings import LiveConfigUnavailable, _with_live_config

    port = free_port()
    node = make(tmp_path / "node", "eks-al2023", config=f"components:\n  kubelet:\n    liveConfig:\n"
                                                         f"      url: http://127.0.0.1:{port}/configz\n")
    her = as_mallory(mallory, FLOOD, str(port), background=True)
    deadline = time.monotonic() + 30
    while not answers_on(port):
        assert her.poll() is None and time.monotonic() < deadline, her.stderr.read().decode()
        time.sleep(0.1)
    state = node_state(Plugins(Node(str(node.root))), live=True)
    try:
        with pytest.raises(LiveConfigUnavailable):
            _with_live_config(state, state.settings("kubelet"))
        her.wait(timeout=30)
    finally:
        her.kill()
    assert int(her.stderr.read() or 0) < 64 << 20
