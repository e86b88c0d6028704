"""The lab's cluster store: the kube-system ConfigMaps kubeadm keeps (`kubeadm-config`, `kubelet-config`)
and the cluster's Node objects, in one JSON file in the lab's state folder — the part of etcd the lab's
API server stand-in serves. Every node of a lab cluster uses the first node's store, as every API server
of a cluster uses the same etcd.

Every change bumps one store-wide revision, which is each object's `resourceVersion`, as etcd's revision
is; a write that names an older resourceVersion is a conflict (HTTP 409). Writers (the stand-in, `lab
upgrade`) take an exclusive lock for read-modify-write; the file is replaced atomically, so a reader never
sees half a store and the ConfigMaps survive API server restarts.
"""
from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Dict, Iterator, Optional

STORE = "/var/lib/lab/configmaps.json"
NAMESPACE = "kube-system"


class Conflict(Exception):
    """The resourceVersion given is not the object's current one."""


def configmap(name: str, data: Dict[str, str], revision: int) -> dict:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {"apiVersion": "v1", "kind": "ConfigMap", "data": data,
            "metadata": {"name": name, "namespace": NAMESPACE, "resourceVersion": str(revision),
                         "creationTimestamp": stamp}}


class ConfigMapStore:
    def __init__(self, path: "str | os.PathLike[str]") -> None:
        self.path = Path(path)

    @contextmanager
    def _locked(self) -> Iterator[dict]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(f".{self.path.name}.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield self._load()

    def _load(self) -> dict:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"revision": 0, "items": {}, "nodes": {}}

    def _save(self, store: dict) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "w", encoding="utf-8") as out:
            json.dump(store, out, indent=1, sort_keys=True)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def get(self, name: str) -> Optional[dict]:
        return self._load()["items"].get(name)

    def put(self, name: str, data: Dict[str, str], resource_version: Optional[str] = None) -> dict:
        """Replace an object's data. With a resourceVersion, only if it is still the current one (else
        Conflict); without, unconditionally, as the API server allows for ConfigMaps. KeyError: no such
        object."""
        with self._locked() as store:
            current = store["items"][name]
            if resource_version is not None and resource_version != current["metadata"]["resourceVersion"]:
                raise Conflict(name)
            store["revision"] += 1
            current["data"] = data
            current["metadata"]["resourceVersion"] = str(store["revision"])
            self._save(store)
            return current

    def create(self, name: str, data: Dict[str, str]) -> dict:
        with self._locked() as store:
            store["revision"] += 1
            store["items"][name] = configmap(name, data, store["revision"])
            self._save(store)
            return store["items"][name]

    def create_new(self, name: str, data: Dict[str, str]) -> Optional[dict]:
        """Create an object unless one of that name exists (the API server's POST): None if it does."""
        with self._locked() as store:
            if name in store["items"]:
                return None
            store["revision"] += 1
            store["items"][name] = configmap(name, data, store["revision"])
            self._save(store)
            return store["items"][name]

    def add_node(self, name: str, labels: Dict[str, str]) -> dict:
        """Register a Node (what a kubelet does when it joins); `labels` as kubeadm sets them, e.g.
        {"node-role.kubernetes.io/control-plane": ""} on a control-plane node."""
        with self._locked() as store:
            store["revision"] += 1
            node = {"apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **labels},
                                 "resourceVersion": str(store["revision"])}}
            store.setdefault("nodes", {})[name] = node
            self._save(store)
            return node

    def nodes(self) -> Dict[str, dict]:
        return self._load().get("nodes", {})

    def update(self, name: str, change: Callable[[Dict[str, str]], Dict[str, str]]) -> dict:
        """Read-modify-write of one object's data under the lock (what kubeadm does through the API)."""
        with self._locked() as store:
            current = store["items"][name]
        return self.put(name, change(dict(current["data"])), current["metadata"]["resourceVersion"])
