"""The lab's etcd cluster membership, through etcd's v3 JSON gateway (what `etcdctl member add/list` call
over gRPC), with the etcd healthcheck-client certificate, as kubeadm's etcd client (`util/etcd`) uses it.
"""
from __future__ import annotations

import http.client
import json
import ssl
import time
from typing import Callable, Dict, List, Tuple
from urllib.parse import urlsplit

from .kubeadm import PKI
from .layout import LabError, Layout

Member = Dict[str, object]  # {"ID": "...", "name": "...", "peerURLs": [...], "clientURLs": [...]}


class EtcdClient:
    def __init__(self, endpoint: str, layout: Layout) -> None:
        """`endpoint`: a member's client URL; `layout`: the node whose etcd CA and healthcheck-client
        certificate to use."""
        self.endpoint = endpoint
        pki = layout.host(f"{PKI}/etcd")
        self.context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        self.context.check_hostname = False  # the member's certificate names the node, the lab dials 127.0.0.1
        self.context.load_cert_chain(str(pki / "healthcheck-client.crt"), str(pki / "healthcheck-client.key"))

    def _request(self, method: str, path: str, body: str = "", timeout: float = 10.0) -> Tuple[int, str]:
        url = urlsplit(self.endpoint)
        conn = http.client.HTTPSConnection(url.hostname, url.port, context=self.context, timeout=timeout)
        try:
            conn.request(method, path, body or None, {"Content-Type": "application/json"} if body else {})
            response = conn.getresponse()
            return response.status, response.read().decode("utf-8", "replace")
        except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
            raise LabError(f"etcd at {self.endpoint}: {exc}") from None
        finally:
            conn.close()

    def healthy(self) -> bool:
        """The member answers /health (it has a leader): what kubeadm checks before it adds a member."""
        try:
            return self._request("GET", "/health", timeout=5)[0] == 200
        except LabError:
            return False

    def _post(self, path: str, body: dict) -> dict:
        status, data = self._request("POST", path, json.dumps(body))
        if status != 200:
            raise LabError(f"etcd at {self.endpoint}: {path}: HTTP {status}: {data.strip()}")
        return json.loads(data)

    @staticmethod
    def _retried(call: Callable[[], dict], timeout: float = 30.0) -> dict:
        """As kubeadm's etcd client retries with back-off: etcd refuses a member change until every member
        has been connected for a while (--strict-reconfig-check: "unhealthy cluster")."""
        deadline, delay = time.monotonic() + timeout, 0.05
        while True:
            try:
                return call()
            except LabError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def members(self) -> List[Member]:
        return self._post("/v3/cluster/member/list", {}).get("members", [])

    def add_member(self, name: str, peer_url: str) -> List[Tuple[str, str]]:
        """Announce a new voting member; the cluster's members (name, peer URL) with it, named `name`
        (etcd names a member only once it has started), as kubeadm's AddMember returns them."""
        reply = self._retried(lambda: self._post("/v3/cluster/member/add", {"peerURLs": [peer_url]}))
        new_id = reply["member"]["ID"]
        return [(name if m["ID"] == new_id else str(m.get("name", "")), str(m["peerURLs"][0]))
                for m in reply.get("members", [])]


def client_url(ports: Dict[str, int]) -> str:
    return f"https://127.0.0.1:{ports['etcd-client']}"
