"""What a container sees of the host: the hostPath volumes its `volumeMounts` map in, nothing else.

The simulated kubelet builds a `Mounts` table from the pod spec and hands it to the container process in
the environment; the stand-ins resolve every path they open through it, the way the container's mount
namespace would. A path under no mount does not exist for the container.
"""
from __future__ import annotations

import json
import os
import posixpath
from pathlib import Path
from typing import Dict, List, Optional, Tuple

ENV_MOUNTS = "LAB_MOUNTS"  # JSON: [[mountPath, host path, readOnly], ...]
ENV_IMAGE = "LAB_IMAGE"  # the container's image, which tells a stand-in its version
ENV_STARTUP_DELAY = "LAB_STARTUP_DELAY"  # seconds a stand-in takes to start serving
ENV_CONFIGMAPS = "LAB_CONFIGMAPS"  # the lab's cluster store (configmaps.py): the API server's etcd data


class Mounts:
    def __init__(self, entries: List[Tuple[str, str, bool]]) -> None:
        # Longest mount path first: /etc/kubernetes/pki/etcd wins over /etc/kubernetes/pki.
        self.entries = sorted(((posixpath.normpath(m), h, ro) for m, h, ro in entries), key=lambda e: -len(e[0]))

    @classmethod
    def from_pod(cls, spec: dict, container: dict, host_root: Path) -> "Mounts":
        """The container's mounts; hostPath volumes are re-rooted under the lab directory."""
        volumes = {v.get("name"): v["hostPath"]["path"] for v in spec.get("volumes") or () if "hostPath" in v}
        entries = []
        for mount in container.get("volumeMounts") or ():
            host_path = volumes.get(mount.get("name"))
            if host_path is not None:
                entries.append((mount["mountPath"], str(host_root / host_path.lstrip("/")), bool(mount.get("readOnly"))))
        return cls(entries)

    @classmethod
    def from_env(cls) -> Optional["Mounts"]:
        """The table the kubelet passed, or None outside a lab (paths are then host paths)."""
        text = os.environ.get(ENV_MOUNTS)
        return cls([tuple(e) for e in json.loads(text)]) if text else None

    def to_env(self) -> Dict[str, str]:
        return {ENV_MOUNTS: json.dumps(self.entries)}

    def host(self, path: str) -> Optional[str]:
        """The host path behind a container path, or None when no mount covers it."""
        path = posixpath.normpath(path)
        for mount_path, host_path, _ in self.entries:
            if path == mount_path or path.startswith(mount_path.rstrip("/") + "/"):
                return host_path + path[len(mount_path.rstrip("/")):]
        return None


def resolver(mounts: Optional[Mounts], unmounted_root: Optional[Path] = None):
    """path -> host path. A path no mount covers maps under `unmounted_root` (a place that does not exist),
    so that a real binary opening it fails as it would in its container."""
    def resolve(path: str) -> str:
        if mounts is None or not path.startswith("/"):
            return path
        host = mounts.host(path)
        if host is not None:
            return host
        return str(unmounted_root / path.lstrip("/")) if unmounted_root else path
    return resolve


def translate_args(args: List[str], resolve) -> List[str]:
    """`--flag=/node/path` arguments with the path replaced by what `resolve` maps it to, for binaries that
    open their files themselves (etcd)."""
    out = []
    for arg in args:
        name, eq, value = arg.partition("=")
        out.append(f"{name}={resolve(value)}" if eq and name.startswith("-") and value.startswith("/") else arg)
    return out
